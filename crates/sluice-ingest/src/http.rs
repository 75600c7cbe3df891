//! The Segment HTTP Tracking API over axum: `/v1/track`, `/v1/page`, `/v1/screen`,
//! `/v1/identify`, `/v1/group`, `/v1/alias`, `/v1/batch` (and `/v1/import`, Segment's alias of
//! batch), each also by Segment's short path (`/v1/t`, `/v1/p`, `/v1/s`, `/v1/i`, `/v1/g`,
//! `/v1/a`, `/v1/b`: where `@segment/analytics-next` posts), with CORS for browsers.
//!
//! **Browsers.** Every answer of these routes — errors included — and the 404 of every path no
//! route serves carry the CORS headers of `ingest.cors-allowed-origins`, so a browser SDK
//! always reads the status and retries what it should, instead of seeing `Failed to fetch`.
//! Preflights allow whatever request headers an allowed origin asks for (SDKs add their own,
//! like `X-Retry-Count` on retries), and `Retry-After` is exposed to the page. A `text/plain`
//! body with the `writeKey` in it (`sendBeacon`, the SDK's simple requests) is read like JSON.
//!
//! Answers:
//! - 200 `{"success":true,"accepted":N,"duplicates":D,"rejected":[…]}` — accepted events are
//!   durable; rejected ones (if any) are listed with index, path, reason and message; events
//!   of erased users are dropped and counted in `suppressed` (present when not 0);
//! - 400 the same shape with `success: false` when every event was rejected (a single-message
//!   route's one event too, as `index` 0), or `{"success":false,"error":{"code","message"}}`
//!   when the body is not JSON, or not a batch at all;
//! - 401 no or unknown write key; 413 body over a limit (named); 415 unknown encoding;
//! - 429 (same ids being appended by another request; the key's request rate or daily event
//!   quota spent) and 503 (at capacity, log unavailable)
//!   with `Retry-After`.

use crate::body::{self, BodyError, Encoding};
use crate::collector::{Accepted, Collector, IngestError};
use axum::Extension;
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use sluice_core::EventType;
use sluice_core::normalize::EventErrorKind;
use sluice_log::Log;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The collector's routes, with their OpenAPI description.
pub fn router<L: Log>(collector: Arc<Collector<L>>) -> OpenApiRouter {
    let state: Arc<dyn Ingest> = collector;
    OpenApiRouter::new()
        .routes(routes!(track))
        .routes(routes!(page))
        .routes(routes!(screen))
        .routes(routes!(identify))
        .routes(routes!(group))
        .routes(routes!(alias))
        .routes(routes!(batch))
        .routes(routes!(import))
        .routes(routes!(track_short))
        .routes(routes!(page_short))
        .routes(routes!(screen_short))
        .routes(routes!(identify_short))
        .routes(routes!(group_short))
        .routes(routes!(alias_short))
        .routes(routes!(batch_short))
        // The server's 404 (answered with CORS: see [`cors_layer`]).
        .fallback(not_found)
        .with_state(state)
}

/// No route serves the path: an empty 404, with CORS for browsers.
async fn not_found() -> StatusCode {
    StatusCode::NOT_FOUND
}

/// The collector as the routes use it (not generic over the log, so the handlers are plain
/// functions the OpenAPI description can name).
trait Ingest: Send + Sync + 'static {
    fn config(&self) -> &crate::IngestConfig;
    fn limits(&self) -> &sluice_core::Limits;
    fn reserve(&self, bytes: usize) -> Result<crate::collector::Reservation, IngestError>;
    fn client_ip(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr>;
    fn ingest<'a>(
        &'a self,
        endpoint: Option<EventType>,
        header_key: Option<String>,
        client: Option<IpAddr>,
        body: &'a [u8],
    ) -> futures::future::BoxFuture<'a, Result<Accepted, IngestError>>;
}

impl<L: Log> Ingest for Collector<L> {
    fn config(&self) -> &crate::IngestConfig {
        Collector::config(self)
    }

