//! The app with two configured tenants, an admin key and one metric, and helpers to send
//! events and read answers.

use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde_json::{Value, json};
use sluice::app::App;
use sluice::client::{Connection, Reply, Target, basic_auth};
use sluice_core::time::{Millis, format_millis, now_millis};
use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

pub(crate) const SHOP_WRITE: &str = "wk_shop_test_0123456789";
pub(crate) const SHOP_READ: &str = "rk_shop_test_0123456789";
pub(crate) const BLOG_WRITE: &str = "wk_blog_test_0123456789";
pub(crate) const BLOG_READ: &str = "rk_blog_test_0123456789";
pub(crate) const ADMIN: &str = "ak_admin_test_0123456789";

/// Page views per URL per minute: events, distinct users, the amount spent.
pub(crate) const VIEWS: &str = "CREATE METRIC views AS SELECT properties.url AS url, COUNT(*) AS n, \
     COUNT(DISTINCT user_id) AS users, SUM(properties.amount) AS amount FROM events \
     WHERE event = 'Page Viewed' GROUP BY url, TUMBLE(timestamp, INTERVAL '1' MINUTE)";

pub(crate) const MINUTE: Millis = 60_000;
pub(crate) const HOUR: Millis = 3_600_000;

pub(crate) struct Harness {
    app: Option<App>,
    pub(crate) target: Target,
    pub(crate) config: sluice::config::Config,
    _dir: tempfile::TempDir,
}

impl Harness {
    pub(crate) async fn start(overrides: &[(&str, toml::Value)]) -> Harness {
        Harness::start_in(tempfile::tempdir().unwrap(), overrides).await
    }

    /// The configuration [`Harness::start`] uses, on `dir`.
    pub(crate) fn config(dir: &Path, overrides: &[(&str, toml::Value)]) -> sluice::config::Config {
        let table: toml::Table = toml::from_str(&format!(
            r#"
            tenants = [
              {{ name = "shop", write-keys = ["{SHOP_WRITE}"], read-keys = ["{SHOP_READ}"] }},
              {{ name = "blog", write-keys = ["{BLOG_WRITE}"], read-keys = ["{BLOG_READ}"] }},
            ]
            admin-keys = ["{ADMIN}"]
            metrics = [{{ sql = "{VIEWS}" }}]
            "#
        ))
        .unwrap();
        let mut all = vec![
            ("data-dir", toml::Value::String(dir.display().to_string())),
            ("server.listen", toml::Value::String("127.0.0.1:0".into())),
            ("tenants", table["tenants"].clone()),
            ("admin-keys", table["admin-keys"].clone()),
            ("metrics", table["metrics"].clone()),
            ("log.partitions", toml::Value::Integer(2)),
            ("log.ack", toml::Value::String("write".into())),
            (
                "stream.default-out-of-orderness",
                toml::Value::String("0s".into()),
            ),
            (
                "store.checkpoint-interval",
                toml::Value::String("50ms".into()),
            ),
        ];
        all.extend(overrides.iter().cloned());
        sluice::config::load(None, &all).unwrap()
    }

    /// Starts the app on a data dir prepared by the test.
    pub(crate) async fn start_in(
        dir: tempfile::TempDir,
        overrides: &[(&str, toml::Value)],
    ) -> Harness {
        let config = Harness::config(dir.path(), overrides);
        let app = App::start(&config).await.unwrap();
        let target = Target::parse(&format!("http://{}", app.addr)).unwrap();
        Harness {
            app: Some(app),
            target,
            config,
            _dir: dir,
        }
    }

    /// The running app.
    pub(crate) fn app(&self) -> &App {
        self.app.as_ref().unwrap()
    }

    /// Stops the app and starts it again on the same data dir (and a new port).
    pub(crate) async fn restart(&mut self) {
        let app = self.app.take().unwrap();
        app.stop(Duration::from_secs(5)).await.unwrap();
        let app = App::start(&self.config).await.unwrap();
        self.target = Target::parse(&format!("http://{}", app.addr)).unwrap();
        self.app = Some(app);
    }

