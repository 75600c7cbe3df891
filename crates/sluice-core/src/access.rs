//! Access keys: which tenant a key belongs to, what it may do, and how much of it (a request
//! rate and a daily event quota, per key).
//!
//! Keys are looked up by the SHA-256 of the secret, so the directory never holds a secret in
//! the clear, and one lookup on the collector's hot path is one hash (SHA-NI where the CPU has
//! it, ~100 ns) and one probe under a read lock. The directory is replaced as a whole when keys
//! change; each key's usage counters survive replacement, so a limit change or a new key
//! elsewhere never resets anyone's budget.
//!
//! Limits are lock-free: the request rate is a GCRA (generic cell rate algorithm) on one
//! atomic "theoretical arrival time", allowing a burst of one second's worth; the daily quota
//! packs the UTC day and the count used into one atomic word.
//!
//! Daily counts are shared through the store, so that nodes of a cluster draw on one budget:
//! each key's store row holds the events every node took that day. A node adds what it took
//! since its last save ([`KeyDirectory::unsaved_usage`], then [`KeyDirectory::mark_saved`]) and
//! takes in what the others added ([`KeyDirectory::merge_usage`]): it remembers the store's
//! count it has accounted for (`saved`), and anything above it is other nodes' use. Between two
//! saves a key can overshoot its quota by what the other nodes take in that interval; a
//! refund after a save is not given back (the store only grows), which errs on the side of the
//! quota.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Send events to the collector (its tenant's).
    Write,
    /// Read its tenant's metrics: queries, subscriptions.
    Read,
    /// Administer sluice: tenants, keys, metrics. Not bound to a tenant.
    Admin,
    /// Register, delete and configure its tenant's schemas (the schema registry's writes).
    Schema,
    /// Manage its tenant's alert rules and silences, and test its channels (reads alerts too).
    Alerts,
}

impl Role {
    /// The name used in the API and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Write => "write",
            Role::Read => "read",
            Role::Admin => "admin",
            Role::Schema => "schema",
            Role::Alerts => "alerts",
        }
    }

    /// Parses a stored or requested role name.
    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "write" => Some(Role::Write),
            "read" => Some(Role::Read),
            "admin" => Some(Role::Admin),
            "schema" => Some(Role::Schema),
            "alerts" => Some(Role::Alerts),
            _ => None,
        }
    }

    /// A key of this role, with its article, for messages: `a write key`, `a read key`,
    /// `an admin key`.
    pub fn a_key(self) -> &'static str {
        match self {
            Role::Write => "a write key",
            Role::Read => "a read key",
            Role::Admin => "an admin key",
            Role::Schema => "a schema key",
            Role::Alerts => "an alerts key",
        }
    }

    /// The readable prefix of generated secrets (`wk_`, `rk_`, `ak_`, `sk_`, `lk_`).
    pub fn secret_prefix(self) -> &'static str {
        match self {
            Role::Write => "wk_",
            Role::Read => "rk_",
            Role::Admin => "ak_",
            Role::Schema => "sk_",
            Role::Alerts => "lk_",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How much one key may do. Zero means no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyLimits {
    /// Requests per second, with bursts of up to one second's worth.
    pub requests_per_second: u32,
    /// Events accepted per UTC day (write keys).
    pub events_per_day: u64,
}

/// The SHA-256 of a secret.
pub type Digest = [u8; 32];

/// The digest a secret is stored and looked up under.
pub fn digest(secret: &str) -> Digest {
    use sha2::Digest as _;
    sha2::Sha256::digest(secret.as_bytes()).into()
}

/// The secret that keys the ids of configured keys: 32 random bytes, kept in the data dir and
/// never shown, so a key's id (in `/metrics`, logs, the admin API) says nothing about the key.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyIdSecret([u8; 32]);

impl KeyIdSecret {
    /// Its length in hex digits.
    pub const HEX_LEN: usize = 64;

    /// A secret of these (random) bytes.
    pub fn new(bytes: [u8; 32]) -> KeyIdSecret {
        KeyIdSecret(bytes)
    }

    /// Parses [`KeyIdSecret::to_hex`]'s form (64 hex digits).
    pub fn from_hex(text: &str) -> Option<KeyIdSecret> {
        let text = text.trim();
        if text.len() != Self::HEX_LEN || !text.bytes().all(|byte| byte.is_ascii_hexdigit()) {
            return None;
        }
        let mut bytes = [0; 32];
        for (byte, pair) in bytes.iter_mut().zip(text.as_bytes().chunks(2)) {
            *byte = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
        }
        Some(KeyIdSecret(bytes))
    }

    /// 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }
}

impl fmt::Debug for KeyIdSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyIdSecret(..)")
    }
}

