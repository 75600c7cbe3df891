//! Erased users: per tenant, the user ids and anonymous ids whose events the collector drops
//! before anything is stored (`DELETE /v1/users/{id}`). The store keeps the list; this is the
//! copy every request reads, shared by the collector and the API that adds to it.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock, RwLockReadGuard};

/// The erased ids of every tenant.
#[derive(Debug, Default)]
pub struct ErasedUsers {
    by_tenant: RwLock<HashMap<String, HashSet<String>>>,
    /// Whether any id is erased: the common case, none, costs one atomic load per request.
    any: AtomicBool,
    /// Bumped by every change, so a reader keeping state of ids (the identity's profiles)
    /// applies a change once.
    version: AtomicU64,
}

impl ErasedUsers {
    /// The set holding exactly `erased` (tenant, id) pairs, as read from the store.
    pub fn replace(&self, erased: impl IntoIterator<Item = (String, String)>) {
        let mut by_tenant: HashMap<String, HashSet<String>> = HashMap::new();
        for (tenant, id) in erased {
            by_tenant.entry(tenant).or_default().insert(id);
        }
        let any = !by_tenant.is_empty();
        let mut current = self
            .by_tenant
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if *current != by_tenant {
            *current = by_tenant;
            self.version.fetch_add(1, Ordering::AcqRel);
        }
        self.any.store(any, Ordering::Release);
    }

    /// Adds one erased id.
    pub fn insert(&self, tenant: &str, id: &str) {
        self.by_tenant
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(tenant.to_owned())
            .or_default()
            .insert(id.to_owned());
        self.any.store(true, Ordering::Release);
        self.version.fetch_add(1, Ordering::AcqRel);
    }

    /// Changes so far: equal versions hold equal sets.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Every erased (tenant, id).
    pub fn all(&self) -> Vec<(String, String)> {
        self.by_tenant
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .flat_map(|(tenant, ids)| ids.iter().map(move |id| (tenant.clone(), id.clone())))
            .collect()
    }

    /// Whether nothing is erased.
    pub fn is_empty(&self) -> bool {
        !self.any.load(Ordering::Acquire)
    }

    /// Whether any of `ids` is erased in `tenant`.
    pub fn any_erased<'a>(&self, tenant: &str, ids: impl IntoIterator<Item = &'a str>) -> bool {
        self.of_tenant(tenant)
            .is_some_and(|erased| erased.any_erased(ids))
    }

    /// `tenant`'s erased ids, read-locked once for a whole request; `None` when it has none.
    pub fn of_tenant<'e>(&'e self, tenant: &'e str) -> Option<TenantErasures<'e>> {
        if self.is_empty() {
            return None;
        }
        let by_tenant = self
            .by_tenant
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        by_tenant
            .contains_key(tenant)
            .then_some(TenantErasures { by_tenant, tenant })
    }
}

/// One tenant's erased ids, read-locked (see [`ErasedUsers::of_tenant`]).
#[derive(Debug)]
pub struct TenantErasures<'e> {
    by_tenant: RwLockReadGuard<'e, HashMap<String, HashSet<String>>>,
    tenant: &'e str,
}

impl TenantErasures<'_> {
    /// Whether any of `ids` is erased.
    pub fn any_erased<'a>(&self, ids: impl IntoIterator<Item = &'a str>) -> bool {
        self.by_tenant
            .get(self.tenant)
            .is_some_and(|erased| ids.into_iter().any(|id| erased.contains(id)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_erased_per_tenant_and_replaced_whole() {
        let erased = ErasedUsers::default();
        assert!(erased.is_empty());
        assert!(!erased.any_erased("shop", ["u1"]));
        erased.insert("shop", "u1");
        assert!(!erased.is_empty());
        assert!(erased.any_erased("shop", ["anon", "u1"]));
        assert!(!erased.any_erased("blog", ["u1"]), "another tenant's u1");
        assert!(!erased.any_erased("shop", ["u2"]));
        erased.replace([("blog".to_owned(), "u2".to_owned())]);
        assert!(!erased.any_erased("shop", ["u1"]));
        assert!(erased.any_erased("blog", ["u2"]));
        erased.replace([]);
        assert!(erased.is_empty());
    }
}
