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
//! Each connection is one task. It polls its subscriptions' [`Feed`]s every
//! `api.push-interval` and hands messages to a writer task through a queue of
//! `api.ws-send-queue` messages. While that queue is full nothing is added: the feeds keep
//! their last reported state, so the next update carries the latest values and the versions in
//! between are dropped. A client that keeps the queue full for `api.ws-slow-timeout` is closed
//! with code 4008 ("too slow"). A ping goes out every `api.ws-heartbeat`; a client that answered
//! none of the last two is closed with code 4000. Connections beyond `api.ws-max-connections`
//! are refused with 503.
//!
//! Metrics: `sluice_ws_connections` (open), `sluice_ws_closed_total{reason}` (`client`,
//! `too_slow`, `no_pong`, `shutdown`), `sluice_ws_backpressure_total` (polls skipped or
//! messages held back because a client's queue was full).

use crate::access::Access;
use crate::auth::bearer;
use crate::error::ApiError;
use crate::feed::{Changes, Feed};
use crate::query::Serving;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::json;
use sluice_core::access::{Grant, Role};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Largest message a client may send.
pub const MAX_CLIENT_MESSAGE: usize = 64 * 1024;

/// Close code for a client that does not read fast enough.
pub const CLOSE_TOO_SLOW: u16 = 4008;
/// Close code for a client that stopped answering pings.
pub const CLOSE_NO_PONG: u16 = 4000;

/// What the live routes need.
#[derive(Debug)]
pub struct PushState {
    /// Keys.
    pub access: Arc<Access>,
    /// The serving engine.
    pub serving: Arc<Serving>,
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
    let grant = state.access.authorize_key(key, Role::Read)?;
    let slot = connection_slot(&state.connections)?;
    let config = state.serving.config();
    let settings = Settings {
        push_interval: config.push_interval.get(),
        heartbeat: config.ws_heartbeat.get(),
        slow_timeout: config.ws_slow_timeout.get(),
        queue: config.ws_send_queue,
        max_subscriptions: config.ws_max_subscriptions,
    };
    Ok(upgrade
        .max_message_size(MAX_CLIENT_MESSAGE)
        .max_write_buffer_size(4 * 1024 * 1024)
        .on_upgrade(move |socket| async move {
            Connection::new(state, grant, settings).run(socket).await;
            drop(slot);
        }))
}

#[derive(Debug, Clone, Copy)]
struct Settings {
    push_interval: Duration,
    heartbeat: Duration,
    slow_timeout: Duration,
    queue: usize,
    max_subscriptions: usize,
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

/// Why a connection ends.
enum End {
    /// The client left (or the socket failed).
    Gone,
    /// Close with this code and reason.
    Close(u16, String),
}

struct Connection {
    state: Arc<PushState>,
    grant: Arc<Grant>,
    settings: Settings,
    feeds: BTreeMap<String, Feed>,
    /// Since when the send queue has been full.
    full_since: Option<Instant>,
    last_pong: Instant,
}

impl Connection {
    fn new(state: Arc<PushState>, grant: Arc<Grant>, settings: Settings) -> Connection {
        Connection {
            state,
            grant,
            settings,
            feeds: BTreeMap::new(),
            full_since: None,
            last_pong: Instant::now(),
        }
    }

    async fn run(mut self, socket: WebSocket) {
        metrics::gauge!("sluice_ws_connections").increment(1.0);
        let (mut sink, mut stream) = socket.split();
        let (queue, mut outgoing) = mpsc::channel::<Message>(self.settings.queue);
        let (close, mut closing) = oneshot::channel::<CloseFrame>();
        let writer = tokio::spawn(async move {
            loop {
                tokio::select! {
                    biased;
                    frame = &mut closing => {
                        if let Ok(frame) = frame {
                            let _ = tokio::time::timeout(Duration::from_secs(1), sink.send(Message::Close(Some(frame)))).await;
                        }
                        return;
                    }
                    message = outgoing.recv() => match message {
                        Some(message) => {
                            if sink.send(message).await.is_err() {
                                return;
                            }
                        }
                        None => return,
                    },
                }
            }
        });
        let mut push = tokio::time::interval(self.settings.push_interval);
        push.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut heartbeat = tokio::time::interval(self.settings.heartbeat);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        heartbeat.tick().await;
        let shutdown = self.state.shutdown.clone();
        let end = loop {
            tokio::select! {
                () = shutdown.cancelled() => break End::Close(1001, "the server is shutting down".into()),
                incoming = stream.next() => match incoming {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break End::Gone,
                    Some(Ok(Message::Pong(_))) => self.last_pong = Instant::now(),
                    Some(Ok(Message::Ping(_))) => {}
                    Some(Ok(Message::Binary(_))) => {
                        self.send(&queue, json!({"type": "error", "code": "invalid_message", "message": "send JSON text messages"}));
                    }
                    Some(Ok(Message::Text(text))) => {
                        self.last_pong = Instant::now();
                        self.handle(&queue, text.as_str()).await;
                    }
                },
                _ = push.tick() => {
                    if let Some(end) = self.push(&queue).await {
                        break end;
                    }
                }
                _ = heartbeat.tick() => {
                    if self.last_pong.elapsed() > 2 * self.settings.heartbeat {
                        break End::Close(CLOSE_NO_PONG, "no answer to the last two pings".into());
                    }
                    let _ = queue.try_send(Message::Ping(bytes::Bytes::from_static(b"sluice")));
                }
            }
        };
        let label = match &end {
            End::Gone => "client",
            End::Close(CLOSE_TOO_SLOW, _) => "too_slow",
            End::Close(CLOSE_NO_PONG, _) => "no_pong",
            End::Close(_, _) => "shutdown",
        };
        metrics::counter!("sluice_ws_closed_total", "reason" => label).increment(1);
        metrics::gauge!("sluice_ws_connections").decrement(1.0);
        if let End::Close(code, reason) = end {
            tracing::debug!(code, %reason, tenant = ?self.grant.tenant(), "closing a live connection");
            let _ = close.send(CloseFrame {
                code,
                reason: reason.into(),
            });
        }
        drop(queue);
        let _ = writer.await;
    }

