//! Identity: `CREATE IDENTITY name [FROM events]` resolves every event to the person it
//! belongs to, keeps a profile per person, and writes two topics:
//! - `name`: every event again, with `"resolved_user_id"` added, so a metric `FROM name`
//!   counts people rather than devices (`COUNT(DISTINCT resolved_user_id)`);
//! - `name.changes`: one record per event that changed the identity graph or a profile's
//!   traits (see [`write_change`]).
//!
//! # The rules (Segment's merge rules, with its default limit of one user id per profile)
//! - An event with both `anonymous_id` and `user_id` (an `identify`, or any call made after
//!   one) links the anonymous id to the user. An anonymous id linked to two users (a shared
//!   device) belongs to the one of the latest link, by event time (ties: the greater id): the
//!   two users' profiles are never merged.
//! - `alias` (`previous_id` → `user_id`) merges the previous id into the user: events with
//!   `user_id = previous_id` resolve to the user from then on, and if the previous id is an
//!   anonymous id it is linked to the user. Aliases chain (at most [`MAX_ALIAS_HOPS`] hops; a
//!   cycle stops where it closes).
//! - An event resolves to its `user_id` (through aliases), else to the user its
//!   `anonymous_id` is linked to (through aliases), else to the anonymous id itself.
//! - Resolution goes forward in log order: an anonymous event read before its device's
//!   first identify resolves to the anonymous id, and stays so (a window already counted
//!   is not rewritten). The profile read by `GET /v1/users/{id}` does merge such an
//!   anonymous profile into the user's once the device is linked.
//!
//! # Where the state lives
//! The collector partitions by anonymous id, else user id: every event of an anonymous id is
//! in one partition, so the links of an anonymous id are known exactly where its events are
//! resolved. Each partition's processor keeps the graph (links and aliases) and a partial
//! profile per resolved id (first and last seen, events, traits latest-wins by event time,
//! linked anonymous ids, merged ids) of the events it resolved. An alias whose previous id's
//! own events are in another partition affects the events of this partition (the alias
//! call's visitor) and the merged profile; the other partition keeps resolving the previous
//! id's user-id-only events to it until that partition sees the alias's effects itself.
//!
//! The state is checkpointed as rows of the identity's name, in the same transaction as the
//! partition's offset and the ranges of the records it wrote (the derived streams' protocol),
//! so after a crash the graph, the profiles and the topics agree exactly with the events
//! before the committed offset. Each row's key is `(tenant, kind, id, sub)` and its window
//! `[h, h + 1)` with `h` from a hash of the row's owner id ([`window_of`]), far beyond any
//! event time: a reader fetches every row of one id with one window range, merges the
//! partitions' partial rows with the aggregate states' merge, and the store's settling of
//! closed windows never touches them. Kinds and their states (`[LAST, FIRST, COUNT]`):
//!
//! | kind | owner, sub | state |
//! |---|---|---|
//! | `profile` | resolved id | last seen, first seen (as times), events |
//! | `trait` | resolved id, trait name | the value, at the time of its identify |
//! | `device` | resolved id, anonymous id | first seen linked |
//! | `merged` | user id, previous id | time of the alias |
//! | `link` | anonymous id | the user it is linked to, at the link's time |
//! | `alias` | previous id | the user it was merged into, at the alias's time |
//!
//! # Erasure
//! `DELETE /v1/users/{id}` adds the id to the erased set the collector drops events by. The
//! processor reads the same set: it skips events of erased ids (those stored before the
//! erasure), and when the set changes it removes the erased ids' profiles, links and aliases
//! and deletes their rows at the next checkpoint.

use crate::agg::{AggState, PartialState, Stamped};
use crate::engine::output::{DerivedRecord, Outputs, PartialRow};
use crate::engine::rows::{PackedRows, RowPool};
use crate::json::Slot;
use crate::keys::{self, GroupKey, KeyValue};
use crate::plan::{
    Aggregate, AggregateKind, Expr, Field, LatePolicy, MetricPlan, Output, Source, WindowSpec,
};
use crate::value::Value;
use crate::window::Window;
use bytes::Bytes;
use sluice_core::erasure::ErasedUsers;
use sluice_core::time::Millis;
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

/// The maps of the identity state: looked up a few times per event.
type Map<V> = hashbrown::HashMap<Id, V, foldhash::fast::RandomState>;

/// The fields the identity reads besides tenant and timestamp.
pub const FIELDS: [Field; 5] = [
    Field::Type,
    Field::UserId,
    Field::AnonymousId,
    Field::PreviousId,
    Field::MessageId,
];