/// The public id of a key written in the config: `cfg_` and the first 64 bits of
/// HMAC-SHA256(`id_secret`, secret). Stable as long as the data dir keeps its id secret; without
/// that secret no guess at a key can be checked against its id (as it could against a plain
/// hash of the key).
pub fn config_key_id(id_secret: &KeyIdSecret, secret: &str) -> String {
    format!(
        "cfg_{}",
        hex(&hmac_sha256(&id_secret.0, secret.as_bytes())[..8])
    )
}

/// The id sluice gave a configured key before ids were keyed: the first 64 bits of the
/// SHA-256 of the secret. Only to carry usage saved under it over to [`config_key_id`].
pub fn legacy_config_key_id(secret: &str) -> String {
    format!("cfg_{}", hex(&digest(secret)[..8]))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// HMAC-SHA256 (RFC 2104) with a key of at most one block (64 bytes).
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    debug_assert!(key.len() <= 64, "longer keys would have to be hashed first");
    let mut block = [0u8; 64];
    block[..key.len()].copy_from_slice(key);
    let mut inner = sha2::Sha256::new();
    inner.update(block.map(|byte| byte ^ 0x36));
    inner.update(message);
    let mut outer = sha2::Sha256::new();
    outer.update(block.map(|byte| byte ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// One key, as the directory is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySpec {
    /// Stable public id (never the secret): usage counters and metrics labels use it.
    pub id: String,
    /// The secret's digest.
    pub digest: Digest,
    /// What it may do.
    pub role: Role,
    /// Its tenant (`None` for admin keys).
    pub tenant: Option<String>,
    /// Its limits.
    pub limits: KeyLimits,
}

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitKind {
    /// `requests-per-second`.
    Requests,
    /// `events-per-day`.
    Events,
}

impl LimitKind {
    /// The label used in metrics and error codes.
    pub fn as_str(self) -> &'static str {
        match self {
            LimitKind::Requests => "requests_per_second",
            LimitKind::Events => "events_per_day",
        }
    }
}

/// A refusal by a limit, with when to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    /// The limit.
    pub kind: LimitKind,
    /// The limit's value.
    pub limit: u64,
    /// How long until the request would be admitted.
    pub retry_after: Duration,
}

impl Limited {
    /// `Retry-After` in whole seconds, at least 1.
    pub fn retry_after_secs(&self) -> u64 {
        let secs = self.retry_after.as_secs() + u64::from(self.retry_after.subsec_nanos() > 0);
        secs.max(1)
    }
}

impl fmt::Display for Limited {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            LimitKind::Requests => write!(
                f,
                "this key is limited to {} requests per second; retry in {} s",
                self.limit,
                self.retry_after_secs()
            ),
            LimitKind::Events => write!(
                f,
                "this key's quota of {} events per day (UTC) is used up; it renews in {} s",
                self.limit,
                self.retry_after_secs()
            ),
        }
    }
}

const DAY_MS: u64 = 86_400_000;
const USED_BITS: u32 = 44;
const USED_MASK: u64 = (1 << USED_BITS) - 1;

/// A key's usage: the rate limiter's state and the daily count.
#[derive(Debug, Default)]
struct Usage {
    /// GCRA theoretical arrival time, nanoseconds since the directory's epoch.
    tat: AtomicU64,
    /// UTC day number << 44 | events used that day (by this node and, as far as it knows, by
    /// the others).
    day_used: AtomicU64,
    /// UTC day number << 44 | the store's count of that day this node has accounted for.
    saved: AtomicU64,
}

/// The count of `day` in a packed day << 44 | count word; 0 for another day.
fn count_of(packed: u64, day: u64) -> u64 {
    if packed >> USED_BITS == day {
        packed & USED_MASK
    } else {
        0
    }
}

/// What one key may do, found by [`KeyDirectory::lookup`].
#[derive(Debug)]
pub struct Grant {
    id: Arc<str>,
    role: Role,
    tenant: Option<Arc<str>>,
    limits: KeyLimits,
    usage: Arc<Usage>,
    epoch: Instant,
}

