//! Revoking a key, or deleting its tenant, ends its live sessions at once: `/v1/live` and
//! GraphQL subscriptions are closed with 4001 and sent nothing after the revocation.

use crate::harness::*;
use crate::push::{connect, next_json};
use futures::{SinkExt, StreamExt};
use hyper::{Method, StatusCode};
use serde_json::{Value, json};
use sluice_core::time::now_millis;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A tenant made at runtime, with a write and a read key: (read key id, write, read).
async fn tenant(h: &Harness, name: &str) -> (String, String, String) {
    let (status, answer) = h
        .call(
            Method::POST,
            "/v1/admin/tenants",
            ADMIN,
            &json!({"name": name}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let mut made = Vec::new();
    for role in ["write", "read"] {
        let (status, key) = h
            .call(
                Method::POST,
                "/v1/admin/keys",
                ADMIN,
                &json!({"role": role, "tenant": name}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{key}");
        made.push(key);
    }
    let secret = |key: &Value| key["secret"].as_str().unwrap().to_owned();
    (
        made[1]["id"].as_str().unwrap().to_owned(),
        secret(&made[0]),
        secret(&made[1]),
    )
}

/// A GraphQL socket with the key in `connection_init`, acknowledged, with one subscription
/// to every window of `views`.
async fn graphql_subscription(h: &Harness, key: &str) -> Socket {
    let mut request = format!("ws://{}/v1/graphql", h.target.addr)
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let init =
        json!({"type": "connection_init", "payload": {"Authorization": format!("Bearer {key}")}});
    socket
        .send(Message::Text(init.to_string().into()))
        .await
        .unwrap();
    assert_eq!(next_json(&mut socket).await["type"], "connection_ack");
    let subscribe = json!({"id": "1", "type": "subscribe", "payload": {
        "query": r#"subscription { windowUpdates(metric: "views") { windows { key values } } }"#
    }});
    socket
        .send(Message::Text(subscribe.to_string().into()))
        .await
        .unwrap();
    socket
}

/// Reads until a message mentions `url`.
async fn until_seen(socket: &mut Socket, url: &str) {
    loop {
        let message = next_json(socket).await;
        assert_ne!(message["type"], "error", "{message}");
        if message.to_string().contains(url) {
            return;
        }
    }
}

/// Reads until the server closes (for at most 30 s): the text messages read, and the close
/// frame.
async fn until_closed(socket: &mut Socket) -> (Vec<String>, Option<CloseFrame>) {
    let mut texts = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let message = tokio::time::timeout_at(deadline, socket.next())
            .await
            .unwrap_or_else(|_| {
                panic!("the server did not close the connection within 30 s; it sent {texts:?}")
            });
        match message {
            Some(Ok(Message::Text(text))) => texts.push(text.to_string()),
            Some(Ok(Message::Close(frame))) => return (texts, frame),
            Some(Ok(_)) => {}
            None | Some(Err(_)) => return (texts, None),
        }
    }
}

fn assert_revoked(surface: &str, closed: &(Vec<String>, Option<CloseFrame>), after: &str) {
    let (texts, frame) = closed;
    let frame = frame
        .as_ref()
        .unwrap_or_else(|| panic!("{surface}: no close frame"));
    assert_eq!(u16::from(frame.code), 4001, "{surface}: {frame:?}");
    assert!(frame.reason.contains("revoked"), "{surface}: {frame:?}");
    assert!(
        texts.iter().all(|text| !text.contains(after)),
        "{surface} was sent an update after the revocation: {texts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_key_or_deleting_its_tenant_ends_its_live_and_graphql_sessions() {
    let h = Harness::start(&[]).await;
    for revoke in ["key", "tenant"] {
        let name = format!("news-{revoke}");
        let (read_id, write, read) = tenant(&h, &name).await;
        let mut live = connect(&h, &read).await;
        let subscribe = json!({"type": "subscribe", "id": "s", "metric": "views"});
        live.send(Message::Text(subscribe.to_string().into()))
            .await
            .unwrap();
        assert_eq!(next_json(&mut live).await["type"], "subscribed");
        let mut graphql = graphql_subscription(&h, &read).await;
        let now = now_millis();
        h.send_ok(&write, vec![view("a", "u", "/before", now, "1")])
            .await;
        until_seen(&mut live, "/before").await;
        until_seen(&mut graphql, "/before").await;

        let path = match revoke {
            "key" => format!("/v1/admin/keys/{read_id}"),
            _ => format!("/v1/admin/tenants/{name}"),
        };
        let (status, answer) = h.call(Method::DELETE, &path, ADMIN, &json!(null)).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{answer}");
        if revoke == "key" {
            // The tenant's write key still works: what it sends now is never pushed.
            h.send_ok(&write, vec![view("a", "u", "/after", now, "1")])
                .await;
        }
        assert_revoked("/v1/live", &until_closed(&mut live).await, "/after");
        assert_revoked("graphql", &until_closed(&mut graphql).await, "/after");
        // And the key opens nothing new.
        assert_eq!(
            h.get("/v1/metrics", &read).await.0,
            StatusCode::UNAUTHORIZED
        );
        let url = format!("ws://{}/v1/live?key={read}", h.target.addr);
        let refused = tokio_tungstenite::connect_async(url).await.unwrap_err();
        assert!(refused.to_string().contains("401"), "{refused}");
    }
    let text = h.metrics().await;
    assert!(
        text.lines()
            .any(|line| line == "sluice_ws_closed_total{reason=\"revoked\"} 4"),
        "{text}"
    );
    h.stop().await;
}
