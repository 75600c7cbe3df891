//! API errors as JSON: `{"error": {"code", "message", …}}` with the right status.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use sluice_core::error::{Classify, ErrorClass};
use sluice_pipelines::PipelineError;
use sluice_store::StoreError;

/// The body of every error answer (documentation schema).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// What went wrong, and what to do about it.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// A stable code (`unauthorized`, `forbidden`, `not_found`, `invalid_time`, …).
    pub code: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    extra: serde_json::Map<String, serde_json::Value>,
    retry_after: Option<u64>,
}

impl ApiError {
    /// An error with a status, a stable code and a message that says what to do.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            extra: serde_json::Map::new(),
            retry_after: None,
        }
    }

    /// 403: a known key that may not do this.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 404: no such thing (for this key's tenant).
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 429 with `Retry-After`: a key's limit refused the request.
    pub fn limited(limited: &sluice_core::access::Limited) -> Self {
        let mut error = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            limited.kind.as_str(),
            limited.to_string(),
        );
        error.retry_after = Some(limited.retry_after_secs());
        error
    }

    /// 500/503 for a failure that is not the caller's, logged.
    pub fn internal(error: impl std::fmt::Display + Classify) -> Self {
        let status = match error.class() {
            ErrorClass::User => StatusCode::BAD_REQUEST,
            ErrorClass::External => StatusCode::SERVICE_UNAVAILABLE,
            ErrorClass::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        };
        tracing::warn!(%error, "request failed");
        Self::new(status, "failed", error.to_string())
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The stable code.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// 401: no or unknown key.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 400: the request is wrong.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// Adds a field to the error object.
    pub fn with(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        self.extra.insert(key.to_owned(), value.into());
        self
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.code,
            self.status.as_u16(),
            self.message
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = serde_json::Map::new();
        error.insert("code".into(), self.code.into());
        error.insert("message".into(), self.message.into());
        error.extend(self.extra);
        let mut response = (self.status, axum::Json(json!({ "error": error }))).into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(seconds),
            );
        }
        response
    }
}

impl From<PipelineError> for ApiError {
    fn from(error: PipelineError) -> Self {
        match &error {
            PipelineError::Sql(sql) => ApiError::bad_request("invalid_sql", sql.to_string())
                .with("line", sql.line)
                .with("column", sql.column),
            PipelineError::Store(StoreError::MetricExists(_)) => {
                ApiError::new(StatusCode::CONFLICT, "exists", error.to_string())
            }
            PipelineError::Store(StoreError::TenantExists(_)) => {
                ApiError::new(StatusCode::CONFLICT, "exists", error.to_string())
            }
            PipelineError::Store(StoreError::UnknownMetric(_)) => {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", error.to_string())
            }
            PipelineError::ReplayRunning(_) => {
                ApiError::new(StatusCode::CONFLICT, "replay_running", error.to_string())
            }
            PipelineError::UnknownStream { .. } => {
                ApiError::bad_request("unknown_stream", error.to_string())
            }
            PipelineError::StreamInUse { .. } => {
                ApiError::new(StatusCode::CONFLICT, "stream_in_use", error.to_string())
            }
            PipelineError::StreamReplay(_) => ApiError::new(
                StatusCode::CONFLICT,
                "stream_not_replayed",
                error.to_string(),
            ),
            _ => {
                let status = match error.class() {
                    ErrorClass::User => StatusCode::BAD_REQUEST,
                    ErrorClass::External => StatusCode::SERVICE_UNAVAILABLE,
                    ErrorClass::Internal => StatusCode::INTERNAL_SERVER_ERROR,
                };
                tracing::warn!(%error, "admin request failed");
                ApiError::new(status, "failed", error.to_string())
            }
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        ApiError::from(PipelineError::Store(error))
    }
}