    pub(crate) async fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> (StatusCode, Value, Reply) {
        let mut connection = Connection::open(&self.target).await.unwrap();
        let reply = connection
            .send(method, path, headers, body.into())
            .await
            .unwrap();
        let value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
        (reply.status, value, reply)
    }

    /// A GET with `key` as bearer.
    pub(crate) async fn get(&self, path: &str, key: &str) -> (StatusCode, Value) {
        let auth = format!("Bearer {key}");
        let (status, value, _) = self
            .request(Method::GET, path, &[("authorization", &auth)], Bytes::new())
            .await;
        (status, value)
    }

    /// `/metrics`, read with the admin key.
    pub(crate) async fn metrics(&self) -> String {
        let auth = format!("Bearer {ADMIN}");
        let (status, _, reply) = self
            .request(
                Method::GET,
                "/metrics",
                &[("authorization", &auth)],
                Bytes::new(),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        String::from_utf8_lossy(&reply.body).into_owned()
    }

    /// A JSON request with `key` as bearer.
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        key: &str,
        body: &Value,
    ) -> (StatusCode, Value) {
        let auth = format!("Bearer {key}");
        let (status, value, _) = self
            .request(
                method,
                path,
                &[
                    ("authorization", &auth),
                    ("content-type", "application/json"),
                ],
                body.to_string(),
            )
            .await;
        (status, value)
    }

    /// Posts a batch with `write_key`.
    pub(crate) async fn send(&self, write_key: &str, events: Vec<Value>) -> (StatusCode, Value) {
        let auth = basic_auth(write_key);
        let (status, value, _) = self
            .request(
                Method::POST,
                "/v1/batch",
                &[
                    ("authorization", &auth),
                    ("content-type", "application/json"),
                ],
                json!({ "batch": events }).to_string(),
            )
            .await;
        (status, value)
    }

    /// Sends events and asserts they were all accepted.
    pub(crate) async fn send_ok(&self, write_key: &str, events: Vec<Value>) {
        let count = events.len();
        let (status, reply) = self.send(write_key, events).await;
        assert_eq!(status, StatusCode::OK, "{reply}");
        assert_eq!(reply["accepted"], count, "{reply}");
    }

    pub(crate) async fn stop(mut self) {
        self.app
            .take()
            .unwrap()
            .stop(Duration::from_secs(5))
            .await
            .unwrap();
    }
}

/// A page view at `time` by `user` (anonymous id `anon`, which picks the partition).
pub(crate) fn view(anon: &str, user: &str, url: &str, time: Millis, amount: &str) -> Value {
    let amount: Value = serde_json::from_str(amount).unwrap();
    json!({
        "type": "track",
        "event": "Page Viewed",
        "anonymousId": anon,
        "userId": user,
        "timestamp": format_millis(time),
        "properties": {"url": url, "amount": amount},
    })
}

/// Events at `time` from many anonymous ids, so that every partition's watermark reaches it.
pub(crate) fn everywhere(url: &str, time: Millis, count: usize) -> Vec<Value> {
    (0..count)
        .map(|i| view(&format!("anon-{i}"), "closer", url, time, "0"))
        .collect()
}

/// The start of the hour `hours` hours before the current one.
pub(crate) fn hours_ago(hours: i64) -> Millis {
    let now = now_millis();
    now - now.rem_euclid(HOUR) - hours * HOUR
}

/// Polls `check` until it returns `Ok`; fails after 30 s with `what` and the last `Err`
/// (what was seen instead).
pub(crate) async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match check().await {
            Ok(value) => return value,
            Err(seen) => assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; last seen: {seen}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The points of the series whose key has `url`, as (start, final, values…) rows.
pub(crate) fn points(answer: &Value, url: &str) -> Vec<Value> {
    answer["series"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|series| series["key"]["url"] == url)
        .and_then(|series| series["points"].as_array().cloned())
        .unwrap_or_default()
}

/// The URLs an answer has series for, in order.
pub(crate) fn urls(answer: &Value) -> Vec<String> {
    answer["series"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|series| series["key"]["url"].as_str().unwrap_or_default().to_owned())
        .collect()
}