/// The suffix of the profile changes' topic: `<name>.changes`.
pub const CHANGES_SUFFIX: &str = ".changes";

/// The most alias hops followed to resolve an id.
pub const MAX_ALIAS_HOPS: usize = 8;

/// The most traits kept per profile and partition; later new names are ignored.
pub const MAX_TRAITS: usize = 128;

/// The most anonymous ids (and merged ids) listed per profile and partition; more are still
/// linked and resolved, only not listed.
pub const MAX_DEVICES: usize = 64;

/// Where identity rows' windows start: beyond any event time, so no watermark closes them.
const WINDOW_BASE: Millis = 1 << 62;

/// The aggregates of every identity row, by position.
const LAST: usize = 0;
const FIRST: usize = 1;
const COUNT: usize = 2;

/// The state kinds of identity rows: `[LAST, FIRST, COUNT]`.
pub const KINDS: [AggregateKind; 3] = [
    AggregateKind::Last,
    AggregateKind::First,
    AggregateKind::CountStar,
];

/// The topic of an identity's profile changes.
pub fn changes_topic(name: &str) -> String {
    format!("{name}{CHANGES_SUFFIX}")
}

/// The plan of `CREATE IDENTITY name`.
pub fn plan(name: String, source: Source, out_of_orderness: Millis, sql: &str) -> MetricPlan {
    let of = |kind| Aggregate {
        kind,
        arg: (kind != AggregateKind::CountStar).then_some(Expr::Field(Field::UserId)),
        filter: None,
    };
    MetricPlan {
        name,
        sql: sql.to_owned(),
        source,
        output: Output::Identity,
        filter: None,
        keys: Vec::new(),
        key_names: Vec::new(),
        aggregates: KINDS.iter().map(|&kind| of(kind)).collect(),
        columns: Vec::new(),
        window: WindowSpec::Tumble { size: 1 },
        out_of_orderness,
        allowed_lateness: 0,
        late: LatePolicy::Drop,
    }
}

/// The window of every row owned by `id` (of any tenant): `[h, h + 1)`.
pub fn window_of(id: &str) -> Window {
    let hash = xxhash_rust::xxh3::xxh3_64(id.as_bytes()) >> 3;
    let start = WINDOW_BASE + hash as Millis;
    Window {
        start,
        end: start + 1,
    }
}

/// A row kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RowKind {
    /// A resolved id's profile.
    Profile,
    /// One trait of a profile.
    Trait,
    /// An anonymous id linked to a profile.
    Device,
    /// An id aliased into a profile.
    Merged,
    /// An anonymous id's link to a user.
    Link,
    /// A previous id's alias to a user.
    Alias,
}

impl RowKind {
    const ALL: [RowKind; 6] = [
        RowKind::Profile,
        RowKind::Trait,
        RowKind::Device,
        RowKind::Merged,
        RowKind::Link,
        RowKind::Alias,
    ];

    /// The name in the row's key.
    pub fn as_str(self) -> &'static str {
        match self {
            RowKind::Profile => "profile",
            RowKind::Trait => "trait",
            RowKind::Device => "device",
            RowKind::Merged => "merged",
            RowKind::Link => "link",
            RowKind::Alias => "alias",
        }
    }

    fn parse(text: &str) -> Option<RowKind> {
        RowKind::ALL.into_iter().find(|kind| kind.as_str() == text)
    }
}

/// One identity row's key, decoded.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RowId {
    /// The tenant.
    pub tenant: String,
    /// The kind.
    pub kind: RowKind,
    /// The owner id.
    pub id: String,
    /// The trait name, anonymous id or previous id (empty for the other kinds).
    pub sub: String,
}

impl RowId {
    /// Decodes a row's key (`None`: not an identity row's).
    pub fn of(key: &GroupKey) -> Option<RowId> {
        let text = |value: &KeyValue| match value {
            KeyValue::Text(text) => Some(text.clone()),
            _ => None,
        };
        match key.values() {
            [kind, id, sub] => Some(RowId {
                tenant: key.tenant().to_owned(),
                kind: RowKind::parse(&text(kind)?)?,
                id: text(id)?,
                sub: text(sub)?,
            }),
            _ => None,
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut key = Vec::with_capacity(self.tenant.len() + self.id.len() + self.sub.len() + 16);
        for part in [
            self.tenant.as_str(),
            self.kind.as_str(),
            &self.id,
            &self.sub,
        ] {
            keys::encode_text(part.as_bytes(), &mut key);
        }
        key
    }
}

/// A link or an alias: the user an id now resolves to, and when that was said.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Link {
    user: Box<str>,
    time: Millis,
}