    /// Queues a message unless the queue is full; returns whether it was queued.
    fn send(&mut self, queue: &mpsc::Sender<Message>, message: serde_json::Value) -> bool {
        match queue.try_send(Message::Text(message.to_string().into())) {
            Ok(()) => {
                self.full_since = None;
                true
            }
            Err(_) => {
                metrics::counter!("sluice_ws_backpressure_total").increment(1);
                self.full_since.get_or_insert_with(Instant::now);
                false
            }
        }
    }

    async fn handle(&mut self, queue: &mpsc::Sender<Message>, text: &str) {
        let message: ClientMessage = match serde_json::from_str(text) {
            Ok(message) => message,
            Err(error) => {
                self.send(
                    queue,
                    json!({"type": "error", "code": "invalid_message", "message": format!(
                        "expected {{\"type\":\"subscribe\",\"id\":\"a\",\"metric\":\"NAME\",\"filters\":[\"KEY:VALUE\"]}}, {{\"type\":\"unsubscribe\",\"id\":\"a\"}} or {{\"type\":\"ping\"}}: {error}"
                    )}),
                );
                return;
            }
        };
        match message {
            ClientMessage::Ping => {
                self.send(queue, json!({"type": "pong"}));
            }
            ClientMessage::Unsubscribe { id } => {
                self.feeds.remove(&id);
            }
            ClientMessage::Subscribe {
                id,
                metric,
                filters,
            } => {
                if let Err(error) = self.subscribe(&id, &metric, filters).await {
                    self.send(
                        queue,
                        json!({"type": "error", "id": id, "code": error.code(), "message": error.message()}),
                    );
                    return;
                }
                let plan = Arc::clone(self.feeds[&id].plan());
                let values = crate::query::render::aggregate_names(&plan);
                self.send(
                    queue,
                    json!({"type": "subscribed", "id": id, "metric": metric, "keys": plan.key_names, "values": values}),
                );
            }
        }
    }

    async fn subscribe(
        &mut self,
        id: &str,
        metric: &str,
        filters: Vec<String>,
    ) -> Result<(), ApiError> {
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
        if self.feeds.len() >= self.settings.max_subscriptions {
            return Err(ApiError::bad_request(
                "too_many_subscriptions",
                format!(
                    "at most {} subscriptions per connection (api.ws-max-subscriptions)",
                    self.settings.max_subscriptions
                ),
            ));
        }
        if let Err(limited) = self.grant.admit_request() {
            return Err(ApiError::limited(&limited));
        }
        let tenant = self
            .grant
            .tenant()
            .ok_or_else(|| ApiError::forbidden("this key belongs to no tenant"))?;
        let feed = Feed::new(Arc::clone(&self.state.serving), tenant, metric, filters).await?;
        self.feeds.insert(id.to_owned(), feed);
        Ok(())
    }

    /// Polls every feed and queues what changed; ends a connection that stays too slow.
    async fn push(&mut self, queue: &mpsc::Sender<Message>) -> Option<End> {
        if let Some(since) = self.full_since {
            if since.elapsed() >= self.settings.slow_timeout {
                return Some(End::Close(
                    CLOSE_TOO_SLOW,
                    format!(
                        "too slow: updates were not read for {:?}",
                        self.settings.slow_timeout
                    ),
                ));
            }
            if queue.capacity() == 0 {
                return None;
            }
            self.full_since = None;
        }
        let ids: Vec<String> = self.feeds.keys().cloned().collect();
        for id in ids {
            if queue.capacity() == 0 {
                metrics::counter!("sluice_ws_backpressure_total").increment(1);
                self.full_since.get_or_insert_with(Instant::now);
                return None;
            }
            let Some(feed) = self.feeds.get_mut(&id) else {
                continue;
            };
            let message = match feed.poll().await {
                Ok(Changes::Windows(changes)) if changes.is_empty() => continue,
                Ok(Changes::Windows(changes)) => {
                    let plan = Arc::clone(feed.plan());
                    let windows: Vec<serde_json::Value> =
                        changes.iter().map(|change| change.to_json(&plan)).collect();
                    json!({"type": "update", "id": id, "windows": windows})
                }
                Ok(Changes::TooMany(count)) => json!({
                    "type": "error", "id": id, "code": "too_many_changes",
                    "message": format!("{count} windows changed at once; query the range with GET /v1/metrics/{}", feed.metric()),
                }),
                Err(error) => {
                    if error.status() == StatusCode::GONE {
                        self.feeds.remove(&id);
                    }
                    json!({"type": "error", "id": id, "code": error.code(), "message": error.message()})
                }
            };
            self.send(queue, message);
        }
        None
    }
}