impl Grant {
    /// The key's public id.
    pub fn id(&self) -> &Arc<str> {
        &self.id
    }

    /// What it may do.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Its tenant (`None` for admin keys).
    pub fn tenant(&self) -> Option<&Arc<str>> {
        self.tenant.as_ref()
    }

    /// Its limits.
    pub fn limits(&self) -> KeyLimits {
        self.limits
    }

    /// Admits one request now, or says when to retry.
    pub fn admit_request(&self) -> Result<(), Limited> {
        let now = self.epoch.elapsed().as_nanos().min(u128::from(u64::MAX)) as u64;
        self.admit_request_at(now)
    }

    /// Admits one request at `now` (nanoseconds since the directory's epoch).
    pub fn admit_request_at(&self, now: u64) -> Result<(), Limited> {
        let rate = u64::from(self.limits.requests_per_second);
        if rate == 0 {
            return Ok(());
        }
        let interval = 1_000_000_000 / rate;
        let tolerance = interval * (rate - 1);
        let mut tat = self.usage.tat.load(Ordering::Relaxed);
        loop {
            let start = tat.max(now);
            if start - now > tolerance {
                return Err(Limited {
                    kind: LimitKind::Requests,
                    limit: rate,
                    retry_after: Duration::from_nanos(start - tolerance - now),
                });
            }
            match self.usage.tat.compare_exchange_weak(
                tat,
                start + interval,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(()),
                Err(actual) => tat = actual,
            }
        }
    }

    /// Takes `events` from today's quota (UTC day of `now_ms`), all or none.
    pub fn take_events(&self, events: u64, now_ms: i64) -> Result<(), Limited> {
        let limit = self.limits.events_per_day;
        if limit == 0 || events == 0 {
            return Ok(());
        }
        let now_ms = now_ms.max(0) as u64;
        let today = now_ms / DAY_MS;
        let mut current = self.usage.day_used.load(Ordering::Relaxed);
        loop {
            let used = if current >> USED_BITS == today {
                current & USED_MASK
            } else {
                0
            };
            if used + events > limit {
                let tomorrow = (today + 1) * DAY_MS;
                return Err(Limited {
                    kind: LimitKind::Events,
                    limit,
                    retry_after: Duration::from_millis(tomorrow - now_ms),
                });
            }
            let next = (today << USED_BITS) | (used + events).min(USED_MASK);
            match self.usage.day_used.compare_exchange_weak(
                current,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(()),
                Err(actual) => current = actual,
            }
        }
    }

    /// Gives back events taken by [`Grant::take_events`] that were not stored after all.
    pub fn refund_events(&self, events: u64, now_ms: i64) {
        if self.limits.events_per_day == 0 || events == 0 {
            return;
        }
        let today = now_ms.max(0) as u64 / DAY_MS;
        let _ = self
            .usage
            .day_used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |current| {
                (current >> USED_BITS == today)
                    .then(|| (today << USED_BITS) | (current & USED_MASK).saturating_sub(events))
            });
    }

    /// Events used on the UTC day of `now_ms`.
    pub fn events_used(&self, now_ms: i64) -> u64 {
        let today = now_ms.max(0) as u64 / DAY_MS;
        count_of(self.usage.day_used.load(Ordering::Relaxed), today)
    }
}

#[derive(Debug, Default)]
struct Table {
    by_digest: HashMap<Digest, Arc<Grant>>,
    usage: HashMap<Arc<str>, Arc<Usage>>,
}

/// Every key sluice accepts, replaced as a whole when keys change.
#[derive(Debug)]
pub struct KeyDirectory {
    epoch: Instant,
    table: RwLock<Table>,
}

impl Default for KeyDirectory {
    fn default() -> Self {
        KeyDirectory::new(Vec::new())
    }
}

impl KeyDirectory {
    /// A directory of `keys`.
    pub fn new(keys: Vec<KeySpec>) -> KeyDirectory {
        let directory = KeyDirectory {
            epoch: Instant::now(),
            table: RwLock::new(Table::default()),
        };
        directory.replace(keys);
        directory
    }

