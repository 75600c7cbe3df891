//! The schema registry's service: the current [`Registry`] snapshot and the collector's
//! [`Validators`] built from it, the registry's writes (decided by `sluice-schema`, kept by
//! the store), and who may do what. Its HTTP face, Confluent's REST protocol, is [`routes`].
//!
//! **Tenants and keys.** A tenant's subjects are its own. A request's tenant is its key's:
//! write, read and schema keys of a tenant read its subjects (`GET`, lookups, compatibility
//! checks); schema keys also register, delete and configure. An admin key names the tenant in
//! the base URL, `/schemas/tenants/{tenant}`. Keys travel as Confluent clients send them:
//! HTTP Basic (the key as user name, any password; or as password) or `Bearer`.
//!
//! **Writes.** One at a time per node (a lock); the store refuses a version whose subject
//! changed since the decision (another node registered first), and the decision is then made
//! again on a fresh snapshot. After every write the snapshot and the validators are rebuilt
//! from the store, so the next event is validated by the new version: no restart. Other nodes
//! of a cluster read the store again every `schemas.refresh-interval`.
//!
//! Nothing here touches the collector's path but the validators' swap: a slow or failing
//! registry request never holds up ingestion.

pub mod files;
pub mod routes;

use crate::keys::Access;
use base64::Engine;
use parking_lot::RwLock;
use sluice_core::access::{Grant, Role};
use sluice_schema::error::SchemaError;
use sluice_schema::parse::{self, Checked};
use sluice_schema::registry::{Registration, Registry};
use sluice_schema::validate::{Defaults, SharedValidators};
use sluice_schema::{
    Compatibility, SchemaType, SchemaVersion, SchemasConfig, SubjectConfig, Validators,
};
use sluice_store::{StoreBackend, StoreError};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How many times a registration is decided again when another writer got there first.
const CONFLICT_RETRIES: usize = 5;

/// The registry's state and writes.
#[derive(Debug)]
pub struct SchemaService {
    access: Arc<Access>,
    store: StoreBackend,
    config: SchemasConfig,
    snapshot: RwLock<Arc<Registry>>,
    validators: Arc<SharedValidators>,
    writes: tokio::sync::Mutex<()>,
}

/// Who is asking, for which tenant.
#[derive(Debug)]
pub struct Caller {
    /// The tenant whose subjects the request is about.
    pub tenant: String,
    grant: Arc<Grant>,
}

impl Caller {
    /// Refuses a key that may not change the registry.
    pub fn may_write(&self) -> Result<(), SchemaError> {
        match self.grant.role() {
            Role::Admin | Role::Schema => Ok(()),
            role => Err(SchemaError::Forbidden(format!(
                "this is {}: registering, deleting and configuring schemas needs a schema key of the tenant or an admin key (POST /v1/admin/keys {{\"role\": \"schema\", \"tenant\": …}})",
                role.a_key()
            ))),
        }
    }
}

fn unavailable(error: StoreError) -> SchemaError {
    tracing::warn!(%error, "schema registry request failed");
    SchemaError::Unavailable(error.to_string())
}

impl SchemaService {
    /// Reads the registry from the store and builds the first snapshot and validators.
    pub async fn open(
        access: Arc<Access>,
        store: StoreBackend,
        config: SchemasConfig,
        validators: Arc<SharedValidators>,
    ) -> Result<Arc<Self>, StoreError> {
        let service = SchemaService {
            access,
            store,
            config,
            snapshot: RwLock::new(Arc::new(Registry::default())),
            validators,
            writes: tokio::sync::Mutex::new(()),
        };
        service.reload().await?;
        Ok(Arc::new(service))
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Registry> {
        Arc::clone(&self.snapshot.read())
    }

    /// The `[schemas]` config.
    pub fn config(&self) -> &SchemasConfig {
        &self.config
    }

    /// Reads every version and setting from the store again and swaps in a new snapshot and
    /// new validators (reusing what is compiled).
    pub async fn reload(&self) -> Result<(), StoreError> {
        let (versions, settings) = self.store.schema_registry().await?;
        let registry = Registry::new(versions, settings, self.config.compatibility);
        let defaults = Defaults {
            validation: self.config.validation,
            unknown_events: self.config.unknown_events,
        };
        let previous = self.validators.current();
        self.validators
            .replace(Validators::build(&registry, defaults, Some(&previous)));
        *self.snapshot.write() = Arc::new(registry);
        Ok(())
    }

    /// Reads the store again every `every` until `stop`: what other nodes registered.
    pub async fn follow_store(self: Arc<Self>, every: Duration, stop: CancellationToken) {
        let mut failing = false;
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
            match self.reload().await {
                Ok(()) if failing => {
                    failing = false;
                    tracing::info!("the schema registry reads the store again");
                }
                Ok(()) => {}
                Err(error) if !failing => {
                    failing = true;
                    tracing::warn!(%error, "the schema registry cannot read the store; it keeps its last snapshot and tries again");
                }
                Err(_) => {}
            }
        }
    }