    fn limits(&self) -> &sluice_core::Limits {
        Collector::limits(self)
    }

    fn reserve(&self, bytes: usize) -> Result<crate::collector::Reservation, IngestError> {
        Collector::reserve(self, bytes)
    }

    fn client_ip(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        self.enricher().client_ip(peer, headers)
    }

    fn ingest<'a>(
        &'a self,
        endpoint: Option<EventType>,
        header_key: Option<String>,
        client: Option<IpAddr>,
        body: &'a [u8],
    ) -> futures::future::BoxFuture<'a, Result<Accepted, IngestError>> {
        Box::pin(Collector::ingest(self, endpoint, header_key, client, body))
    }
}

type Shared = State<Arc<dyn Ingest>>;

/// One collector route: its handler and its description (single-message routes differ from
/// batch routes only in the body they take, its limit and the wording).
macro_rules! collector_route {
    ($name:ident, $endpoint:expr, $path:literal, $what:literal, $body:path, $body_what:literal,
     $ok:literal, $invalid:literal, $limit:literal) => {
        #[doc = $what]
        #[utoipa::path(post, path = $path, tag = "collector",
            security(("basic" = [])),
            request_body(content = $body, description = $body_what, content_type = "application/json"),
            responses(
                (status = 200, description = $ok, body = crate::doc::Answer),
                (status = 400, description = $invalid, body = crate::doc::Answer),
                (status = 401, description = "No or unknown write key", body = crate::doc::Refusal),
                (status = 413, description = $limit, body = crate::doc::Refusal),
                (status = 415, description = "A Content-Encoding other than gzip", body = crate::doc::Refusal),
                (status = 429, description = "The same messageIds are being appended, or the key's limit is spent (Retry-After)", body = crate::doc::Refusal),
                (status = 503, description = "At capacity or the log is unavailable (Retry-After)", body = crate::doc::Refusal),
            ))]
        async fn $name(
            state: Shared,
            peer: Option<Extension<ConnectInfo<SocketAddr>>>,
            headers: HeaderMap,
            body: Body,
        ) -> Response {
            let peer = peer.map(|Extension(ConnectInfo(address))| address.ip());
            handle(state, $endpoint, peer, headers, body).await
        }
    };
}

/// A single-message route of `kind`.
macro_rules! single {
    ($name:ident, $kind:expr, $path:literal, $what:literal) => {
        collector_route!(
            $name,
            Some($kind),
            $path,
            $what,
            crate::doc::SegmentMessage,
            "One Segment message",
            "Accepted: durable in the events topic",
            "Invalid: what is wrong, with the field path",
            "Over limits.max-event-bytes"
        );
    };
}

/// A batch route.
macro_rules! batched {
    ($name:ident, $path:literal, $what:literal) => {
        collector_route!(
            $name,
            None,
            $path,
            $what,
            crate::doc::SegmentBatch,
            "A batch of Segment messages",
            "Accepted (invalid events are listed in `rejected`)",
            "Every event invalid, or not a batch",
            "Over limits.max-batch-bytes"
        );
    };
}

single!(
    track,
    EventType::Track,
    "/v1/track",
    "A `track` call: an event a user did."
);
single!(
    page,
    EventType::Page,
    "/v1/page",
    "A `page` call: a page view."
);
single!(
    screen,
    EventType::Screen,
    "/v1/screen",
    "A `screen` call: a mobile screen view."
);
single!(
    identify,
    EventType::Identify,
    "/v1/identify",
    "An `identify` call: who a user is."
);
single!(
    group,
    EventType::Group,
    "/v1/group",
    "A `group` call: a user joins a group."
);
single!(
    alias,
    EventType::Alias,
    "/v1/alias",
    "An `alias` call: two ids are one user."
);
batched!(batch, "/v1/batch", "A batch of messages of any type.");
batched!(import, "/v1/import", "Segment's alias of `/v1/batch`.");

