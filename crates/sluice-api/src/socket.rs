//! A WebSocket connection's life, the same for live push (`/v1/live`) and GraphQL
//! subscriptions: a bounded queue to a writer task, the slow-client rule, heartbeats, key
//! revocation and shutdown. What the connection says is its [`Session`]'s business.
//!
//! # Rules
//! - **Backpressure.** Messages go to the client through a queue of `api.ws-send-queue`
//!   messages to a writer task. The session is asked for its next message only when the queue
//!   has room, so nothing is computed for a client that does not read: its subscriptions keep
//!   their place and the next message coalesces what changed meanwhile.
//! - **Too slow (4008).** The queue stayed full for `api.ws-slow-timeout`, or one message could
//!   not be written to the socket within `api.ws-slow-timeout` (the client's TCP receive window
//!   stayed closed). The writer never waits on the socket without that deadline: a closed
//!   connection is gone at once, with its task, buffers and connection slot.
//! - **No pong (4000).** A ping goes out every `api.ws-heartbeat`; a client that sent nothing
//!   (no pong, no message) for two of them is closed.
//! - **Revoked (4001).** The connection's key was deleted, its tenant deleted, or it no longer
//!   grants its role: the connection closes as soon as the key directory changes, and the
//!   writer checks the key before each message, so nothing is written after the revocation.
//! - **Shutdown (1001).**
//!
//! Metrics: `sluice_ws_connections` (open: until the writer has ended),
//! `sluice_ws_closed_total{reason}` (`client`, `too_slow`, `no_pong`, `revoked`, `shutdown`,
//! `protocol`: the session ended it), `sluice_ws_backpressure_total` (times a client's queue
//! was found full).

use crate::config::ApiConfig;
use crate::keys::{KeyCheck, SessionKey};
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures::stream::SplitSink;
use futures::{SinkExt, StreamExt};
use std::future::Future;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// Close code for a client that does not read fast enough.
pub const CLOSE_TOO_SLOW: u16 = 4008;
/// Close code for a client that stopped answering pings.
pub const CLOSE_NO_PONG: u16 = 4000;
/// Close code for a connection whose key was revoked.
pub const CLOSE_REVOKED: u16 = 4001;
/// Close code when the server stops.
pub const CLOSE_GOING_AWAY: u16 = 1001;

/// How long a close frame may take to be written.
const CLOSE_DEADLINE: Duration = Duration::from_secs(1);

/// The connection settings from `[api]`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    pub(crate) heartbeat: Duration,
    pub(crate) slow_timeout: Duration,
    pub(crate) queue: usize,
}

impl Settings {
    pub(crate) fn of(config: &ApiConfig) -> Settings {
        Settings {
            heartbeat: config.ws_heartbeat.get(),
            slow_timeout: config.ws_slow_timeout.get(),
            queue: config.ws_send_queue,
        }
    }
}

/// Why a connection ends.
#[derive(Debug)]
pub(crate) enum End {
    /// The client left (or the socket failed).
    Gone,
    /// Close with this code and reason.
    Close(u16, String),
}

impl End {
    /// A close for a revoked key.
    pub(crate) fn revoked(revoked: crate::keys::Revoked) -> End {
        End::Close(CLOSE_REVOKED, revoked.to_string())
    }

    fn too_slow(timeout: Duration) -> End {
        End::Close(
            CLOSE_TOO_SLOW,
            format!("too slow: updates were not read for {timeout:?}"),
        )
    }

    fn label(&self) -> &'static str {
        match self {
            End::Gone => "client",
            End::Close(CLOSE_TOO_SLOW, _) => "too_slow",
            End::Close(CLOSE_NO_PONG, _) => "no_pong",
            End::Close(CLOSE_REVOKED, _) => "revoked",
            End::Close(CLOSE_GOING_AWAY, _) => "shutdown",
            End::Close(_, _) => "protocol",
        }
    }
}

