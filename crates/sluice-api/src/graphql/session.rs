//! GraphQL over WebSocket: async-graphql's protocol engine (`graphql-transport-ws`, and the
//! older `graphql-ws`) served under sluice's connection rules ([`crate::socket`]).
//!
//! Client messages are read here before the engine sees them, for what sluice adds:
//! - `connection_init` carries the key when the upgrade did not: it is checked here, and the
//!   connection follows it from then on (closed with 4001 when it is revoked).
//! - `subscribe` (`start`): the key is checked again and its request rate applies; at most
//!   `api.ws-max-subscriptions` subscriptions run at once per connection — one more gets an
//!   `error` message for its id (code `too_many_subscriptions`); with graphql-transport-ws an
//!   id that is already running closes the socket with 4409, as the protocol says.
//! - `complete` (`stop`) frees a place, and so does the engine's `complete` when a
//!   subscription ends by itself (an error, a deleted metric).
//!
//! At most [`MAX_WAITING`] client messages wait for the engine; more close the connection
//! (1008): the engine reads them as fast as they come unless the client stops reading.

use super::{Reader, SluiceSchema, init_key};
use crate::error::ApiError;
use crate::keys::{Access, SessionKey};
use crate::socket::{End, Incoming, Outbox, Session};
use async_graphql::Data;
use async_graphql::futures_util::Stream;
use async_graphql::http::{ClientMessage, WebSocketProtocols as Protocols, WsMessage};
use axum::extract::ws::Message;
use futures::StreamExt;
use serde_json::json;
use sluice_core::access::Role;
use std::collections::HashSet;
use std::pin::Pin;
use std::sync::Arc;

/// Most client messages waiting for the engine.
pub(crate) const MAX_WAITING: usize = 64;

/// Close code for a subscription id that is already running (graphql-transport-ws).
const CLOSE_DUPLICATE_ID: u16 = 4409;

type Answer = Arc<parking_lot::Mutex<Option<Result<Data, String>>>>;

/// One GraphQL WebSocket connection.
pub(crate) struct GraphqlSession {
    protocol: Protocols,
    engine: Pin<Box<dyn Stream<Item = WsMessage> + Send>>,
    input: futures::channel::mpsc::Sender<serde_json::Result<ClientMessage>>,
    /// The answer to `connection_init`, for the engine.
    init: Answer,
    initialized: bool,
    access: Arc<Access>,
    /// Subscription ids the engine runs.
    running: HashSet<String>,
    max_subscriptions: usize,
}

impl GraphqlSession {
    /// A session over `schema`; `key` is the upgrade's key, if it had one.
    pub(crate) fn new(
        schema: SluiceSchema,
        protocol: Protocols,
        access: Arc<Access>,
        key: Option<&SessionKey>,
        max_subscriptions: usize,
    ) -> GraphqlSession {
        let (input, messages) = futures::channel::mpsc::channel(MAX_WAITING);
        let init: Answer = Arc::default();
        let answer = Arc::clone(&init);
        let mut data = Data::default();
        if let Some(key) = key {
            data.insert(Reader(Arc::clone(key.grant())));
        }
        let engine =
            async_graphql::http::WebSocket::from_message_stream(schema, messages, protocol)
                .connection_data(data)
                .on_connection_init(move |_payload| async move {
                    answer
                        .lock()
                        .take()
                        .unwrap_or_else(|| Err("connection_init was not checked".to_owned()))
                        .map_err(async_graphql::Error::new)
                });
        GraphqlSession {
            protocol,
            engine: Box::pin(engine),
            input,
            init,
            initialized: false,
            access,
            running: HashSet::new(),
            max_subscriptions,
        }
    }

    /// Checks `connection_init`'s key unless the upgrade had one.
    fn initialize(
        &mut self,
        payload: Option<&serde_json::Value>,
        out: &mut Outbox,
        key: &mut Option<SessionKey>,
    ) -> Result<(), End> {
        self.initialized = true;
        let answer = if key.is_some() {
            Ok(Data::default())
        } else {
            match payload.and_then(init_key) {
                None => Err(
                    "send the read key in connection_init: {\"Authorization\": \"Bearer KEY\"}"
                        .to_owned(),
                ),
                Some(secret) => match self.access.authorize_session(&secret, Role::Read) {
                    Ok(session_key) => {
                        out.authenticated(&session_key)?;
                        let mut data = Data::default();
                        data.insert(Reader(Arc::clone(session_key.grant())));
                        *key = Some(session_key);
                        Ok(data)
                    }
                    Err(error) => Err(error.message().to_owned()),
                },
            }
        };
        *self.init.lock() = Some(answer);
        Ok(())
    }