single!(
    track_short,
    EventType::Track,
    "/v1/t",
    "`/v1/track` by Segment's short path (where analytics.js posts)."
);
single!(
    page_short,
    EventType::Page,
    "/v1/p",
    "`/v1/page` by Segment's short path (where analytics.js posts)."
);
single!(
    screen_short,
    EventType::Screen,
    "/v1/s",
    "`/v1/screen` by Segment's short path (where analytics.js posts)."
);
single!(
    identify_short,
    EventType::Identify,
    "/v1/i",
    "`/v1/identify` by Segment's short path (where analytics.js posts)."
);
single!(
    group_short,
    EventType::Group,
    "/v1/g",
    "`/v1/group` by Segment's short path (where analytics.js posts)."
);
single!(
    alias_short,
    EventType::Alias,
    "/v1/a",
    "`/v1/alias` by Segment's short path (where analytics.js posts)."
);
batched!(
    batch_short,
    "/v1/b",
    "`/v1/batch` by Segment's short path (where analytics.js posts in batching mode)."
);

/// The collector's CORS for browsers on `origins` (`ingest.cors-allowed-origins`), to be laid
/// over the whole server, outside its own bounds: so the server's own refusals of a
/// collector request (413 over `server.max-request-bytes`, 503 on its request timeout) and
/// 404s of paths nobody serves carry it too, not only the collector's answers. Requests for
/// `other_routes` (the other routers' paths, `{name}` segments matching any one segment) get
/// none of it.
pub fn cors_layer(origins: &[String], other_routes: Vec<String>) -> CorsLayer {
    let any = origins.iter().any(|origin| origin == "*");
    let listed: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|origin| HeaderValue::from_str(origin).ok())
        .collect();
    let allow = AllowOrigin::predicate(move |origin, request| {
        (any || listed.contains(origin))
            && !other_routes
                .iter()
                .any(|route| route_matches(route, request.uri.path()))
    });
    CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([Method::POST, Method::OPTIONS])
        // SDKs send headers of their own (`X-Retry-Count` on every retry, more in later
        // versions); a fixed list would fail their retries' preflight. What the collector
        // reads is only the body, `Authorization` and `Content-Encoding`, so an allowed
        // origin may send any.
        .allow_headers(AllowHeaders::mirror_request())
        // The SDKs wait as long as a 429's `Retry-After` says, if the page may read it.
        .expose_headers([header::RETRY_AFTER])
        .max_age(std::time::Duration::from_secs(86_400))
}

/// Whether `path` is served by `route` (`/v1/metrics/{name}`: a `{…}` segment matches any
/// one segment).
fn route_matches(route: &str, path: &str) -> bool {
    let (mut route, mut path) = (route.split('/'), path.split('/'));
    loop {
        match (route.next(), path.next()) {
            (None, None) => return true,
            (Some(expected), Some(segment))
                if expected == segment
                    || (expected.starts_with('{')
                        && expected.ends_with('}')
                        && !segment.is_empty()) => {}
            _ => return false,
        }
    }
}