/// A frame from the client that carries data.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Incoming<'a> {
    Text(&'a str),
    Binary(&'a [u8]),
}

/// What a connection says: one per protocol.
pub(crate) trait Session: Send {
    /// Handles one message from the client; answers go into `out`. `key` is the connection's
    /// key (a session may set it, e.g. from GraphQL's `connection_init`, with
    /// [`Outbox::authenticated`]).
    fn receive(
        &mut self,
        message: Incoming<'_>,
        out: &mut Outbox,
        key: &mut Option<SessionKey>,
    ) -> impl Future<Output = Result<(), End>> + Send;

    /// Waits until there is something to send and returns it. Called only when the queue has
    /// room; must be cancel-safe (it is raced against the client's messages).
    fn next(&mut self) -> impl Future<Output = Result<Message, End>> + Send;
}

/// What goes to the writer.
#[derive(Debug)]
enum Outgoing {
    Message(Message),
    /// The key to check before each data message from now on.
    Gate(KeyCheck),
}

/// The sending side of a connection: the queue to the writer.
#[derive(Debug)]
pub(crate) struct Outbox {
    queue: mpsc::Sender<Outgoing>,
    /// Since when the queue has been full.
    full_since: Option<Instant>,
}

impl Outbox {
    /// Queues a message unless the queue is full; returns whether it was queued.
    pub(crate) fn send(&mut self, message: Message) -> bool {
        match self.queue.try_send(Outgoing::Message(message)) {
            Ok(()) => {
                if self.queue.capacity() == 0 {
                    self.note_full();
                }
                true
            }
            Err(_) => {
                self.note_full();
                false
            }
        }
    }

    /// Queues a JSON text message unless the queue is full.
    pub(crate) fn send_json(&mut self, message: &serde_json::Value) -> bool {
        self.send(Message::Text(message.to_string().into()))
    }

    /// The connection's key is known from now on (after messages already queued): the writer
    /// checks it before each later message.
    pub(crate) fn authenticated(&mut self, key: &SessionKey) -> Result<(), End> {
        self.queue
            .try_send(Outgoing::Gate(key.gate()))
            .map_err(|_| End::Close(CLOSE_TOO_SLOW, "too slow: the send queue is full".into()))
    }

    fn note_full(&mut self) {
        metrics::counter!("sluice_ws_backpressure_total").increment(1);
        self.full_since.get_or_insert_with(Instant::now);
    }
}

/// How the writer ended.
#[derive(Debug)]
enum Written {
    /// Closed as asked, or every message written.
    Done,
    /// The socket failed.
    Failed,
    /// A message was not taken by the socket within the deadline.
    TooSlow,
    /// The key was revoked before a message.
    Revoked,
}

/// Serves a connection until it ends: the writer, the rules, and `session` for the rest.
/// `key` is known at the upgrade (a header or `?key=`), or set later by the session.
pub(crate) async fn serve<S: Session>(
    socket: WebSocket,
    mut session: S,
    mut key: Option<SessionKey>,
    settings: Settings,
    shutdown: CancellationToken,
) {
    metrics::gauge!("sluice_ws_connections").increment(1.0);
    let (sink, mut stream) = socket.split();
    let (queue, outgoing) = mpsc::channel::<Outgoing>(settings.queue);
    let (close, closing) = oneshot::channel::<CloseFrame>();
    let mut writer = tokio::spawn(write(sink, outgoing, closing, settings.slow_timeout));
    let mut writer_ended = false;
    let mut out = Outbox {
        queue,
        full_since: None,
    };
    let end = match &key {
        Some(key) => out.authenticated(key).err(),
        None => None,
    };
    let mut heartbeat = tokio::time::interval(settings.heartbeat);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    heartbeat.tick().await;
    let mut last_heard = Instant::now();
    let end = match end {
        Some(end) => end,
        None => loop {
            let slow_at = out
                .full_since
                .map(|since| tokio::time::Instant::from_std(since + settings.slow_timeout));
            tokio::select! {
                biased;
                () = shutdown.cancelled() => {
                    break End::Close(CLOSE_GOING_AWAY, "the server is shutting down".into());
                }
                revoked = revocation(&mut key) => break End::revoked(revoked),
                written = &mut writer, if !writer_ended => {
                    writer_ended = true;
                    break match written {
                        Ok(Written::TooSlow) => End::too_slow(settings.slow_timeout),
                        Ok(Written::Revoked) => End::revoked(crate::keys::Revoked),
                        _ => End::Gone,
                    };
                }
                () = tokio::time::sleep_until(slow_at.unwrap_or_else(tokio::time::Instant::now)), if slow_at.is_some() => {
                    break End::too_slow(settings.slow_timeout);
                }
                produced = produce(&mut session, &mut out) => {
                    if let Err(end) = produced {
                        break end;
                    }
                }
                incoming = stream.next() => {
                    let message = match incoming {
                        None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break End::Gone,
                        Some(Ok(message)) => message,
                    };
                    last_heard = Instant::now();
                    let received = match &message {
                        Message::Text(text) => session.receive(Incoming::Text(text.as_str()), &mut out, &mut key).await,
                        Message::Binary(bytes) => session.receive(Incoming::Binary(bytes.as_ref()), &mut out, &mut key).await,
                        _ => Ok(()),
                    };
                    if let Err(end) = received {
                        break end;
                    }
                }
                _ = heartbeat.tick() => {
                    if last_heard.elapsed() > 2 * settings.heartbeat {
                        break End::Close(CLOSE_NO_PONG, "no answer to the last two pings".into());
                    }
                    out.send(Message::Ping(bytes::Bytes::from_static(b"sluice")));
                }
            }
        },
    };
    metrics::counter!("sluice_ws_closed_total", "reason" => end.label()).increment(1);
    if let End::Close(code, reason) = end {
        tracing::debug!(code, %reason, tenant = ?key.as_ref().and_then(|key| key.grant().tenant().cloned()), "closing a WebSocket connection");
        let _ = close.send(CloseFrame {
            code,
            reason: reason.into(),
        });
    }
    drop(out);
    drop(session);
    if !writer_ended {
        // Bounded: the writer gives up a blocked write when asked to close, and a close frame
        // gets CLOSE_DEADLINE.
        let _ = writer.await;
    }
    metrics::gauge!("sluice_ws_connections").decrement(1.0);
}

/// Resolves when the key is revoked; never without a key.
async fn revocation(key: &mut Option<SessionKey>) -> crate::keys::Revoked {
    match key {
        Some(key) => key.revoked().await,
        None => std::future::pending().await,
    }
}

/// Waits for room in the queue, then for the session's next message, and queues it.
async fn produce<S: Session>(session: &mut S, out: &mut Outbox) -> Result<(), End> {
    let permit = out.queue.reserve().await.map_err(|_| End::Gone)?;
    out.full_since = None;
    let message = session.next().await?;
    permit.send(Outgoing::Message(message));
    if out.queue.capacity() == 0 {
        out.note_full();
    }
    Ok(())
}

/// The writer: sends queued messages, each within `deadline`, until the queue closes or a close
/// frame is asked for (which interrupts a blocked write).
async fn write(
    mut sink: SplitSink<WebSocket, Message>,
    mut queue: mpsc::Receiver<Outgoing>,
    mut close: oneshot::Receiver<CloseFrame>,
    deadline: Duration,
) -> Written {
    let mut gate: Option<KeyCheck> = None;
    loop {
        let message = tokio::select! {
            biased;
            frame = &mut close => return send_close(&mut sink, frame.ok()).await,
            next = queue.recv() => match next {
                None => return Written::Done,
                Some(Outgoing::Gate(check)) => {
                    gate = Some(check);
                    continue;
                }
                Some(Outgoing::Message(message)) => message,
            },
        };
        let data = matches!(message, Message::Text(_) | Message::Binary(_));
        if data && gate.as_mut().is_some_and(|gate| gate.current().is_err()) {
            let frame = CloseFrame {
                code: CLOSE_REVOKED,
                reason: crate::keys::Revoked.to_string().into(),
            };
            send_close(&mut sink, Some(frame)).await;
            return Written::Revoked;
        }
        tokio::select! {
            biased;
            frame = &mut close => return send_close(&mut sink, frame.ok()).await,
            sent = tokio::time::timeout(deadline, sink.send(message)) => match sent {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Written::Failed,
                Err(_) => {
                    let frame = CloseFrame {
                        code: CLOSE_TOO_SLOW,
                        reason: format!("too slow: a message was not taken for {deadline:?}").into(),
                    };
                    send_close(&mut sink, Some(frame)).await;
                    return Written::TooSlow;
                }
            },
        }
    }
}

async fn send_close(
    sink: &mut SplitSink<WebSocket, Message>,
    frame: Option<CloseFrame>,
) -> Written {
    if let Some(frame) = frame {
        let _ = tokio::time::timeout(CLOSE_DEADLINE, sink.send(Message::Close(Some(frame)))).await;
    }
    Written::Done
}
