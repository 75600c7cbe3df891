//! Who may call what: the key directory built from the config (its `[[tenants]]` and
//! `admin-keys`) and from the tenants and keys the admin API stored, kept in line with the store
//! after every change. The collector shares the same directory, so a write key created through
//! the admin API works at once.

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
use sluice_store::{ServingStore, StoreBackend, StoreError, TenantRecord};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
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
        });
        access.reload().await?;
        let former: std::collections::HashMap<String, String> = access
            .configured_secrets()
            .map(|secret| {
                (
                    legacy_config_key_id(secret),
                    config_key_id(&access.key_ids, secret),
                )
            })
            .collect();
        let today = (now_millis() / DAY_MS) as u64;
        for (id, used) in access.store.key_usage(today).await? {
            let id = former.get(&id).unwrap_or(&id);
            access.directory.restore_usage(id, today, used);
        }
        Ok(access)
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
        Ok(())
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
        let grant = self.directory.lookup(key).ok_or_else(|| {
            ApiError::unauthorized(
                "unknown key: check it, or ask an admin for one (POST /v1/admin/keys)",
            )
        })?;
        if grant.role() != role {
            let needed = match role {
                Role::Read => "reading metrics",
                Role::Write => "sending events",
                Role::Admin => "administering sluice",
            };
            return Err(ApiError::forbidden(format!(
                "this is {}: {needed} needs {}",
                grant.role().a_key(),
                role.a_key()
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

    /// Saves today's usage of every key to the store.
    pub async fn save_usage(&self) -> Result<(), StoreError> {
        self.store
            .save_key_usage(self.directory.usage(now_millis()))
            .await
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