impl Link {
    /// Whether `(time, user)` is later than this link (ties: the greater id).
    fn superseded_by(&self, time: Millis, user: &str) -> bool {
        (time, user) > (self.time, &*self.user)
    }
}

/// One resolved id's partial profile in this partition.
#[derive(Debug, Clone, Default, PartialEq)]
struct Profile {
    first_seen: Millis,
    last_seen: Millis,
    events: u64,
    traits: Vec<(Box<str>, Stamped)>,
    devices: Vec<(Box<str>, Millis)>,
    merged: Vec<(Box<str>, Millis)>,
    traits_changed: bool,
    devices_changed: bool,
    /// Listed in the table's dirty profiles.
    dirty: bool,
}

/// `(tenant, id)` as one map key: the key encoding of both.
type Id = Box<[u8]>;

/// The identity state of one partition.
#[derive(Debug, Default)]
pub struct IdentityTable {
    links: Map<Link>,
    aliases: Map<Link>,
    profiles: Map<Profile>,
    dirty_links: Vec<Id>,
    dirty_aliases: Vec<Id>,
    dirty_profiles: Vec<Id>,
    retracted: Vec<(Arc<GroupKey>, Window)>,
    /// The erased set's version last applied.
    erasures_seen: u64,
    scratch: Vec<u8>,
}

/// Where the identity's fields are in a scan's slots.
#[derive(Debug, Clone, Copy, Default)]
pub struct IdentitySlots {
    /// `type`.
    pub kind: usize,
    /// `user_id`.
    pub user: usize,
    /// `anonymous_id`.
    pub anonymous: usize,
    /// `previous_id`.
    pub previous: usize,
    /// `message_id`.
    pub message: usize,
}

/// One event, as the identity reads it.
#[derive(Debug)]
pub struct Event<'a> {
    /// The tenant.
    pub tenant: &'a str,
    /// Event time.
    pub time: Millis,
    /// The event's JSON.
    pub bytes: &'a [u8],
    /// The scan's slots.
    pub slots: &'a [Slot],
    /// Its offset in the source partition.
    pub offset: u64,
    /// Its record's key.
    pub key: Option<&'a [u8]>,
}

/// What one event changed, for its change record.
#[derive(Debug, Default)]
struct Change {
    /// The anonymous id was linked to the resolved user (before: to this user, if any).
    linked: Option<Option<String>>,
    /// The previous id an alias merged into the user.
    aliased: Option<String>,
    /// Traits whose value changed, as JSON members.
    traits: Vec<(String, Vec<u8>)>,
}

fn id_key(tenant: &str, id: &str, out: &mut Vec<u8>) {
    out.clear();
    keys::encode_text(tenant.as_bytes(), out);
    keys::encode_text(id.as_bytes(), out);
}

fn text_at<'a>(bytes: &'a [u8], slots: &[Slot], index: usize) -> Option<Cow<'a, str>> {
    match crate::eval::slot_value(bytes, slots.get(index)?) {
        Value::Str(Cow::Borrowed(raw)) => std::str::from_utf8(raw).ok().map(Cow::Borrowed),
        Value::Str(Cow::Owned(raw)) => String::from_utf8(raw).ok().map(Cow::Owned),
        _ => None,
    }
    .filter(|text| !text.is_empty())
}

/// The `traits` object of an `identify` call, as (name, value JSON) pairs.
fn traits_of(bytes: &[u8]) -> Vec<(String, Box<serde_json::value::RawValue>)> {
    #[derive(serde::Deserialize)]
    struct Identify {
        #[serde(default)]
        traits: Option<HashMap<String, Box<serde_json::value::RawValue>>>,
    }
    let mut traits: Vec<_> = serde_json::from_slice::<Identify>(bytes)
        .ok()
        .and_then(|identify| identify.traits)
        .map(|traits| traits.into_iter().collect())
        .unwrap_or_default();
    traits.sort_by(|a: &(String, _), b| a.0.cmp(&b.0));
    traits
}

impl IdentityTable {
    /// An empty table.
    pub fn new() -> IdentityTable {
        IdentityTable::default()
    }

    /// How many resolved ids have a profile here.
    pub fn len(&self) -> usize {
        self.profiles.len()
    }

    /// Whether no profile is here.
    pub fn is_empty(&self) -> bool {
        self.profiles.is_empty()
    }