    /// The caller of a request: its key (from `Authorization`) and the tenant it acts for
    /// (`path_tenant` for admin keys).
    pub fn caller(
        &self,
        authorization: Option<&str>,
        path_tenant: Option<&str>,
    ) -> Result<Caller, SchemaError> {
        let directory = self.access.directory();
        let grant = keys_of(authorization)?
            .iter()
            .find_map(|key| directory.lookup(key))
            .ok_or_else(|| {
                SchemaError::Unauthorized(
                    "unknown key: check it, or ask an admin for one (POST /v1/admin/keys)"
                        .to_owned(),
                )
            })?;
        if let Err(limited) = grant.admit_request() {
            return Err(SchemaError::Limited(limited.to_string()));
        }
        let tenant = match (grant.tenant(), path_tenant) {
            (Some(own), None) => own.to_string(),
            (Some(own), Some(named)) if **own == *named => own.to_string(),
            (Some(own), Some(named)) => {
                return Err(SchemaError::Forbidden(format!(
                    "this key belongs to tenant {own:?}, not {named:?}"
                )));
            }
            (None, Some(named)) => {
                sluice_core::tenant::check_tenant_name(named)
                    .map_err(SchemaError::InvalidRequest)?;
                named.to_owned()
            }
            (None, None) => {
                return Err(SchemaError::InvalidRequest(
                    "an admin key belongs to no tenant: use the base URL /schemas/tenants/{tenant}"
                        .to_owned(),
                ));
            }
        };
        Ok(Caller { tenant, grant })
    }

    /// Parses a schema of `kind` within the size limit.
    pub fn parse(&self, kind: SchemaType, text: &str) -> Result<Checked, SchemaError> {
        parse::parse(kind, text, self.config.max_schema_bytes.as_usize())
    }

    /// Registers `text` under `subject` (see [`sluice_schema::registry`]).
    pub async fn register(
        &self,
        caller: &Caller,
        subject: &str,
        kind: SchemaType,
        text: &str,
    ) -> Result<SchemaVersion, SchemaError> {
        caller.may_write()?;
        self.register_for(&caller.tenant, subject, kind, text).await
    }

    /// Registers `text` under a subject of `tenant`, for whoever is allowed to (a caller with
    /// a key that may write, or the schema files of the config).
    pub(crate) async fn register_for(
        &self,
        tenant: &str,
        subject: &str,
        kind: SchemaType,
        text: &str,
    ) -> Result<SchemaVersion, SchemaError> {
        sluice_schema::subject::check_subject(subject).map_err(SchemaError::InvalidRequest)?;
        let checked = self.parse(kind, text)?;
        let _turn = self.writes.lock().await;
        for _ in 0..CONFLICT_RETRIES {
            let registry = self.snapshot();
            let canonical = match registry.register(tenant, subject, kind, &checked)? {
                Registration::Existing(version) => return Ok(version),
                Registration::New { canonical, .. } => canonical,
            };
            let held: usize = registry
                .subjects(tenant, true)
                .iter()
                .map(|s| registry.versions(tenant, s, true).map_or(0, |v| v.len()))
                .sum();
            if held >= self.config.max_versions_per_tenant {
                return Err(SchemaError::InvalidRequest(format!(
                    "tenant {:?} holds {held} schema versions, the limit (schemas.max-versions-per-tenant): delete some permanently first",
                    tenant
                )));
            }
            let expected = registry
                .versions(tenant, subject, true)
                .ok()
                .and_then(|v| v.last().copied());
            match self
                .store
                .add_schema_version(tenant, subject, kind, &canonical, expected)
                .await
            {
                Ok(version) => {
                    self.reload().await.map_err(unavailable)?;
                    tracing::info!(tenant = %tenant, subject, version = version.version, id = version.id, "schema registered");
                    return Ok(version);
                }
                Err(StoreError::Conflict(_)) => {
                    self.reload().await.map_err(unavailable)?;
                }
                Err(error) => return Err(unavailable(error)),
            }
        }
        Err(SchemaError::Unavailable(format!(
            "subject {subject:?} kept changing under this registration; retry"
        )))
    }

