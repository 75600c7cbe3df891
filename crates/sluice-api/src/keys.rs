//! Who may call what: the key directory built from the config (its `[[tenants]]` and
//! `admin-keys`) and from the tenants and keys the admin API stored, kept in line with the store
//! after every change. The collector shares the same directory, so a write key created through
//! the admin API works at once.
//!
//! Every request checks its key when it arrives. Long-lived sessions (WebSocket push and GraphQL
//! subscriptions) hold a [`SessionKey`] instead: each rebuild of the directory bumps a
//! generation (a `watch` channel), and every session checks its key again when it changes, so a
//! revoked key, a deleted tenant or a key that no longer has its role ends its sessions at once.

use crate::auth::bearer;
use crate::config::QuotaConfig;
use crate::error::ApiError;
use axum::http::HeaderMap;
use sluice_core::access::{
    Grant, KeyDirectory, KeyIdSecret, KeyLimits, KeySpec, Role, config_key_id, digest,
    legacy_config_key_id,
};
use sluice_core::tenant::TenantConfig;
use sluice_core::time::now_millis;
use sluice_store::{KeyRecord, StoreBackend, StoreError, TenantRecord};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

const DAY_MS: i64 = 86_400_000;

/// Where a tenant is defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TenantOrigin {
    /// A `[[tenants]]` table (or the generated default tenant).
    Config,
    /// The admin API.
    Api,
}

/// The limits a tenant's keys get. 0 means no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Limits {
    /// Requests per second per key (bursts of one second's worth).
    pub requests_per_second: u32,
    /// Events per UTC day per write key.
    pub events_per_day: u64,
}

impl From<KeyLimits> for Limits {
    fn from(limits: KeyLimits) -> Limits {
        Limits {
            requests_per_second: limits.requests_per_second,
            events_per_day: limits.events_per_day,
        }
    }
}

/// A tenant as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct TenantView {
    /// Name.
    pub name: String,
    /// Where it is defined.
    pub origin: TenantOrigin,
    /// Its own requests-per-second limit, if it sets one.
    pub requests_per_second: Option<u32>,
    /// Its own events-per-day limit, if it sets one.
    pub events_per_day: Option<u64>,
    /// The limits its keys get (its own, else `[quotas]`).
    pub effective: Limits,
    /// When it was created (API tenants).
    pub created_at: Option<i64>,
}

/// The key directory and what it is built from.
#[derive(Debug)]
pub struct Access {
    directory: Arc<KeyDirectory>,
    store: StoreBackend,
    configured: Vec<TenantConfig>,
    admin_keys: Vec<String>,
    /// Keys the ids of configured keys.
    key_ids: KeyIdSecret,
    quotas: QuotaConfig,
    /// Serializes changes, so the directory always matches one state of the store.
    changes: tokio::sync::Mutex<()>,
    /// Bumped after every rebuild of the directory: sessions check their key again.
    generation: watch::Sender<u64>,
    /// The stored tenants and keys the directory was last built from.
    built_from: parking_lot::Mutex<Option<(Vec<TenantRecord>, Vec<KeyRecord>)>>,
}

impl Access {
    /// Builds the directory from the config and the store, and restores today's usage.
    /// Configured keys get their ids from `key_ids` ([`config_key_id`]); usage saved under
    /// their former ids (a hash of the secret alone) is restored to the new ones.
    pub async fn open(
        store: StoreBackend,
        configured: Vec<TenantConfig>,
        admin_keys: Vec<String>,
        key_ids: KeyIdSecret,
        quotas: QuotaConfig,
    ) -> Result<Arc<Access>, StoreError> {
        let access = Arc::new(Access {
            directory: Arc::new(KeyDirectory::default()),
            store,
            configured,
            admin_keys,
            key_ids,
            quotas,
            changes: tokio::sync::Mutex::new(()),
            generation: watch::Sender::new(0),
            built_from: parking_lot::Mutex::new(None),
        });
        access.reload().await?;
        access.merge_stored_usage().await?;
        Ok(access)
    }

