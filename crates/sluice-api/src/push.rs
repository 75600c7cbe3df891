//! `GET /v1/live`: live push over WebSocket. The read key comes as `Authorization: Bearer KEY`
//! or, for browsers (which cannot set headers on a WebSocket), as `?key=KEY`. Every
//! subscription reads that key's tenant only.
//!
//! Client messages (JSON text):
//! - `{"type":"subscribe","id":"a","metric":"page_views","filters":["url:/home"]}`
//! - `{"type":"unsubscribe","id":"a"}`
//! - `{"type":"ping"}` (answered `{"type":"pong"}`)
//!
//! Server messages:
//! - `{"type":"subscribed","id":"a","metric":…,"keys":[…],"values":[…]}`
//! - `{"type":"update","id":"a","windows":[{"key":{…},"start":…,"end":…,"final":false,"values":{…}}]}`
//!   — what changed, coalesced per `api.push-interval` (the first update has every open window)
//! - `{"type":"error","id":"a","code":…,"message":…}` — the subscription (or message) is refused
//!
//! A connection is served by [`crate::socket`] (the send queue, the slow-client rule —
//! closed with 4008 —, pings, revocation of its key — closed with 4001 —, shutdown); this
//! module is what it says. Each subscription is a [`Feed`]: when its metric's hub publishes
//! (once per `api.push-interval`, if something changed), the connection takes what changed
//! for the feed and queues it, one message per subscription, while the queue has room. A
//! client that does not read is not computed for; when it reads again, each window comes once
//! with its latest values. The key is checked again at each `subscribe`. Connections beyond
//! `api.ws-max-connections` (live push and GraphQL together) are refused with 503.

use crate::auth::bearer;
use crate::error::ApiError;
use crate::feed::{Changes, Feed, Hubs};
use crate::keys::{Access, SessionKey};
use crate::query::Serving;
use crate::socket::{End, Incoming, Outbox, Session, Settings};
use axum::extract::ws::{Message, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;
use sluice_core::access::{Grant, Role};
use sluice_stream::render;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Largest message a client may send.
pub const MAX_CLIENT_MESSAGE: usize = 64 * 1024;

pub use crate::socket::{CLOSE_NO_PONG, CLOSE_REVOKED, CLOSE_TOO_SLOW};

/// What the live routes need.
#[derive(Debug)]
pub struct PushState {
    /// Keys.
    pub access: Arc<Access>,
    /// The serving engine.
    pub serving: Arc<Serving>,
    /// The running change hubs (shared with GraphQL).
    pub hubs: Arc<Hubs>,
    /// One permit per open WebSocket connection (REST push and GraphQL).
    pub connections: Arc<Semaphore>,
    /// Cancelled when the server stops: connections close with 1001 ("going away").
    pub shutdown: CancellationToken,
}

/// The live push route, with its OpenAPI description.
pub fn router(state: Arc<PushState>) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(upgrade))
        .with_state(state)
}

/// `?key=` for clients that cannot send headers.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LiveParams {
    /// The read key.
    pub key: Option<String>,
}

/// The key of a WebSocket request: the `Authorization` header, else `key`.
pub(crate) fn socket_key<'a>(
    headers: &'a HeaderMap,
    key: Option<&'a str>,
) -> Result<&'a str, ApiError> {
    match (headers.contains_key(axum::http::header::AUTHORIZATION), key) {
        (true, _) | (false, None) => bearer(headers),
        (false, Some(key)) => Ok(key),
    }
}

/// Takes a connection slot, or refuses with 503.
pub(crate) fn connection_slot(
    connections: &Arc<Semaphore>,
) -> Result<OwnedSemaphorePermit, ApiError> {
    Arc::clone(connections).try_acquire_owned().map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_connections",
            "the server holds api.ws-max-connections WebSocket connections; retry later",
        )
    })
}