    /// Whether subscription `id` may start; refusals are answered here.
    fn admit(
        &mut self,
        id: &str,
        out: &mut Outbox,
        key: &mut Option<SessionKey>,
    ) -> Result<bool, End> {
        if let Some(key) = key.as_mut() {
            let grant = key.check().map_err(End::revoked)?;
            if let Err(limited) = grant.admit_request() {
                self.refuse(id, &ApiError::limited(&limited), out);
                return Ok(false);
            }
        }
        if self.running.contains(id) {
            if self.protocol == Protocols::GraphQLWS {
                return Err(End::Close(
                    CLOSE_DUPLICATE_ID,
                    format!("Subscriber for {id} already exists"),
                ));
            }
            // graphql-ws replaces the running one.
            return Ok(true);
        }
        if self.running.len() >= self.max_subscriptions {
            let error = ApiError::bad_request(
                "too_many_subscriptions",
                format!(
                    "at most {} subscriptions per connection (api.ws-max-subscriptions); complete one first",
                    self.max_subscriptions
                ),
            );
            self.refuse(id, &error, out);
            return Ok(false);
        }
        self.running.insert(id.to_owned());
        Ok(true)
    }

    /// The protocol's `error` message for subscription `id`.
    fn refuse(&self, id: &str, error: &ApiError, out: &mut Outbox) {
        let error = json!({"message": error.message(), "extensions": {"code": error.code()}});
        let payload = match self.protocol {
            Protocols::GraphQLWS => json!([error]),
            Protocols::SubscriptionsTransportWS => error,
        };
        out.send_json(&json!({"type": "error", "id": id, "payload": payload}));
    }
}

impl Session for GraphqlSession {
    async fn receive(
        &mut self,
        message: Incoming<'_>,
        out: &mut Outbox,
        key: &mut Option<SessionKey>,
    ) -> Result<(), End> {
        let bytes = match message {
            Incoming::Text(text) => text.as_bytes(),
            Incoming::Binary(bytes) => bytes,
        };
        let message = ClientMessage::from_bytes(bytes);
        let forward = match &message {
            Ok(ClientMessage::ConnectionInit { payload }) if !self.initialized => {
                self.initialize(payload.as_ref(), out, key)?;
                true
            }
            Ok(ClientMessage::Start { id, .. }) => self.admit(id, out, key)?,
            Ok(ClientMessage::Stop { id }) => {
                self.running.remove(id);
                true
            }
            _ => true,
        };
        if !forward {
            return Ok(());
        }
        self.input.try_send(message).map_err(|_| {
            End::Close(
                1008,
                format!("more than {MAX_WAITING} messages wait to be processed; read the answers before sending more"),
            )
        })
    }

    async fn next(&mut self) -> Result<Message, End> {
        match self.engine.next().await {
            None => Err(End::Gone),
            Some(WsMessage::Close(code, reason)) => Err(End::Close(code, reason)),
            Some(WsMessage::Text(text)) => {
                if let Some(id) = completed(&text) {
                    self.running.remove(&id);
                }
                Ok(Message::Text(text.into()))
            }
        }
    }
}

/// The id of a `complete` message from the engine (which writes the type first).
fn completed(text: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Complete {
        id: String,
    }
    if !text.starts_with(r#"{"type":"complete""#) {
        return None;
    }
    serde_json::from_str::<Complete>(text)
        .ok()
        .map(|complete| complete.id)
}

#[cfg(test)]
mod tests {
    use super::completed;

    #[test]
    fn the_engines_complete_messages_are_recognised() {
        assert_eq!(
            completed(r#"{"type":"complete","id":"7"}"#).as_deref(),
            Some("7")
        );
        assert_eq!(
            completed(r#"{"type":"next","id":"7","payload":{"data":null}}"#),
            None
        );
    }
}
