//! API errors as JSON: `{"error": {"code", "message", …}}` with the right status.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use sluice_core::error::{Classify, ErrorClass};
use sluice_store::{PipelineError, StoreError};

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    extra: serde_json::Map<String, serde_json::Value>,
}

impl ApiError {
    /// An error with a status, a stable code and a message that says what to do.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            extra: serde_json::Map::new(),
        }
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

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = serde_json::Map::new();
        error.insert("code".into(), self.code.into());
        error.insert("message".into(), self.message.into());
        error.extend(self.extra);
        (self.status, axum::Json(json!({ "error": error }))).into_response()
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
            PipelineError::Store(StoreError::UnknownMetric(_)) => {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", error.to_string())
            }
            PipelineError::ReplayRunning(_) => {
                ApiError::new(StatusCode::CONFLICT, "replay_running", error.to_string())
            }
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
