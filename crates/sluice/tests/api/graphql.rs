//! `/v1/graphql`: a query, and a subscription over graphql-transport-ws that receives an
//! update for an event sent after it started; keys checked over HTTP and in connection_init.

use crate::harness::*;
use futures::{SinkExt, StreamExt};
use hyper::{Method, StatusCode};
use serde_json::{Value, json};
use sluice_core::time::now_millis;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

async fn graphql(h: &Harness, key: &str, query: &str) -> (StatusCode, Value) {
    h.call(Method::POST, "/v1/graphql", key, &json!({ "query": query }))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphql_queries_read_the_same_series_as_rest() {
    let h = Harness::start(&[]).await;
    let start = hours_ago(2);
    h.send_ok(
        SHOP_WRITE,
        vec![
            view("a1", "u1", "/g", start + 1_000, "1.25"),
            view("a2", "u2", "/g", start + 2_000, "2"),
        ],
    )
    .await;
    let query = format!(
        r#"{{ series(metric: "views", from: "{start}", to: "now", resolution: "1h", filters: ["url:/g"]) {{
            metric resolutionMs series {{ key points {{ start end final values }} }} }} }}"#
    );
    let answer = eventually("the views", || async {
        let (status, answer) = graphql(&h, SHOP_READ, &query).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        let points = &answer["data"]["series"]["series"][0]["points"];
        if points[0]["values"]["n"] == 2 {
            Ok(answer)
        } else {
            Err(answer.to_string())
        }
    })
    .await;
    let series = &answer["data"]["series"];
    assert_eq!(series["metric"], "views");
    assert_eq!(series["resolutionMs"], HOUR);
    assert_eq!(series["series"][0]["key"], json!({"url": "/g"}));
    assert_eq!(
        series["series"][0]["points"][0],
        json!({"start": start, "end": start + HOUR, "final": false, "values": {"n": 2, "users": 2, "amount": 3.25}})
    );
    let (_, metrics) = graphql(
        &h,
        SHOP_READ,
        "{ metrics { name keys values { name aggregate } windowKind windowSizeMs } }",
    )
    .await;
    assert_eq!(
        metrics["data"]["metrics"],
        json!([{"name": "views", "keys": ["url"], "values": [
            {"name": "n", "aggregate": "count"}, {"name": "users", "aggregate": "count_distinct"},
            {"name": "amount", "aggregate": "sum"}], "windowKind": "tumble", "windowSizeMs": 60000}])
    );
    // Errors carry the same codes as REST; blog reads none of shop's.
    let (_, answer) = graphql(
        &h,
        SHOP_READ,
        r#"{ series(metric: "views", filters: ["country:fr"]) { metric } }"#,
    )
    .await;
    assert_eq!(
        answer["errors"][0]["extensions"]["code"], "unknown_key",
        "{answer}"
    );
    let (_, answer) = graphql(&h, BLOG_READ, &query).await;
    assert_eq!(answer["data"]["series"]["series"], json!([]), "{answer}");
    // Keys.
    let (status, _) = graphql(&h, SHOP_WRITE, "{ metrics { name } }").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = h
        .request(
            Method::POST,
            "/v1/graphql",
            &[("content-type", "application/json")],
            r#"{"query":"{ metrics { name } }"}"#,
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    h.stop().await;
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn next_message(socket: &mut Socket) -> Option<Value> {
    loop {
        let message = tokio::time::timeout(std::time::Duration::from_secs(30), socket.next())
            .await
            .expect("a message within 30 s")?
            .ok()?;
        match message {
            Message::Text(text) => return Some(serde_json::from_str(&text).unwrap()),
            Message::Close(_) => return None,
            _ => {}
        }
    }
}

async fn transport_ws(h: &Harness) -> Socket {
    let mut request = format!("ws://{}/v1/graphql", h.target.addr)
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    let (socket, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(
        response.headers()["sec-websocket-protocol"],
        "graphql-transport-ws"
    );
    socket
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphql_subscriptions_receive_updates_over_graphql_transport_ws() {
    let h = Harness::start(&[]).await;
    let mut socket = transport_ws(&h).await;
    let init = json!({"type": "connection_init", "payload": {"Authorization": format!("Bearer {SHOP_READ}")}});
    socket
        .send(Message::Text(init.to_string().into()))
        .await
        .unwrap();
    assert_eq!(
        next_message(&mut socket).await.unwrap()["type"],
        "connection_ack"
    );
    let subscribe = json!({"id": "1", "type": "subscribe", "payload": {
        "query": r#"subscription { windowUpdates(metric: "views", filters: ["url:/sub"]) { metric windows { key start end final values } } }"#
    }});
    socket
        .send(Message::Text(subscribe.to_string().into()))
        .await
        .unwrap();

    let now = now_millis();
    h.send_ok(SHOP_WRITE, vec![view("a1", "u1", "/sub", now, "4")])
        .await;
    let window = loop {
        let message = next_message(&mut socket)
            .await
            .expect("the subscription stays open");
        assert_eq!(message["type"], "next", "{message}");
        assert_eq!(message["id"], "1");
        let update = &message["payload"]["data"]["windowUpdates"];
        assert_eq!(update["metric"], "views");
        if let Some(window) = update["windows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["values"]["n"] == 1)
        {
            break window.clone();
        }
    };
    assert_eq!(window["key"], json!({"url": "/sub"}));
    assert_eq!(window["final"], false);
    assert_eq!(window["values"], json!({"n": 1, "users": 1, "amount": 4}));

    // A refused key in connection_init closes the socket, with the reason.
    let mut refused = transport_ws(&h).await;
    let init = json!({"type": "connection_init", "payload": {"Authorization": format!("Bearer {SHOP_WRITE}")}});
    refused
        .send(Message::Text(init.to_string().into()))
        .await
        .unwrap();
    let frame = loop {
        match refused.next().await {
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => {}
            other => panic!("expected a close, got {other:?}"),
        }
    };
    let frame = frame.unwrap();
    assert_eq!(u16::from(frame.code), 1002);
    assert!(
        frame.reason.contains("needs a read key"),
        "{}",
        frame.reason
    );
    h.stop().await;
}

/// Reads until a message satisfies `wanted`; fails on a close.
async fn until(socket: &mut Socket, wanted: impl Fn(&Value) -> bool) -> Value {
    loop {
        let message = next_message(socket)
            .await
            .expect("the connection stays open");
        if wanted(&message) {
            return message;
        }
    }
}

async fn subscribe(socket: &mut Socket, id: &str, metric: &str) {
    let query =
        format!(r#"subscription {{ windowUpdates(metric: "{metric}") {{ windows {{ key }} }} }}"#);
    let subscribe = json!({"id": id, "type": "subscribe", "payload": {"query": query}});
    socket
        .send(Message::Text(subscribe.to_string().into()))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphql_subscriptions_are_capped_per_connection_and_count_as_connections() {
    let h = Harness::start(&[
        ("api.ws-max-subscriptions", toml::Value::Integer(2)),
        ("api.ws-max-connections", toml::Value::Integer(1)),
    ])
    .await;
    // An open window, so that every new subscription gets a first update.
    h.send_ok(SHOP_WRITE, vec![view("a", "u", "/cap", now_millis(), "1")])
        .await;
    let mut socket = transport_ws(&h).await;
    let init = json!({"type": "connection_init", "payload": {"key": SHOP_READ}});
    socket
        .send(Message::Text(init.to_string().into()))
        .await
        .unwrap();
    assert_eq!(
        next_message(&mut socket).await.unwrap()["type"],
        "connection_ack"
    );
    // The GraphQL socket holds the only connection slot: live push is refused meanwhile.
    let live = format!("ws://{}/v1/live?key={SHOP_READ}", h.target.addr);
    let refused = tokio_tungstenite::connect_async(live.as_str())
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("503"), "{refused}");

    // A subscription that fails ends (complete) and frees its place.
    subscribe(&mut socket, "bad", "no_such_metric").await;
    until(&mut socket, |m| m["type"] == "complete" && m["id"] == "bad").await;
    for id in ["1", "2"] {
        subscribe(&mut socket, id, "views").await;
        until(&mut socket, |m| m["type"] == "next" && m["id"] == id).await;
    }
    subscribe(&mut socket, "3", "views").await;
    let refused = until(&mut socket, |m| m["id"] == "3").await;
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(
        refused["payload"][0]["extensions"]["code"], "too_many_subscriptions",
        "{refused}"
    );
    assert!(
        refused["payload"][0]["message"]
            .as_str()
            .unwrap()
            .contains("api.ws-max-subscriptions"),
        "{refused}"
    );
    // Completing one makes room for another.
    let complete = json!({"id": "1", "type": "complete"});
    socket
        .send(Message::Text(complete.to_string().into()))
        .await
        .unwrap();
    subscribe(&mut socket, "4", "views").await;
    until(&mut socket, |m| m["type"] == "next" && m["id"] == "4").await;
    // An id that runs already closes the socket (graphql-transport-ws: 4409).
    subscribe(&mut socket, "2", "views").await;
    let frame = loop {
        match socket.next().await {
            Some(Ok(Message::Close(frame))) => break frame.unwrap(),
            Some(Ok(_)) => {}
            other => panic!("expected a close, got {other:?}"),
        }
    };
    assert_eq!(u16::from(frame.code), 4409, "{frame:?}");
    drop(socket);
    // Its slot is free again.
    eventually("the slot is released", || async {
        tokio_tungstenite::connect_async(live.as_str())
            .await
            .map(drop)
            .map_err(|error| error.to_string())
    })
    .await;
    h.stop().await;
}