    /// Replaces every key. Keys that stay (same id) keep their usage.
    pub fn replace(&self, keys: Vec<KeySpec>) {
        let mut table = self.table.write().unwrap_or_else(PoisonError::into_inner);
        let mut next = Table::default();
        for spec in keys {
            let id: Arc<str> = Arc::from(spec.id);
            let usage = table
                .usage
                .get(&id)
                .cloned()
                .unwrap_or_else(|| Arc::new(Usage::default()));
            next.usage.insert(Arc::clone(&id), Arc::clone(&usage));
            next.by_digest.insert(
                spec.digest,
                Arc::new(Grant {
                    id,
                    role: spec.role,
                    tenant: spec.tenant.map(Arc::from),
                    limits: spec.limits,
                    usage,
                    epoch: self.epoch,
                }),
            );
        }
        *table = next;
    }

    /// The grant of a secret, if it is a key.
    pub fn lookup(&self, secret: &str) -> Option<Arc<Grant>> {
        self.lookup_digest(&digest(secret))
    }

    /// The grant of a secret's digest, if it is a key: long-lived sessions check again, after
    /// each change of the directory, the key they were opened with (without keeping it).
    pub fn lookup_digest(&self, digest: &Digest) -> Option<Arc<Grant>> {
        self.table
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .by_digest
            .get(digest)
            .cloned()
    }

    /// The tenant a write key sends events for.
    pub fn write_grant(&self, secret: &str) -> Option<Arc<Grant>> {
        self.lookup(secret)
            .filter(|grant| grant.role == Role::Write && grant.tenant.is_some())
    }

    /// Whether `tenant` has a write key: events for it can be sent (and read) at all.
    pub fn takes_events_for(&self, tenant: &str) -> bool {
        self.table
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .by_digest
            .values()
            .any(|grant| grant.role == Role::Write && grant.tenant.as_deref() == Some(tenant))
    }

    /// What each key took on the UTC day of `now_ms` that the store has not counted yet:
    /// (id, day, events), keys with nothing new left out.
    pub fn unsaved_usage(&self, now_ms: i64) -> Vec<(String, u64, u64)> {
        let day = now_ms.max(0) as u64 / DAY_MS;
        let table = self.table.read().unwrap_or_else(PoisonError::into_inner);
        let mut unsaved: Vec<(String, u64, u64)> = table
            .usage
            .iter()
            .filter_map(|(id, usage)| {
                let used = count_of(usage.day_used.load(Ordering::Relaxed), day);
                let saved = count_of(usage.saved.load(Ordering::Relaxed), day);
                (used > saved).then(|| (id.to_string(), day, used - saved))
            })
            .collect();
        unsaved.sort();
        unsaved
    }

    /// Records that the store added `added` (from [`KeyDirectory::unsaved_usage`]).
    pub fn mark_saved(&self, added: &[(String, u64, u64)]) {
        let table = self.table.read().unwrap_or_else(PoisonError::into_inner);
        for (id, day, events) in added {
            if let Some(usage) = table.usage.get(id.as_str()) {
                let saved = count_of(usage.saved.load(Ordering::Relaxed), *day) + events;
                usage
                    .saved
                    .store((day << USED_BITS) | saved.min(USED_MASK), Ordering::Relaxed);
            }
        }
    }

