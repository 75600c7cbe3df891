//! Keys in `Authorization: Bearer KEY` headers.

use crate::error::ApiError;
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;

/// The bearer token of a request.
pub fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    let value = headers.get(AUTHORIZATION).ok_or_else(|| {
        ApiError::unauthorized("missing key: send it as Authorization: Bearer KEY")
    })?;
    let text = value.to_str().map_err(|_| {
        ApiError::unauthorized("malformed Authorization header: expected Bearer KEY")
    })?;
    match text.split_once(' ') {
        Some((scheme, key)) if scheme.eq_ignore_ascii_case("bearer") && !key.trim().is_empty() => {
            Ok(key.trim())
        }
        _ => Err(ApiError::unauthorized(
            "malformed Authorization header: expected Bearer KEY",
        )),
    }
}
