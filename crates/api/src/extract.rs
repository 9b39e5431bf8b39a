//! Path and query extractors whose rejections are the API's one error shape (axum's own
//! answer in plain text otherwise), with the message bounded so a hostile value is not echoed
//! at length (JSON bodies too: `routes::body`).

use axum::extract::{FromRequestParts, Path, Query};
use http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Longest rejection message sent back (it may quote the offending value).
const MAX_MESSAGE: usize = 200;

pub(crate) fn bounded(text: String) -> String {
    match text.char_indices().nth(MAX_MESSAGE) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// Text a caller sends that the store will look up: at most `max` bytes and no control
/// characters (no stored name holds one, and PostgreSQL refuses NUL outright).
pub(crate) fn plain_text(value: &str, what: &str, max: usize) -> Result<(), ApiError> {
    if value.len() > max || value.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!(
            "{what} is at most {max} bytes, without control characters"
        )));
    }
    Ok(())
}

/// `Path<T>` answering a bad segment with `400 bad_request`.
#[derive(Debug)]
pub(crate) struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(value)| ApiPath(value))
            .map_err(|e| ApiError::bad_request(bounded(e.body_text())))
    }
}

/// `Query<T>` answering a bad query string with `400 bad_request`.
#[derive(Debug)]
pub(crate) struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(value)| ApiQuery(value))
            .map_err(|e| ApiError::bad_request(bounded(e.body_text())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_messages_are_cut() {
        assert_eq!(bounded("short".into()), "short");
        let long = "x".repeat(10_000);
        assert_eq!(bounded(long).chars().count(), MAX_MESSAGE + 1);
    }
}