    /// The user `id` resolves to through aliases (itself if none).
    fn canonical<'a>(&mut self, tenant: &str, id: Cow<'a, str>) -> Cow<'a, str> {
        if self.aliases.is_empty() {
            return id;
        }
        let mut seen: Vec<Cow<'a, str>> = vec![id];
        for _ in 0..MAX_ALIAS_HOPS {
            let current = seen.last().map_or("", |id| id);
            id_key(tenant, current, &mut self.scratch);
            let Some(link) = self.aliases.get(&self.scratch[..]) else {
                break;
            };
            if seen.iter().any(|id| **id == *link.user) {
                break;
            }
            seen.push(Cow::Owned(link.user.to_string()));
        }
        seen.pop().unwrap_or_default()
    }

    fn set_link(
        &mut self,
        tenant: &str,
        anonymous: &str,
        user: &str,
        time: Millis,
    ) -> Option<Option<String>> {
        id_key(tenant, anonymous, &mut self.scratch);
        match self.links.get_mut(&self.scratch[..]) {
            Some(link) if link.user.as_ref() == user => None,
            Some(link) if !link.superseded_by(time, user) => None,
            Some(link) => {
                let before = std::mem::replace(&mut link.user, user.into());
                link.time = time;
                self.dirty_links.push(self.scratch.clone().into());
                Some(Some(before.into()))
            }
            None => {
                let key: Id = self.scratch.clone().into();
                self.links.insert(
                    key.clone(),
                    Link {
                        user: user.into(),
                        time,
                    },
                );
                self.dirty_links.push(key);
                Some(None)
            }
        }
    }

    fn set_alias(&mut self, tenant: &str, previous: &str, user: &str, time: Millis) -> bool {
        id_key(tenant, previous, &mut self.scratch);
        let changed = match self.aliases.get_mut(&self.scratch[..]) {
            Some(link) if link.user.as_ref() == user || !link.superseded_by(time, user) => false,
            Some(link) => {
                link.user = user.into();
                link.time = time;
                true
            }
            None => {
                self.aliases.insert(
                    self.scratch.clone().into(),
                    Link {
                        user: user.into(),
                        time,
                    },
                );
                true
            }
        };
        if changed {
            self.dirty_aliases.push(self.scratch.clone().into());
        }
        changed
    }

    fn profile(&mut self, tenant: &str, id: &str) -> &mut Profile {
        id_key(tenant, id, &mut self.scratch);
        let profile = self.profiles.entry_ref(&self.scratch[..]).or_default();
        if !profile.dirty {
            profile.dirty = true;
            self.dirty_profiles.push(self.scratch.as_slice().into());
        }
        profile
    }

    /// The id `event` resolves to, updating the graph and the profile with it; `None` for an
    /// event with no id at all, or of an erased id. Appends the event with its resolved id to
    /// `stream`, and a change record to `changes` if it changed the graph or traits.
    pub fn observe(
        &mut self,
        event: Event<'_>,
        slots: IdentitySlots,
        (stream, changes): (&Arc<str>, &Arc<str>),
        erased: Option<&ErasedUsers>,
        out: &mut Outputs,
    ) -> Option<()> {
        let Event {
            tenant,
            time,
            bytes,
            slots: scanned,
            offset,
            key,
        } = event;
        let user = text_at(bytes, scanned, slots.user);
        let anonymous = text_at(bytes, scanned, slots.anonymous);
        if user.is_none() && anonymous.is_none() {
            return None;
        }
        if let Some(erased) = erased
            && erased.any_erased(tenant, user.iter().chain(anonymous.iter()).map(|id| &**id))
        {
            return None;
        }
        let kind = text_at(bytes, scanned, slots.kind);
        let mut change = Change::default();
        if kind.as_deref() == Some("alias")
            && let (Some(user), Some(previous)) = (&user, text_at(bytes, scanned, slots.previous))
            && previous != *user
        {
            let aliased = self.set_alias(tenant, &previous, user, time);
            self.set_link(tenant, &previous, user, time);
            if aliased {
                let profile = self.profile(tenant, user);
                if profile.merged.len() < MAX_DEVICES
                    && !profile.merged.iter().any(|(id, _)| **id == *previous)
                {
                    profile.merged.push((previous.as_ref().into(), time));
                    profile.devices_changed = true;
                }
                change.aliased = Some(previous.into_owned());
            }
        }
        if let (Some(user), Some(anonymous)) = (&user, &anonymous) {
            change.linked = self.set_link(tenant, anonymous, user, time);
        }
        let resolved: Cow<'_, str> = match (&user, &anonymous) {
            (Some(user), _) => self.canonical(tenant, Cow::Borrowed(user)),
            (None, Some(anonymous)) => {
                id_key(tenant, anonymous, &mut self.scratch);
                match self.links.get(&self.scratch[..]) {
                    Some(link) => {
                        let user = link.user.to_string();
                        self.canonical(tenant, Cow::Owned(user))
                    }
                    None => Cow::Borrowed(&**anonymous),
                }
            }
            (None, None) => return None,
        };
        let traits = if kind.as_deref() == Some("identify") {
            traits_of(bytes)
        } else {
            Vec::new()
        };
        let profile = self.profile(tenant, &resolved);
        if profile.events == 0 || time < profile.first_seen {
            profile.first_seen = time;
        }
        if profile.events == 0 || time > profile.last_seen {
            profile.last_seen = time;
        }
        profile.events += 1;
        if let Some(anonymous) = &anonymous
            && **anonymous != *resolved
            && profile.devices.len() < MAX_DEVICES
            && !profile.devices.iter().any(|(id, _)| **id == **anonymous)
        {
            profile.devices.push((anonymous.as_ref().into(), time));
            profile.devices_changed = true;
        }
        for (name, value) in traits {
            let json = value.get().as_bytes();
            let candidate = Stamped::bounded(time, json);
            match profile.traits.iter().position(|(have, _)| **have == *name) {
                Some(at) => {
                    let stamped = &mut profile.traits[at].1;
                    if candidate > *stamped {
                        if stamped.json != candidate.json {
                            change.traits.push((name, candidate.json.clone()));
                        }
                        *stamped = candidate;
                        profile.traits_changed = true;
                    }
                }
                None if profile.traits.len() < MAX_TRAITS => {
                    change.traits.push((name.clone(), candidate.json.clone()));
                    profile.traits.push((name.into(), candidate));
                    profile.traits_changed = true;
                }
                None => {}
            }
        }
        out.records.push(DerivedRecord {
            stream: stream.clone(),
            offset,
            session: None,
            key: key.map(Bytes::copy_from_slice),
            value: with_resolved(bytes, &resolved),
            event_time: time,
        });
        if change.linked.is_some() || change.aliased.is_some() || !change.traits.is_empty() {
            let message = text_at(bytes, scanned, slots.message);
            let mut value = Vec::with_capacity(256);
            write_change(
                tenant,
                time,
                message.as_deref(),
                &resolved,
                anonymous.as_deref(),
                &change,
                &mut value,
            );
            out.records.push(DerivedRecord {
                stream: changes.clone(),
                offset,
                session: None,
                key: key.map(Bytes::copy_from_slice),
                value,
                event_time: time,
            });
        }
        Some(())
    }

    /// Applies the erased set if it changed since last applied: the erased ids' profiles,
    /// links and aliases go, and their rows are deleted at the next checkpoint.
    pub fn apply_erasures(&mut self, erased: &ErasedUsers) {
        let version = erased.version();
        if version == self.erasures_seen {
            return;
        }
        self.erasures_seen = version;
        for (tenant, id) in erased.all() {
            self.erase(&tenant, &id);
        }
    }

    fn erase(&mut self, tenant: &str, id: &str) {
        let row = |kind, id: &str, sub: &str| RowId {
            tenant: tenant.to_owned(),
            kind,
            id: id.to_owned(),
            sub: sub.to_owned(),
        };
        let mut gone = Vec::new();
        id_key(tenant, id, &mut self.scratch);
        let key = self.scratch.clone();
        if let Some(profile) = self.profiles.remove(&key[..]) {
            gone.push(row(RowKind::Profile, id, ""));
            for (name, _) in &profile.traits {
                gone.push(row(RowKind::Trait, id, name));
            }
            for (device, _) in &profile.devices {
                gone.push(row(RowKind::Device, id, device));
                id_key(tenant, device, &mut self.scratch);
                if self.links.remove(&self.scratch[..]).is_some() {
                    gone.push(row(RowKind::Link, device, ""));
                }
            }
            for (merged, _) in &profile.merged {
                gone.push(row(RowKind::Merged, id, merged));
            }
        }
        // An erased anonymous or previous id is also taken out of the profile it belonged to.
        if let Some(link) = self.links.remove(&key[..]) {
            gone.push(row(RowKind::Link, id, ""));
            id_key(tenant, &link.user, &mut self.scratch);
            if let Some(profile) = self.profiles.get_mut(&self.scratch[..]) {
                profile.devices.retain(|(device, _)| **device != *id);
                profile.devices_changed = true;
                gone.push(row(RowKind::Device, &link.user, id));
            }
        }
        if let Some(alias) = self.aliases.remove(&key[..]) {
            gone.push(row(RowKind::Alias, id, ""));
            id_key(tenant, &alias.user, &mut self.scratch);
            if let Some(profile) = self.profiles.get_mut(&self.scratch[..]) {
                profile.merged.retain(|(merged, _)| **merged != *id);
                profile.devices_changed = true;
                gone.push(row(RowKind::Merged, &alias.user, id));
            }
        }
        for id in gone {
            let window = window_of(&id.id);
            if let Ok(key) = GroupKey::from_bytes(&id.encode()) {
                self.retracted.push((Arc::new(key), window));
            }
        }
    }

    /// What changed since the previous checkpoint: rows to delete (erasures) and rows to
    /// write.
    pub fn checkpoint(&mut self, pool: &RowPool) -> (Vec<(Arc<GroupKey>, Window)>, PackedRows) {
        let mut rows = pool.take();
        let mut key = Vec::new();
        let empty = PartialState::new(&KINDS);
        let mut push = |rows: &mut PackedRows, tenant: &str, id: RowId, state: &PartialState| {
            key.clear();
            key.extend_from_slice(&id.encode());
            let window = window_of(&id.id);
            rows.push_with(tenant, &key, (window.start, window.end), 0, |bytes| {
                state.encode_append(bytes)
            });
        };
        let tenant_and_id = |bytes: &[u8]| -> Option<(String, String)> {
            let key = GroupKey::from_bytes(bytes).ok()?;
            match key.values() {
                [KeyValue::Text(id)] => Some((key.tenant().to_owned(), id.clone())),
                _ => None,
            }
        };
        let row = |tenant: &str, kind, id: &str, sub: &str| RowId {
            tenant: tenant.to_owned(),
            kind,
            id: id.to_owned(),
            sub: sub.to_owned(),
        };
        let stamped = |time, json: &[u8]| Some(Stamped::bounded(time, json));
        for (map, dirty, kind) in [
            (&self.links, &mut self.dirty_links, RowKind::Link),
            (&self.aliases, &mut self.dirty_aliases, RowKind::Alias),
        ] {
            dirty.sort();
            dirty.dedup();
            for id in dirty.drain(..) {
                let (Some(link), Some((tenant, owner))) = (map.get(&id), tenant_and_id(&id)) else {
                    continue;
                };
                let mut state = empty.clone();
                let user = serde_json::to_vec(&*link.user).unwrap_or_default();
                state.states[LAST] = AggState::Last(stamped(link.time, &user));
                push(&mut rows, &tenant, row(&tenant, kind, &owner, ""), &state);
            }
        }
        self.dirty_profiles.sort();
        self.dirty_profiles.dedup();
        for id in self.dirty_profiles.drain(..) {
            let (Some(profile), Some((tenant, owner))) =
                (self.profiles.get_mut(&id), tenant_and_id(&id))
            else {
                continue;
            };
            profile.dirty = false;
            let mut state = empty.clone();
            if profile.events > 0 {
                state.states[LAST] = AggState::Last(stamped(profile.last_seen, b"null"));
                state.states[FIRST] = AggState::First(stamped(profile.first_seen, b"null"));
                state.states[COUNT] = AggState::Count(profile.events);
            }
            push(
                &mut rows,
                &tenant,
                row(&tenant, RowKind::Profile, &owner, ""),
                &state,
            );
            if std::mem::take(&mut profile.traits_changed) {
                for (name, value) in &profile.traits {
                    let mut state = empty.clone();
                    state.states[LAST] = AggState::Last(Some(value.clone()));
                    push(
                        &mut rows,
                        &tenant,
                        row(&tenant, RowKind::Trait, &owner, name),
                        &state,
                    );
                }
            }
            if std::mem::take(&mut profile.devices_changed) {
                for (device, time) in &profile.devices {
                    let mut state = empty.clone();
                    state.states[FIRST] = AggState::First(stamped(*time, b"null"));
                    push(
                        &mut rows,
                        &tenant,
                        row(&tenant, RowKind::Device, &owner, device),
                        &state,
                    );
                }
                for (merged, time) in &profile.merged {
                    let mut state = empty.clone();
                    state.states[LAST] = AggState::Last(stamped(*time, b"null"));
                    push(
                        &mut rows,
                        &tenant,
                        row(&tenant, RowKind::Merged, &owner, merged),
                        &state,
                    );
                }
            }
        }
        (std::mem::take(&mut self.retracted), rows)
    }

    /// Loads stored rows (of this partition).
    pub fn restore(&mut self, rows: Vec<PartialRow>) -> Result<(), String> {
        for stored in rows {
            let Some(id) = RowId::of(&stored.key) else {
                return Err(format!("row {} is not an identity row", stored.key));
            };
            let kinds_fit = stored.state.states.len() == KINDS.len()
                && stored
                    .state
                    .states
                    .iter()
                    .zip(&KINDS)
                    .all(|(state, kind)| state.fits(kind));
            if !kinds_fit {
                return Err(format!(
                    "row {} does not hold an identity state",
                    stored.key
                ));
            }
            let states = &stored.state.states;
            let (last, first) = match (&states[LAST], &states[FIRST]) {
                (AggState::Last(last), AggState::First(first)) => (last.clone(), first.clone()),
                _ => (None, None),
            };
            let count = match states[COUNT] {
                AggState::Count(count) => count,
                _ => 0,
            };
            let time_of = |stamped: &Option<Stamped>| stamped.as_ref().map_or(0, |s| s.time);
            let mut key = Vec::new();
            id_key(&id.tenant, &id.id, &mut key);
            match id.kind {
                RowKind::Link | RowKind::Alias => {
                    let user: String = last
                        .as_ref()
                        .and_then(|stamped| serde_json::from_slice(&stamped.json).ok())
                        .ok_or_else(|| format!("row {} names no user", stored.key))?;
                    let link = Link {
                        user: user.into(),
                        time: time_of(&last),
                    };
                    let map = if id.kind == RowKind::Link {
                        &mut self.links
                    } else {
                        &mut self.aliases
                    };
                    map.insert(key.into(), link);
                }
                kind => {
                    let profile = self.profiles.entry(key.into()).or_default();
                    match kind {
                        RowKind::Profile => {
                            profile.last_seen = time_of(&last);
                            profile.first_seen = time_of(&first);
                            profile.events = count;
                        }
                        RowKind::Trait => {
                            if let Some(value) = last {
                                profile.traits.push((id.sub.into(), value));
                            }
                        }
                        RowKind::Device => profile.devices.push((id.sub.into(), time_of(&first))),
                        _ => profile.merged.push((id.sub.into(), time_of(&last))),
                    }
                }
            }
        }
        Ok(())
    }
}

