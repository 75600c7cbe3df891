//! A person's profile (`GET /v1/users/{id}`), read from an identity's stored rows (see
//! `sluice_stream::identity`): as of each partition's last checkpoint, merged across
//! partitions.
//!
//! The id may be a user id, or an anonymous id or a previous id that resolves to one: the
//! answer is then the user's profile. A user's profile takes in, besides its own rows, the
//! anonymous profiles of the devices linked to it now (their events before the first
//! identify) and the profiles of the ids aliased into it; traits are the latest by event time
//! over all of them.

use crate::error::ApiError;
use serde::Serialize;
use sluice_core::time::Millis;
use sluice_store::StoreBackend;
use sluice_store::model::RowRange;
use sluice_stream::identity::{self, IdRows, MergedProfile};
use sluice_stream::plan::MetricPlan;
use std::collections::HashSet;
use utoipa::ToSchema;

/// The most ids whose rows one profile read loads.
const MAX_IDS: usize = 2 * identity::MAX_DEVICES + identity::MAX_ALIAS_HOPS + 2;

/// A person, as an identity knows them.
#[derive(Debug, Serialize, ToSchema)]
pub struct Profile {
    /// The identity (`CREATE IDENTITY`) it is read from.
    pub identity: String,
    /// The tenant.
    pub tenant: String,
    /// The id asked for.
    pub id: String,
    /// The id it resolves to: the user id (or the anonymous id of a visitor never identified).
    pub user_id: String,
    /// The first event's time, epoch ms.
    pub first_seen: Option<Millis>,
    /// The last event's time, epoch ms.
    pub last_seen: Option<Millis>,
    /// Events resolved to this person.
    pub events: u64,
    /// Traits from `identify` calls, each the latest by event time.
    #[schema(value_type = Object)]
    pub traits: serde_json::Map<String, serde_json::Value>,
    /// Anonymous ids linked to this person.
    pub anonymous_ids: Vec<String>,
    /// Ids aliased into this person.
    pub merged_ids: Vec<String>,
}

/// Reads `id`'s profile from the identity `plan`'s rows (generation `generation`) in
/// `tenant`; `None` when the identity has seen no event of it (or of anyone it resolves to).
pub async fn read(
    store: &StoreBackend,
    (plan, generation): (&MetricPlan, u32),
    tenant: &str,
    id: &str,
    max_rows: usize,
) -> Result<Option<Profile>, ApiError> {
    let name = plan.name.as_str();
    let mut rows = IdRows::default();
    let mut loaded = HashSet::new();
    let load = async |rows: &mut IdRows, loaded: &mut HashSet<String>, id: &str| {
        if loaded.len() >= MAX_IDS || !loaded.insert(id.to_owned()) {
            return Ok::<(), ApiError>(());
        }
        let window = identity::window_of(id);
        let range = RowRange {
            metric: name.to_owned(),
            generation,
            tenant: tenant.to_owned(),
            end_after: window.start,
            end_upto: window.end,
            start_from: window.start,
            start_before: window.end,
            limit: max_rows,
        };
        let stored = store.rows_in(range).await?.ok_or_else(|| {
            ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "too_much_data",
                format!("more than api.max-store-rows ({max_rows}) rows hold id {id:?}"),
            )
        })?;
        for row in &stored {
            let partial =
                sluice_pipelines::partial_row(row, plan).map_err(|reason| damaged(name, reason))?;
            rows.add(&partial)
                .map_err(|error| damaged(name, error.to_string()))?;
        }
        Ok(())
    };
    // Where the id resolves to: through its link or alias, then the user's aliases.
    load(&mut rows, &mut loaded, id).await?;
    let mut user = id.to_owned();
    let mut path = vec![user.clone()];
    for _ in 0..=identity::MAX_ALIAS_HOPS {
        let Some(next) = rows.resolves_to(tenant, &user) else {
            break;
        };
        if path.contains(&next) {
            break;
        }
        load(&mut rows, &mut loaded, &next).await?;
        path.push(next.clone());
        user = next;
    }
    // Who belongs to the user: its devices and merged ids, with their own rows.
    let mut listed = MergedProfile::default();
    rows.merge_into(tenant, &user, &mut listed);
    let others: Vec<String> = listed
        .anonymous_ids
        .iter()
        .chain(&listed.merged_ids)
        .cloned()
        .collect();
    for other in &others {
        load(&mut rows, &mut loaded, other).await?;
    }
    let mut profile = MergedProfile {
        user_id: user.clone(),
        ..MergedProfile::default()
    };
    let mut found = false;
    // Each trait's latest value, whichever of the person's identities had it.
    for other in &others {
        let belongs = listed.merged_ids.contains(other)
            || rows.resolves_to(tenant, other).as_deref() == Some(user.as_str())
            || path.contains(other);
        if belongs {
            let mut theirs = MergedProfile::default();
            if rows.merge_into(tenant, other, &mut theirs) {
                found = true;
                profile.events += theirs.events;
                profile.first_seen = min_some(profile.first_seen, theirs.first_seen);
                profile.last_seen = max_some(profile.last_seen, theirs.last_seen);
                profile.merge_traits(&theirs);
            }
        }
    }
    found |= rows.merge_into(tenant, &user, &mut profile);
    if !found {
        return Ok(None);
    }
    Ok(Some(Profile {
        identity: name.to_owned(),
        tenant: tenant.to_owned(),
        id: id.to_owned(),
        user_id: profile.user_id,
        first_seen: profile.first_seen,
        last_seen: profile.last_seen,
        events: profile.events,
        traits: profile.traits,
        anonymous_ids: profile.anonymous_ids,
        merged_ids: profile.merged_ids,
    }))
}

fn damaged(identity: &str, reason: String) -> ApiError {
    tracing::error!(identity, %reason, "a stored identity row cannot be read");
    ApiError::new(
        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
        "corrupt",
        format!(
            "identity {identity:?} has a damaged stored row ({reason}); delete it and create it again with backfill"
        ),
    )
}

fn min_some(a: Option<Millis>, b: Option<Millis>) -> Option<Millis> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn max_some(a: Option<Millis>, b: Option<Millis>) -> Option<Millis> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}