async fn handle(
    State(collector): Shared,
    endpoint: Option<EventType>,
    peer: Option<IpAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let retry_after = collector.config().retry_after.get().as_secs();
    let (limit, setting) = match endpoint {
        None => (
            collector.limits().max_batch_bytes.as_usize(),
            "limits.max-batch-bytes",
        ),
        Some(_) => (
            collector.limits().max_event_bytes.as_usize(),
            "limits.max-event-bytes",
        ),
    };
    let encoding = match Encoding::from_header(
        headers
            .get(header::CONTENT_ENCODING)
            .map(HeaderValue::as_bytes),
    ) {
        Ok(encoding) => encoding,
        Err(error) => {
            return error_response(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_encoding",
                &error.to_string(),
                None,
            );
        }
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse::<usize>().ok());
    if encoding == Encoding::Identity && declared.is_some_and(|len| len > limit) {
        let error = BodyError::TooLarge {
            limit,
            setting,
            compressed: false,
        };
        return error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            &error.to_string(),
            None,
        );
    }
    // Reserve the worst case before reading: the body and what it may decompress to.
    let reserve = match encoding {
        Encoding::Identity => declared.unwrap_or(limit),
        Encoding::Gzip => limit + declared.unwrap_or(limit),
    };
    let _reservation = match collector.reserve(reserve) {
        Ok(reservation) => reservation,
        Err(error) => return refused(&error, retry_after),
    };
    let raw = match axum::body::to_bytes(body, limit + 4096).await {
        Ok(raw) => raw,
        Err(_) => {
            let error = BodyError::TooLarge {
                limit,
                setting,
                compressed: encoding == Encoding::Gzip,
            };
            return error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                &error.to_string(),
                None,
            );
        }
    };
    let decoded = match body::decode(raw, encoding, limit, setting) {
        Ok(decoded) => decoded,
        Err(error @ BodyError::TooLarge { .. }) => {
            return error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                &error.to_string(),
                None,
            );
        }
        Err(error) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                "bad_encoding",
                &error.to_string(),
                None,
            );
        }
    };
    let header_key = match headers.get(header::AUTHORIZATION) {
        Some(value) => match crate::auth::key_from_authorization(value.as_bytes()) {
            Ok(key) => Some(key),
            Err(error) => {
                return error_response(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    &error.to_string(),
                    None,
                );
            }
        },
        None => None,
    };
    let client = collector.client_ip(peer, &headers);
    match collector
        .ingest(endpoint, header_key, client, &decoded)
        .await
    {
        Ok(accepted) => accepted_response(accepted),
        Err(error) => refused(&error, retry_after),
    }
}

fn accepted_response(accepted: Accepted) -> Response {
    let all_rejected = accepted.accepted == 0
        && accepted.duplicates == 0
        && accepted.suppressed == 0
        && !accepted.rejected.is_empty();
    let status = if all_rejected {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let mut body = json!({
        "success": !all_rejected,
        "accepted": accepted.accepted,
        "duplicates": accepted.duplicates,
        "rejected": accepted.rejected,
    });
    if accepted.suppressed > 0 {
        body["suppressed"] = accepted.suppressed.into();
    }
    (status, axum::Json(body)).into_response()
}

fn refused(error: &IngestError, retry_after: u64) -> Response {
    let message = error.to_string();
    match error {
        IngestError::Unauthorized(_) => {
            error_response(StatusCode::UNAUTHORIZED, "unauthorized", &message, None)
        }
        IngestError::Invalid(invalid) => {
            let status = match invalid.kind {
                EventErrorKind::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                _ => StatusCode::BAD_REQUEST,
            };
            error_response(status, invalid.kind.reason(), &message, None)
        }
        IngestError::Busy => error_response(
            StatusCode::TOO_MANY_REQUESTS,
            "busy",
            &message,
            Some(retry_after),
        ),
        IngestError::Limited(limited) => error_response(
            StatusCode::TOO_MANY_REQUESTS,
            limited.kind.as_str(),
            &message,
            Some(limited.retry_after_secs()),
        ),
        IngestError::Overloaded(_) => error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            &message,
            Some(retry_after),
        ),
        IngestError::Unavailable(_) => error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            &message,
            Some(retry_after),
        ),
    }
}

fn error_response(
    status: StatusCode,
    code: &str,
    message: &str,
    retry_after: Option<u64>,
) -> Response {
    let body = json!({ "success": false, "error": { "code": code, "message": message } });
    let mut response = (status, axum::Json(body)).into_response();
    if let Some(seconds) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::route_matches;

    #[test]
    fn routes_match_their_paths_segment_by_segment() {
        assert!(route_matches("/v1/metrics", "/v1/metrics"));
        assert!(route_matches(
            "/v1/metrics/{name}/export",
            "/v1/metrics/q1/export"
        ));
        assert!(!route_matches("/v1/metrics/{name}", "/v1/metrics/"));
        assert!(!route_matches(
            "/v1/metrics/{name}",
            "/v1/metrics/q1/export"
        ));
        assert!(!route_matches("/v1/metrics", "/v1/metricsx"));
        assert!(!route_matches("/v1/admin/keys/{id}", "/v1/track"));
    }
}