    /// Takes in today's counts from the store (every node's), usage saved under a configured
    /// key's former id counting for its new one.
    async fn merge_stored_usage(&self) -> Result<(), StoreError> {
        let former: std::collections::HashMap<String, String> = self
            .configured_secrets()
            .map(|secret| {
                (
                    legacy_config_key_id(secret),
                    config_key_id(&self.key_ids, secret),
                )
            })
            .collect();
        let today = (now_millis() / DAY_MS) as u64;
        let mut totals: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
        for (id, used) in self.store.key_usage(today).await? {
            let id = former.get(&id).cloned().unwrap_or(id);
            *totals.entry(id).or_default() += used;
        }
        self.directory.merge_usage(today, totals);
        Ok(())
    }

    /// Every key secret of the config: tenants' write and read keys, admin keys.
    fn configured_secrets(&self) -> impl Iterator<Item = &str> {
        self.configured
            .iter()
            .flat_map(|tenant| tenant.write_keys.iter().chain(&tenant.read_keys))
            .chain(&self.admin_keys)
            .map(String::as_str)
    }

    /// The directory the collector and every API route check keys against.
    pub fn directory(&self) -> Arc<KeyDirectory> {
        Arc::clone(&self.directory)
    }

    /// The store tenants and keys are kept in.
    pub fn store(&self) -> &StoreBackend {
        &self.store
    }

    /// The default limits.
    pub fn quotas(&self) -> &QuotaConfig {
        &self.quotas
    }

