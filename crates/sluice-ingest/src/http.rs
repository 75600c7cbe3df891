//! The Segment HTTP Tracking API over axum: `/v1/track`, `/v1/page`, `/v1/screen`,
//! `/v1/identify`, `/v1/group`, `/v1/alias`, `/v1/batch` (and `/v1/import`, Segment's alias of
//! batch), with CORS for browsers.
//!
//! Answers:
//! - 200 `{"success":true,"accepted":N,"duplicates":D,"rejected":[…]}` — accepted events are
//!   durable; rejected ones (if any) are listed with index, path, reason and message;
//! - 400 the same shape with `success: false` when every event was rejected, or
//!   `{"success":false,"error":{"code","message"}}` when the body is not a batch at all;
//! - 401 no or unknown write key; 413 body over a limit (named); 415 unknown encoding;
//! - 429 (same ids being appended by another request; the key's request rate or daily event
//!   quota spent) and 503 (at capacity, log unavailable)
//!   with `Retry-After`.

use crate::body::{self, BodyError, Encoding};
use crate::collector::{Accepted, Collector, IngestError};
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::json;
use sluice_core::EventType;
use sluice_core::normalize::EventErrorKind;
use sluice_log::Log;
use std::sync::Arc;
use tower_http::cors::{AllowOrigin, CorsLayer};

/// The collector's routes.
pub fn router<L: Log>(collector: Arc<Collector<L>>) -> Router {
    let cors = cors_layer(&collector.config().cors_allowed_origins);
    let mut router = Router::new();
    for kind in EventType::ALL {
        router = router.route(
            &format!("/v1/{kind}"),
            post(move |state, headers, body| handle(state, Some(kind), headers, body)),
        );
    }
    router
        .route(
            "/v1/batch",
            post(|state, headers, body| handle(state, None, headers, body)),
        )
        .route(
            "/v1/import",
            post(|state, headers, body| handle(state, None, headers, body)),
        )
        .with_state(collector)
        .layer(cors)
}

fn cors_layer(origins: &[String]) -> CorsLayer {
    let allow = if origins.iter().any(|origin| origin == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            origins
                .iter()
                .filter_map(|origin| HeaderValue::from_str(origin).ok()),
        )
    };
    CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([Method::POST, Method::OPTIONS])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::CONTENT_ENCODING,
        ])
        .max_age(std::time::Duration::from_secs(86_400))
}

async fn handle<L: Log>(
    State(collector): State<Arc<Collector<L>>>,
    endpoint: Option<EventType>,
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
    match collector.ingest(endpoint, header_key, &decoded).await {
        Ok(accepted) => accepted_response(accepted),
        Err(error) => refused(&error, retry_after),
    }
}

fn accepted_response(accepted: Accepted) -> Response {
    let all_rejected =
        accepted.accepted == 0 && accepted.duplicates == 0 && !accepted.rejected.is_empty();
    let status = if all_rejected {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let body = json!({
        "success": !all_rejected,
        "accepted": accepted.accepted,
        "duplicates": accepted.duplicates,
        "rejected": accepted.rejected,
    });
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