/// The event's JSON with `"resolved_user_id"` added as its first member.
pub fn with_resolved(bytes: &[u8], resolved: &str) -> Vec<u8> {
    let mut value = Vec::with_capacity(bytes.len() + resolved.len() + 24);
    let open = bytes.iter().position(|&byte| byte == b'{').unwrap_or(0);
    let rest = &bytes[(open + 1).min(bytes.len())..];
    value.extend_from_slice(b"{\"resolved_user_id\":");
    // Writing a string into a vector cannot fail.
    let _ = serde_json::to_writer(&mut value, resolved);
    let empty = rest
        .iter()
        .find(|byte| !byte.is_ascii_whitespace())
        .is_none_or(|&byte| byte == b'}');
    if !empty {
        value.push(b',');
    }
    value.extend_from_slice(rest);
    value
}

/// A profile change record: `{"tenant", "timestamp", "message_id", "type": "profile_change",
/// "user_id": <resolved>, "anonymous_id", "properties": {"linked", "previous_user_id",
/// "aliased_id", "traits": {changed traits}}}`. `message_id` is the event's.
fn write_change(
    tenant: &str,
    time: Millis,
    message: Option<&str>,
    resolved: &str,
    anonymous: Option<&str>,
    change: &Change,
    out: &mut Vec<u8>,
) {
    let mut traits = serde_json::Map::new();
    for (name, json) in &change.traits {
        let value = serde_json::from_slice(json).unwrap_or(serde_json::Value::Null);
        traits.insert(name.clone(), value);
    }
    let record = serde_json::json!({
        "tenant": tenant,
        "timestamp": time,
        "message_id": message,
        "type": "profile_change",
        "user_id": resolved,
        "anonymous_id": anonymous,
        "properties": {
            "linked": change.linked.is_some(),
            "previous_user_id": change.linked.clone().flatten(),
            "aliased_id": change.aliased,
            "traits": traits,
        },
    });
    // Writing JSON into a vector cannot fail.
    let _ = serde_json::to_writer(out, &record);
}