    /// Takes the change lock: hold it across a store change and the [`Access::rebuild`] that
    /// follows it.
    pub async fn lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.changes.lock().await
    }

    /// Rebuilds the directory from the config and the store.
    pub async fn reload(&self) -> Result<(), StoreError> {
        let _guard = self.changes.lock().await;
        self.rebuild().await
    }

    /// Rebuilds the directory; the caller holds [`Access::lock`].
    pub async fn rebuild(&self) -> Result<(), StoreError> {
        let tenants = self.store.tenants().await?;
        let keys = self.store.keys().await?;
        self.build(tenants, keys);
        Ok(())
    }

    /// Every `every` until `stop`, rebuilds the directory when the store's tenants or keys
    /// changed: a node of a cluster follows the changes the others make through their admin
    /// API (within `every` and one store read).
    pub async fn follow_store(self: Arc<Self>, every: Duration, stop: CancellationToken) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let _guard = self.changes.lock().await;
            let read = async {
                Ok::<_, StoreError>((self.store.tenants().await?, self.store.keys().await?))
            };
            match read.await {
                Ok(stored) => {
                    failing = false;
                    let changed = self.built_from.lock().as_ref() != Some(&stored);
                    if changed {
                        tracing::info!(
                            "tenants or keys changed in the store; the key directory follows"
                        );
                        self.build(stored.0, stored.1);
                    }
                }
                Err(error) if !failing => {
                    tracing::warn!(%error, "cannot read tenants and keys from the store; the key directory stays as it is");
                    failing = true;
                }
                Err(_) => {}
            }
        }
    }

    fn build(&self, tenants: Vec<TenantRecord>, keys: Vec<KeyRecord>) {
        let built_from = (tenants.clone(), keys.clone());
        let stored: BTreeMap<&str, &TenantRecord> =
            tenants.iter().map(|t| (t.name.as_str(), t)).collect();
        let mut specs = Vec::new();
        let config_key =
            |secret: &str, role: Role, tenant: Option<&str>, limits: KeyLimits| KeySpec {
                id: config_key_id(&self.key_ids, secret),
                digest: digest(secret),
                role,
                tenant: tenant.map(str::to_owned),
                limits,
            };
        for tenant in &self.configured {
            let limits = self
                .quotas
                .limits(tenant.requests_per_second, tenant.events_per_day);
            for key in &tenant.write_keys {
                specs.push(config_key(key, Role::Write, Some(&tenant.name), limits));
            }
            for key in &tenant.read_keys {
                specs.push(config_key(key, Role::Read, Some(&tenant.name), limits));
            }
        }
        for key in &self.admin_keys {
            specs.push(config_key(key, Role::Admin, None, KeyLimits::default()));
        }
        for key in keys {
            let limits = match key.tenant.as_deref() {
                None => KeyLimits::default(),
                Some(name) => match (stored.get(name), self.configured_tenant(name)) {
                    (Some(tenant), _) => self
                        .quotas
                        .limits(tenant.requests_per_second, tenant.events_per_day),
                    (None, Some(tenant)) => self
                        .quotas
                        .limits(tenant.requests_per_second, tenant.events_per_day),
                    // A key of a tenant that no longer exists grants nothing.
                    (None, None) => continue,
                },
            };
            specs.push(KeySpec {
                id: key.id,
                digest: key.digest,
                role: key.role,
                tenant: key.tenant,
                limits,
            });
        }
        self.directory.replace(specs);
        *self.built_from.lock() = Some(built_from);
        // After the replacement: a session that sees the new generation finds the new keys.
        self.generation.send_modify(|generation| *generation += 1);
    }

    fn configured_tenant(&self, name: &str) -> Option<&TenantConfig> {
        self.configured.iter().find(|tenant| tenant.name == name)
    }

    /// Every tenant: the config's, then the stored ones.
    pub async fn tenants(&self) -> Result<Vec<TenantView>, StoreError> {
        let mut views: Vec<TenantView> = self
            .configured
            .iter()
            .map(|tenant| TenantView {
                name: tenant.name.clone(),
                origin: TenantOrigin::Config,
                requests_per_second: tenant.requests_per_second,
                events_per_day: tenant.events_per_day,
                effective: self
                    .quotas
                    .limits(tenant.requests_per_second, tenant.events_per_day)
                    .into(),
                created_at: None,
            })
            .collect();
        for tenant in self.store.tenants().await? {
            views.push(TenantView {
                effective: self
                    .quotas
                    .limits(tenant.requests_per_second, tenant.events_per_day)
                    .into(),
                name: tenant.name,
                origin: TenantOrigin::Api,
                requests_per_second: tenant.requests_per_second,
                events_per_day: tenant.events_per_day,
                created_at: Some(tenant.created_at),
            });
        }
        Ok(views)
    }

    /// One tenant, if it exists.
    pub async fn tenant(&self, name: &str) -> Result<Option<TenantView>, StoreError> {
        Ok(self
            .tenants()
            .await?
            .into_iter()
            .find(|tenant| tenant.name == name))
    }

    /// Whether the config defines this tenant.
    pub fn is_configured(&self, name: &str) -> bool {
        self.configured_tenant(name).is_some()
    }

    /// The configured keys of a tenant (or the admin keys for `None`), as id and hint.
    pub fn configured_keys(&self, tenant: Option<&str>) -> Vec<(String, Role, String)> {
        let entry = |secret: &String, role: Role| {
            (
                config_key_id(&self.key_ids, secret),
                role,
                secret.chars().take(6).collect::<String>(),
            )
        };
        match tenant {
            None => self
                .admin_keys
                .iter()
                .map(|key| entry(key, Role::Admin))
                .collect(),
            Some(name) => self
                .configured_tenant(name)
                .map(|tenant| {
                    tenant
                        .write_keys
                        .iter()
                        .map(|key| entry(key, Role::Write))
                        .chain(tenant.read_keys.iter().map(|key| entry(key, Role::Read)))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// Checks the request's bearer key: 401 without a known key, 403 when its role is not
    /// `role`, 429 with `Retry-After` over its request rate.
    pub fn authorize(&self, headers: &HeaderMap, role: Role) -> Result<Arc<Grant>, ApiError> {
        self.authorize_key(bearer(headers)?, role)
    }

    /// Checks a key given some other way (a WebSocket's `connection_init`).
    pub fn authorize_key(&self, key: &str, role: Role) -> Result<Arc<Grant>, ApiError> {
        self.authorize_any(key, &[role])
    }

    /// Checks the request's bearer key like [`Access::authorize`], for a key of any of `roles`.
    pub fn authorize_roles(
        &self,
        headers: &HeaderMap,
        roles: &[Role],
    ) -> Result<Arc<Grant>, ApiError> {
        self.authorize_any(bearer(headers)?, roles)
    }

    fn authorize_any(&self, key: &str, roles: &[Role]) -> Result<Arc<Grant>, ApiError> {
        let grant = self.directory.lookup(key).ok_or_else(|| {
            ApiError::unauthorized(
                "unknown key: check it, or ask an admin for one (POST /v1/admin/keys)",
            )
        })?;
        if !roles.contains(&grant.role()) {
            let needed = match roles.first() {
                Some(Role::Read) => "reading metrics",
                Some(Role::Write) => "sending events",
                Some(Role::Admin) => "administering sluice",
                Some(Role::Schema) => "registering schemas",
                Some(Role::Alerts) | None => "managing alerts",
            };
            let keys: Vec<&str> = roles.iter().map(|role| role.a_key()).collect();
            return Err(ApiError::forbidden(format!(
                "this is {}: {needed} needs {}",
                grant.role().a_key(),
                keys.join(" or ")
            )));
        }
        if let Err(limited) = grant.admit_request() {
            let tenant = grant.tenant().map_or("", |tenant| tenant);
            metrics::counter!("sluice_rate_limited_total", "tenant" => tenant.to_owned(), "key" => grant.id().to_string(), "limit" => limited.kind.as_str())
                .increment(1);
            return Err(ApiError::limited(&limited));
        }
        Ok(grant)
    }

    /// Checks the key of a long-lived session like [`Access::authorize_key`], and returns it as
    /// a [`SessionKey`] that follows the directory's changes.
    pub fn authorize_session(&self, key: &str, role: Role) -> Result<SessionKey, ApiError> {
        // Subscribed before the lookup: a change in between is seen as a change.
        let changes = self.generation.subscribe();
        let grant = self.authorize_key(key, role)?;
        Ok(SessionKey {
            check: KeyCheck {
                directory: Arc::clone(&self.directory),
                digest: digest(key),
                role,
                tenant: grant.tenant().cloned(),
                changes,
                revoked: false,
            },
            grant,
        })
    }

    /// Adds what this node's keys took since the last save to the store's counts, then takes
    /// in what other nodes added: the nodes of a cluster share each key's daily quota.
    pub async fn save_usage(&self) -> Result<(), StoreError> {
        let unsaved = self.directory.unsaved_usage(now_millis());
        if !unsaved.is_empty() {
            self.store.add_key_usage(unsaved.clone()).await?;
            self.directory.mark_saved(&unsaved);
        }
        self.merge_stored_usage().await
    }

    /// Saves usage every `[quotas] usage-save-interval` until `stop`, and once more then.
    pub async fn run_usage_saver(self: Arc<Self>, stop: CancellationToken) {
        let every: Duration = self.quotas.usage_save_interval.get();
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let stopped = tokio::select! {
                () = stop.cancelled() => true,
                _ = tick.tick() => false,
            };
            if let Err(error) = self.save_usage().await {
                tracing::warn!(%error, "saving key usage failed; retrying at the next interval");
            }
            if stopped {
                return;
            }
        }
    }
}

/// The key a long-lived session was opened with: its current grant, checked again whenever the
/// directory changes. The session keeps the secret's digest, never the secret.
#[derive(Debug, Clone)]
pub struct SessionKey {
    check: KeyCheck,
    grant: Arc<Grant>,
}

/// A session's key no longer grants what the session was opened with: deleted, its tenant
/// deleted, or its role or tenant changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Revoked;

impl std::fmt::Display for Revoked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(
            "key revoked: this key (or its tenant) was deleted; connect again with a valid key",
        )
    }
}