    /// Takes in the store's counts of `day` (every node's): what exceeds the count this node
    /// has accounted for was taken elsewhere and is added to the key's use. Keys not in the
    /// directory are ignored; a count below the accounted one gives nothing back.
    pub fn merge_usage(&self, day: u64, totals: impl IntoIterator<Item = (String, u64)>) {
        let table = self.table.read().unwrap_or_else(PoisonError::into_inner);
        for (id, total) in totals {
            let Some(usage) = table.usage.get(id.as_str()) else {
                continue;
            };
            let saved = usage.saved.load(Ordering::Relaxed);
            if saved >> USED_BITS > day {
                continue;
            }
            let elsewhere = total.saturating_sub(count_of(saved, day));
            if elsewhere == 0 {
                continue;
            }
            let merged =
                usage
                    .day_used
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |current| {
                        (current >> USED_BITS <= day).then(|| {
                            let used = count_of(current, day) + elsewhere;
                            (day << USED_BITS) | used.min(USED_MASK)
                        })
                    });
            if merged.is_ok() {
                usage
                    .saved
                    .store((day << USED_BITS) | total.min(USED_MASK), Ordering::Relaxed);
            }
        }
    }

    /// How many keys there are.
    pub fn len(&self) -> usize {
        self.table
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .by_digest
            .len()
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(
        id: &str,
        secret: &str,
        role: Role,
        tenant: Option<&str>,
        limits: KeyLimits,
    ) -> KeySpec {
        KeySpec {
            id: id.into(),
            digest: digest(secret),
            role,
            tenant: tenant.map(str::to_owned),
            limits,
        }
    }

    #[test]
    fn hmac_sha256_matches_rfc_4231() {
        assert_eq!(
            hex(&hmac_sha256(&[0x0b; 20], b"Hi There")),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        assert_eq!(
            hex(&hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn config_key_ids_depend_on_the_id_secret_not_only_on_the_key() {
        let one = KeyIdSecret::new([1; 32]);
        let two = KeyIdSecret::new([2; 32]);
        let key = "wk_a-long-random-secret";
        let id = config_key_id(&one, key);
        assert_eq!(id.len(), 4 + 16);
        assert_eq!(id, config_key_id(&one, key), "stable");
        assert_ne!(id, config_key_id(&two, key));
        assert_ne!(id, legacy_config_key_id(key));
        assert!(!hex(&digest(key)).starts_with(&id[4..]));
        assert_eq!(KeyIdSecret::from_hex(&one.to_hex()), Some(one));
        assert_eq!(KeyIdSecret::from_hex("abc"), None);
        assert_eq!(KeyIdSecret::from_hex(&"zz".repeat(32)), None);
        assert_eq!(format!("{two:?}"), "KeyIdSecret(..)");
    }

    #[test]
    fn a_tenant_takes_events_only_with_a_write_key() {
        let limits = KeyLimits::default();
        let directory = KeyDirectory::new(vec![
            spec("a", "wk_secret_one_0123", Role::Write, Some("shop"), limits),
            spec("b", "rk_secret_two_0123", Role::Read, Some("news"), limits),
        ]);
        assert!(directory.takes_events_for("shop"));
        assert!(!directory.takes_events_for("news"));
        assert!(!directory.takes_events_for("nobody"));
    }

    #[test]
    fn keys_are_found_by_secret_with_their_role_and_tenant() {
        let directory = KeyDirectory::new(vec![
            spec(
                "a",
                "wk_secret_one_0123",
                Role::Write,
                Some("shop"),
                KeyLimits::default(),
            ),
            spec(
                "b",
                "rk_secret_two_0123",
                Role::Read,
                Some("shop"),
                KeyLimits::default(),
            ),
            spec(
                "c",
                "ak_secret_three_01",
                Role::Admin,
                None,
                KeyLimits::default(),
            ),
        ]);
        let write = directory.write_grant("wk_secret_one_0123").unwrap();
        assert_eq!(write.tenant().map(|t| &**t), Some("shop"));
        assert!(
            directory.write_grant("rk_secret_two_0123").is_none(),
            "a read key cannot write"
        );
        assert_eq!(
            directory.lookup("rk_secret_two_0123").unwrap().role(),
            Role::Read
        );
        assert_eq!(
            directory.lookup("ak_secret_three_01").unwrap().tenant(),
            None
        );
        assert!(directory.lookup("wk_secret_one_012").is_none());
        assert_eq!(directory.len(), 3);
    }

    #[test]
    fn the_request_rate_allows_a_one_second_burst_then_one_per_interval() {
        let limits = KeyLimits {
            requests_per_second: 4,
            events_per_day: 0,
        };
        let directory = KeyDirectory::new(vec![spec("a", "k", Role::Read, Some("t"), limits)]);
        let grant = directory.lookup("k").unwrap();
        let start = 10_000_000_000;
        for _ in 0..4 {
            grant.admit_request_at(start).unwrap();
        }
        let refused = grant.admit_request_at(start).unwrap_err();
        assert_eq!(refused.kind, LimitKind::Requests);
        assert_eq!(refused.retry_after, Duration::from_millis(250));
        assert_eq!(refused.retry_after_secs(), 1);
        grant.admit_request_at(start + 250_000_000).unwrap();
        assert!(grant.admit_request_at(start + 250_000_000).is_err());
        // After a quiet second the whole burst is back.
        for _ in 0..4 {
            grant.admit_request_at(start + 2_000_000_000).unwrap();
        }
    }

    #[test]
    fn the_daily_quota_is_all_or_nothing_and_renews_at_utc_midnight() {
        let limits = KeyLimits {
            requests_per_second: 0,
            events_per_day: 10,
        };
        let directory = KeyDirectory::new(vec![spec("a", "k", Role::Write, Some("t"), limits)]);
        let grant = directory.lookup("k").unwrap();
        let noon = 19_000 * DAY_MS as i64 + DAY_MS as i64 / 2;
        grant.take_events(7, noon).unwrap();
        let refused = grant.take_events(4, noon).unwrap_err();
        assert_eq!(refused.kind, LimitKind::Events);
        assert_eq!(refused.retry_after, Duration::from_millis(DAY_MS / 2));
        assert_eq!(grant.events_used(noon), 7, "a refused take takes nothing");
        grant.refund_events(2, noon);
        grant.take_events(5, noon).unwrap();
        assert!(grant.take_events(1, noon).is_err());
        grant.take_events(10, noon + DAY_MS as i64).unwrap();
    }

    #[test]
    fn usage_survives_a_replacement_and_restores_without_giving_budget_back() {
        let limits = KeyLimits {
            requests_per_second: 0,
            events_per_day: 100,
        };
        let directory = KeyDirectory::new(vec![spec("a", "k", Role::Write, Some("t"), limits)]);
        let now = 19_000 * DAY_MS as i64;
        directory.lookup("k").unwrap().take_events(30, now).unwrap();
        directory.replace(vec![
            spec(
                "a",
                "k",
                Role::Write,
                Some("t"),
                KeyLimits {
                    events_per_day: 40,
                    ..limits
                },
            ),
            spec("b", "k2", Role::Write, Some("t"), limits),
        ]);
        let grant = directory.lookup("k").unwrap();
        assert_eq!(grant.events_used(now), 30);
        assert!(
            grant.take_events(11, now).is_err(),
            "the new limit applies to the old usage"
        );
        assert_eq!(
            directory.unsaved_usage(now),
            vec![("a".to_owned(), 19_000, 30)]
        );
        directory.merge_usage(19_000, [("b".to_owned(), 60), ("gone".to_owned(), 9)]);
        assert_eq!(
            directory.lookup("k2").unwrap().events_used(now),
            60,
            "a fresh node takes in the store's count"
        );
    }

    /// Two nodes and the store's sum between them: each sees the other's use after a save,
    /// and the quota holds across both.
    #[test]
    fn nodes_share_one_daily_budget_through_the_stores_counts() {
        let limits = KeyLimits {
            requests_per_second: 0,
            events_per_day: 100,
        };
        let node = || KeyDirectory::new(vec![spec("a", "k", Role::Write, Some("t"), limits)]);
        let (one, two) = (node(), node());
        let now = 19_000 * DAY_MS as i64;
        let mut store: HashMap<(String, u64), u64> = HashMap::new();
        let save = |directory: &KeyDirectory, store: &mut HashMap<(String, u64), u64>| {
            let unsaved = directory.unsaved_usage(now);
            for (id, day, events) in &unsaved {
                *store.entry((id.clone(), *day)).or_default() += events;
            }
            directory.mark_saved(&unsaved);
            let totals: Vec<(String, u64)> = store
                .iter()
                .map(|((id, _), events)| (id.clone(), *events))
                .collect();
            directory.merge_usage(19_000, totals);
        };
        one.lookup("k").unwrap().take_events(30, now).unwrap();
        two.lookup("k").unwrap().take_events(20, now).unwrap();
        save(&one, &mut store);
        save(&two, &mut store);
        save(&one, &mut store);
        assert_eq!(
            store[&("a".to_owned(), 19_000)],
            50,
            "each event counted once"
        );
        for directory in [&one, &two] {
            let grant = directory.lookup("k").unwrap();
            assert_eq!(grant.events_used(now), 50);
            assert!(grant.take_events(51, now).is_err());
        }
        one.lookup("k").unwrap().take_events(50, now).unwrap();
        save(&one, &mut store);
        save(&two, &mut store);
        assert!(two.lookup("k").unwrap().take_events(1, now).is_err());
        assert_eq!(store[&("a".to_owned(), 19_000)], 100);

        one.lookup("k").unwrap().refund_events(10, now);
        save(&one, &mut store);
        assert_eq!(
            store[&("a".to_owned(), 19_000)],
            100,
            "a refund after a save stays counted in the store"
        );
        two.merge_usage(19_000, [("a".to_owned(), 40)]);
        assert_eq!(
            two.lookup("k").unwrap().events_used(now),
            100,
            "a smaller stored count gives nothing back"
        );
    }
}