/// A person's profile, merged from the partial rows of every partition.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct MergedProfile {
    /// The user id (or anonymous id, for a visitor never identified).
    pub user_id: String,
    /// The first event's time, epoch ms.
    pub first_seen: Option<Millis>,
    /// The last event's time, epoch ms.
    pub last_seen: Option<Millis>,
    /// Events resolved to this person.
    pub events: u64,
    /// Traits, latest value by event time.
    pub traits: serde_json::Map<String, serde_json::Value>,
    /// The anonymous ids linked to this person.
    pub anonymous_ids: Vec<String>,
    /// The ids aliased into this person.
    pub merged_ids: Vec<String>,
    /// Each trait's value as stamped by its `identify` (time, then value): what decides which
    /// value wins when profiles are merged.
    #[serde(skip)]
    pub trait_stamps: HashMap<String, Stamped>,
}

impl MergedProfile {
    /// Sets trait `name` to `value`, unless the profile has a later one.
    fn set_trait(&mut self, name: &str, value: &Stamped) {
        if self.trait_stamps.get(name).is_some_and(|have| have > value) {
            return;
        }
        let json = serde_json::from_slice(&value.json).unwrap_or(serde_json::Value::Null);
        self.traits.insert(name.to_owned(), json);
        self.trait_stamps.insert(name.to_owned(), value.clone());
    }