impl SessionKey {
    /// The grant as of the last check (with the key's current limits).
    pub fn grant(&self) -> &Arc<Grant> {
        &self.grant
    }

    /// The grant, checked again first if the directory changed since the last check: cheap
    /// (one atomic load) when nothing changed.
    pub fn check(&mut self) -> Result<&Arc<Grant>, Revoked> {
        if let Some(grant) = self.check.current()? {
            self.grant = grant;
        }
        Ok(&self.grant)
    }

    /// A check of the same key for another task (the socket writer), with its own view of
    /// the directory's changes.
    pub fn gate(&self) -> KeyCheck {
        self.check.clone()
    }

    /// Resolves once the key no longer grants what the session was opened with (never while
    /// it does, nor once the directory is gone: the server is stopping).
    pub async fn revoked(&mut self) -> Revoked {
        loop {
            if self.check.revoked {
                return Revoked;
            }
            if self.check.changes.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
            match self.check.recheck() {
                Ok(grant) => self.grant = grant,
                Err(revoked) => return revoked,
            }
        }
    }
}

/// Whether a key still grants a role to a tenant, checked again after each change of the
/// directory.
#[derive(Debug, Clone)]
pub struct KeyCheck {
    directory: Arc<KeyDirectory>,
    digest: sluice_core::access::Digest,
    role: Role,
    tenant: Option<Arc<str>>,
    changes: watch::Receiver<u64>,
    revoked: bool,
}