    /// Deletes one version or all versions of a subject, softly or for good.
    pub async fn delete(
        &self,
        caller: &Caller,
        subject: &str,
        version: Option<u32>,
        permanent: bool,
    ) -> Result<Vec<u32>, SchemaError> {
        caller.may_write()?;
        let _turn = self.writes.lock().await;
        let registry = self.snapshot();
        registry.versions(&caller.tenant, subject, true)?;
        if let Some(number) = version {
            let target = registry.version(
                &caller.tenant,
                subject,
                sluice_schema::registry::VersionRef::Number(number),
                true,
            )?;
            if permanent && !target.deleted {
                return Err(SchemaError::VersionNotSoftDeleted {
                    subject: subject.to_owned(),
                    version: number,
                });
            }
            if !permanent && target.deleted {
                return Err(SchemaError::VersionNotFound {
                    subject: subject.to_owned(),
                    version: number.to_string(),
                });
            }
        } else if permanent && registry.latest(&caller.tenant, subject).is_some() {
            return Err(SchemaError::SubjectNotSoftDeleted(subject.to_owned()));
        } else if !permanent && registry.latest(&caller.tenant, subject).is_none() {
            return Err(SchemaError::SubjectNotFound(subject.to_owned()));
        }
        let affected = self
            .store
            .delete_schema_versions(&caller.tenant, subject, version, permanent)
            .await
            .map_err(unavailable)?;
        self.reload().await.map_err(unavailable)?;
        Ok(affected)
    }

    /// Replaces the settings of the caller's tenant (`subject` `None`) or of a subject.
    pub async fn configure(
        &self,
        caller: &Caller,
        subject: Option<&str>,
        settings: Option<SubjectConfig>,
    ) -> Result<(), SchemaError> {
        caller.may_write()?;
        let _turn = self.writes.lock().await;
        let subject = subject.unwrap_or_default();
        let settings = settings.map(|s| SubjectConfig {
            tenant: caller.tenant.clone(),
            subject: subject.to_owned(),
            ..s
        });
        self.store
            .set_schema_settings(&caller.tenant, subject, settings)
            .await
            .map_err(unavailable)?;
        self.reload().await.map_err(unavailable)
    }

    /// The level that applies to `subject` (or the tenant's).
    pub fn compatibility(&self, tenant: &str, subject: Option<&str>) -> Compatibility {
        let registry = self.snapshot();
        match subject {
            Some(subject) => registry.compatibility(tenant, subject),
            None => registry.tenant_compatibility(tenant),
        }
    }
}

/// The candidate keys of an `Authorization` header: `Bearer KEY`, or HTTP Basic with the
/// key as user name or as password (Confluent clients send `basic.auth.user.info` as
/// `USER:PASSWORD`; which half holds the key is for the directory to tell).
fn keys_of(authorization: Option<&str>) -> Result<Vec<String>, SchemaError> {
    let missing = || {
        SchemaError::Unauthorized(
            "missing key: send it as HTTP Basic (basic.auth.user.info = \"KEY:\") or Authorization: Bearer KEY".to_owned(),
        )
    };
    let header = authorization.ok_or_else(missing)?;
    let (scheme, value) = header.split_once(' ').ok_or_else(missing)?;
    let value = value.trim();
    if scheme.eq_ignore_ascii_case("bearer") && !value.is_empty() {
        return Ok(vec![value.to_owned()]);
    }
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(missing());
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(value)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(missing)?;
    let (user, password) = decoded.split_once(':').unwrap_or((&decoded, ""));
    let keys: Vec<String> = [user, password]
        .into_iter()
        .filter(|half| !half.is_empty())
        .map(str::to_owned)
        .collect();
    if keys.is_empty() {
        return Err(missing());
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::keys_of;

    #[test]
    fn keys_come_as_confluent_clients_send_them() {
        let basic = |text: &str| {
            use base64::Engine;
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(text)
            )
        };
        assert_eq!(keys_of(Some("Bearer sk_abc")).unwrap(), ["sk_abc"]);
        assert_eq!(keys_of(Some(&basic("sk_abcdef:"))).unwrap(), ["sk_abcdef"]);
        assert_eq!(keys_of(Some(&basic(":sk_abcdef"))).unwrap(), ["sk_abcdef"]);
        assert_eq!(
            keys_of(Some(&basic("sluice:sk_abcdef"))).unwrap(),
            ["sluice", "sk_abcdef"]
        );
        assert!(keys_of(None).is_err());
        assert!(keys_of(Some(&basic(":"))).is_err());
        assert!(keys_of(Some("Digest x")).is_err());
    }
}