    /// Takes `other`'s traits that are later (by event time) than this profile's: merging
    /// another identity of the same person (a linked device's, an aliased id's) keeps the
    /// latest value of each trait, whichever profile had it.
    pub fn merge_traits(&mut self, other: &MergedProfile) {
        for (name, value) in &other.trait_stamps {
            self.set_trait(name, value);
        }
    }
}

/// Rows of one id (and others: a window is shared by every id of the same hash) merged across
/// partitions by row key.
#[derive(Debug, Default)]
pub struct IdRows {
    rows: HashMap<RowId, PartialState>,
}

impl IdRows {
    /// Adds one stored row (rows that are no identity rows are ignored).
    pub fn add(&mut self, row: &PartialRow) -> Result<(), crate::StreamError> {
        let Some(id) = RowId::of(&row.key) else {
            return Ok(());
        };
        match self.rows.get_mut(&id) {
            Some(state) => state.merge(&row.state),
            None => {
                self.rows.insert(id, row.state.clone());
                Ok(())
            }
        }
    }

    /// The user `id` is linked or aliased to, if any (the latest by event time).
    pub fn resolves_to(&self, tenant: &str, id: &str) -> Option<String> {
        [RowKind::Alias, RowKind::Link]
            .into_iter()
            .find_map(|kind| {
                let state = self.rows.get(&RowId {
                    tenant: tenant.to_owned(),
                    kind,
                    id: id.to_owned(),
                    sub: String::new(),
                })?;
                serde_json::from_slice(state.states[LAST].json()?).ok()
            })
    }