/// Opens a WebSocket for live updates (see the module documentation for the messages).
#[utoipa::path(get, path = "/v1/live", operation_id = "live", tag = "live", security(("bearer" = [])), params(LiveParams),
    responses(
        (status = 101, description = "WebSocket: send {\"type\":\"subscribe\",\"id\",\"metric\",\"filters\"}; receive subscribed, update and error messages"),
        (status = 400, description = "Not a WebSocket upgrade, or a bad query string", body = crate::error::ErrorBody),
        (status = 401, description = "No or unknown key", body = crate::error::ErrorBody),
        (status = 403, description = "Not a read key", body = crate::error::ErrorBody),
        (status = 503, description = "api.ws-max-connections are open", body = crate::error::ErrorBody),
    ))]
async fn upgrade(
    State(state): State<Arc<PushState>>,
    headers: HeaderMap,
    params: Result<Query<LiveParams>, axum::extract::rejection::QueryRejection>,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let Query(params) = params.map_err(|rejection| {
        ApiError::bad_request(
            "invalid_query",
            format!("expected ?key=READ_KEY or nothing: {rejection}"),
        )
    })?;
    let key = socket_key(&headers, params.key.as_deref())?;
    let key = state.access.authorize_session(key, Role::Read)?;
    let slot = connection_slot(&state.connections)?;
    let config = state.serving.config();
    let settings = Settings::of(config);
    let session = LiveSession {
        serving: Arc::clone(&state.serving),
        hubs: Arc::clone(&state.hubs),
        feeds: BTreeMap::new(),
        max_subscriptions: config.ws_max_subscriptions,
    };
    let shutdown = state.shutdown.clone();
    Ok(upgrade
        .max_message_size(MAX_CLIENT_MESSAGE)
        .max_write_buffer_size(4 * 1024 * 1024)
        .on_upgrade(move |socket| async move {
            crate::socket::serve(socket, session, Some(key), settings, shutdown).await;
            drop(slot);
        }))
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
enum ClientMessage {
    Subscribe {
        id: String,
        metric: String,
        #[serde(default)]
        filters: Vec<String>,
    },
    Unsubscribe {
        id: String,
    },
    Ping,
}

/// What a `/v1/live` connection says: its subscriptions.
struct LiveSession {
    serving: Arc<Serving>,
    hubs: Arc<Hubs>,
    feeds: BTreeMap<String, Feed>,
    max_subscriptions: usize,
}

impl Session for LiveSession {
    async fn receive(
        &mut self,
        message: Incoming<'_>,
        out: &mut Outbox,
        key: &mut Option<SessionKey>,
    ) -> Result<(), End> {
        let Incoming::Text(text) = message else {
            out.send_json(&json!({"type": "error", "code": "invalid_message", "message": "send JSON text messages"}));
            return Ok(());
        };
        let message: ClientMessage = match serde_json::from_str(text) {
            Ok(message) => message,
            Err(error) => {
                out.send_json(&json!({"type": "error", "code": "invalid_message", "message": format!(
                    "expected {{\"type\":\"subscribe\",\"id\":\"a\",\"metric\":\"NAME\",\"filters\":[\"KEY:VALUE\"]}}, {{\"type\":\"unsubscribe\",\"id\":\"a\"}} or {{\"type\":\"ping\"}}: {error}"
                )}));
                return Ok(());
            }
        };
        match message {
            ClientMessage::Ping => {
                out.send_json(&json!({"type": "pong"}));
            }
            ClientMessage::Unsubscribe { id } => {
                self.feeds.remove(&id);
            }
            ClientMessage::Subscribe {
                id,
                metric,
                filters,
            } => {
                // The connection's key, checked again: a revoked key subscribes to nothing.
                let grant = match key.as_mut().map(SessionKey::check) {
                    Some(Ok(grant)) => Arc::clone(grant),
                    Some(Err(revoked)) => return Err(End::revoked(revoked)),
                    None => return Err(End::Close(1008, "no key".into())),
                };
                match self.subscribe(&grant, &id, &metric, filters).await {
                    Ok(feed) => {
                        let values = render::aggregate_names(feed.plan());
                        out.send_json(&json!({"type": "subscribed", "id": id, "metric": metric, "keys": feed.plan().key_names, "values": values}));
                    }
                    Err(error) => {
                        out.send_json(&json!({"type": "error", "id": id, "code": error.code(), "message": error.message()}));
                    }
                }
            }
        }
        Ok(())
    }

    async fn next(&mut self) -> Result<Message, End> {
        loop {
            if let Some(message) = self.take() {
                return Ok(message);
            }
            self.changed().await;
        }
    }
}

impl LiveSession {
    async fn subscribe(
        &mut self,
        grant: &Grant,
        id: &str,
        metric: &str,
        filters: Vec<String>,
    ) -> Result<&Feed, ApiError> {
        if id.is_empty() || id.len() > 128 {
            return Err(ApiError::bad_request(
                "invalid_id",
                "id must be 1 to 128 characters",
            ));
        }
        if self.feeds.contains_key(id) {
            return Err(ApiError::bad_request(
                "duplicate_id",
                format!("subscription {id:?} exists; unsubscribe first or choose another id"),
            ));
        }
        if self.feeds.len() >= self.max_subscriptions {
            return Err(ApiError::bad_request(
                "too_many_subscriptions",
                format!(
                    "at most {} subscriptions per connection (api.ws-max-subscriptions)",
                    self.max_subscriptions
                ),
            ));
        }
        if let Err(limited) = grant.admit_request() {
            return Err(ApiError::limited(&limited));
        }
        let tenant = grant
            .tenant()
            .ok_or_else(|| ApiError::forbidden("this key belongs to no tenant"))?;
        let feed = Feed::new(
            Arc::clone(&self.serving),
            &self.hubs,
            tenant,
            metric,
            filters,
        )
        .await?;
        Ok(self.feeds.entry(id.to_owned()).or_insert(feed))
    }

    /// The next message of the first subscription with news, if one has any.
    fn take(&mut self) -> Option<Message> {
        let mut ended = None;
        let mut message = None;
        for (id, feed) in &mut self.feeds {
            if !feed.has_news() {
                continue;
            }
            message = match feed.take() {
                Ok(None) => continue,
                Ok(Some(Changes::Windows(changes))) => Some(update(id, &changes)),
                Ok(Some(Changes::TooMany(count))) => Some(json!({
                    "type": "error", "id": id, "code": "too_many_changes",
                    "message": format!("{count} windows changed at once; query the range with GET /v1/metrics/{}", feed.metric()),
                }).to_string()),
                Err(error) => {
                    if Feed::ends(&error) {
                        ended = Some(id.clone());
                    }
                    Some(json!({"type": "error", "id": id, "code": error.code(), "message": error.message()}).to_string())
                }
            };
            break;
        }
        if let Some(id) = ended {
            self.feeds.remove(&id);
        }
        message.map(|text| Message::Text(text.into()))
    }

    /// Waits until a subscription may have news.
    async fn changed(&mut self) {
        if self.feeds.is_empty() {
            return std::future::pending().await;
        }
        futures::future::select_all(self.feeds.values_mut().map(|feed| Box::pin(feed.changed())))
            .await;
    }
}

/// `{"type":"update","id":…,"windows":[…]}` from windows rendered once for every subscriber.
fn update(id: &str, changes: &[Arc<crate::feed::Change>]) -> String {
    let size: usize = changes.iter().map(|change| change.json.len() + 1).sum();
    let mut text = String::with_capacity(size + id.len() + 40);
    text.push_str("{\"type\":\"update\",\"id\":");
    render::string(id, &mut text);
    text.push_str(",\"windows\":[");
    for (index, change) in changes.iter().enumerate() {
        if index > 0 {
            text.push(',');
        }
        text.push_str(&change.json);
    }
    text.push_str("]}");
    text
}