impl KeyCheck {
    /// `Err` once revoked; `Ok(Some(grant))` when the directory changed and the key still
    /// grants the same role and tenant; `Ok(None)` when nothing changed.
    pub fn current(&mut self) -> Result<Option<Arc<Grant>>, Revoked> {
        if self.revoked {
            return Err(Revoked);
        }
        // A closed channel (the server is stopping) is no change.
        if !self.changes.has_changed().unwrap_or(false) {
            return Ok(None);
        }
        self.recheck().map(Some)
    }

    fn recheck(&mut self) -> Result<Arc<Grant>, Revoked> {
        self.changes.borrow_and_update();
        match self.directory.lookup_digest(&self.digest) {
            Some(grant) if grant.role() == self.role && grant.tenant() == self.tenant.as_ref() => {
                Ok(grant)
            }
            _ => {
                self.revoked = true;
                Err(Revoked)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(id: &str, secret: &str, role: Role, tenant: &str, rate: u32) -> KeySpec {
        KeySpec {
            id: id.into(),
            digest: digest(secret),
            role,
            tenant: Some(tenant.into()),
            limits: KeyLimits {
                requests_per_second: rate,
                events_per_day: 0,
            },
        }
    }

    /// A session key for `secret`, as `Access::authorize_session` makes it.
    fn session(
        directory: &Arc<KeyDirectory>,
        generation: &watch::Sender<u64>,
        secret: &str,
    ) -> SessionKey {
        let grant = directory.lookup(secret).unwrap();
        SessionKey {
            check: KeyCheck {
                directory: Arc::clone(directory),
                digest: digest(secret),
                role: grant.role(),
                tenant: grant.tenant().cloned(),
                changes: generation.subscribe(),
                revoked: false,
            },
            grant,
        }
    }

    #[tokio::test]
    async fn a_session_key_follows_the_directory_until_it_no_longer_grants_its_role_and_tenant() {
        let secret = "rk_session_key_0123";
        let directory = Arc::new(KeyDirectory::new(vec![spec(
            "a",
            secret,
            Role::Read,
            "shop",
            0,
        )]));
        let generation = watch::Sender::new(0);
        let mut key = session(&directory, &generation, secret);
        let mut gate = key.gate();
        assert!(key.check().is_ok());
        assert!(matches!(gate.current(), Ok(None)), "nothing changed");

        // New limits: still the same grant of the same key, with the new limits.
        directory.replace(vec![spec("a", secret, Role::Read, "shop", 5)]);
        generation.send_modify(|g| *g += 1);
        assert_eq!(key.check().unwrap().limits().requests_per_second, 5);
        assert!(matches!(gate.current(), Ok(Some(_))));

        // Another tenant, another role, or no key at all: revoked, and it stays revoked.
        for keys in [
            vec![spec("a", secret, Role::Read, "blog", 5)],
            vec![spec("a", secret, Role::Write, "shop", 5)],
            vec![],
        ] {
            let mut key = session(&directory, &generation, secret);
            let mut writer = key.gate();
            directory.replace(keys);
            generation.send_modify(|g| *g += 1);
            assert_eq!(
                writer.current().unwrap_err(),
                Revoked,
                "the writer sees it too"
            );
            assert_eq!(key.check().unwrap_err(), Revoked);
            assert_eq!(key.check().unwrap_err(), Revoked, "once revoked, always");
            assert_eq!(key.revoked().await, Revoked);
            directory.replace(vec![spec("a", secret, Role::Read, "shop", 0)]);
        }

        // revoked() waits for a change that revokes, and no other.
        let mut key = session(&directory, &generation, secret);
        let waiting = tokio::spawn(async move { key.revoked().await });
        directory.replace(vec![spec("a", secret, Role::Read, "shop", 7)]);
        generation.send_modify(|g| *g += 1);
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        directory.replace(vec![]);
        generation.send_modify(|g| *g += 1);
        assert_eq!(waiting.await.unwrap(), Revoked);
    }
}