    /// Folds `id`'s profile rows into `profile`; whether it had any.
    pub fn merge_into(&self, tenant: &str, id: &str, profile: &mut MergedProfile) -> bool {
        let mut found = false;
        for (row, state) in &self.rows {
            if row.tenant != tenant || row.id != id {
                continue;
            }
            let (last, first) = match (&state.states[LAST], &state.states[FIRST]) {
                (AggState::Last(last), AggState::First(first)) => (last.as_ref(), first.as_ref()),
                _ => continue,
            };
            match row.kind {
                RowKind::Profile => {
                    found = true;
                    if let AggState::Count(count) = state.states[COUNT] {
                        profile.events += count;
                    }
                    if let Some(first) = first {
                        profile.first_seen =
                            Some(profile.first_seen.map_or(first.time, |t| t.min(first.time)));
                    }
                    if let Some(last) = last {
                        profile.last_seen =
                            Some(profile.last_seen.map_or(last.time, |t| t.max(last.time)));
                    }
                }
                // The latest value, whichever partition's row had it.
                RowKind::Trait => {
                    if let Some(last) = last {
                        profile.set_trait(&row.sub, last);
                    }
                }
                RowKind::Device => {
                    found = true;
                    if !profile.anonymous_ids.contains(&row.sub) {
                        profile.anonymous_ids.push(row.sub.clone());
                    }
                }
                RowKind::Merged => {
                    found = true;
                    if !profile.merged_ids.contains(&row.sub) {
                        profile.merged_ids.push(row.sub.clone());
                    }
                }
                RowKind::Link | RowKind::Alias => {}
            }
        }
        profile.anonymous_ids.sort();
        profile.merged_ids.sort();
        found
    }
}

#[cfg(test)]
mod tests;
