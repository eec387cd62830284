//! HTTP errors: a JSON body with a clear message for 4xx; 5xx are logged with their cause and
//! answered without internals.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use protocol::rest::ErrorBody;
use protocol::{ErrorCode, InvalidInput};

/// Everything a handler can fail with.
#[derive(Debug)]
pub enum AppError {
    /// 400 (or 413 for a body too large).
    BadRequest { code: ErrorCode, message: String },
    /// 409: the session already streams an answer.
    Busy(String),
    /// 503: Redis cannot be reached.
    Unavailable(String),
    /// 503: no AI node took the request; the text says why.
    AiUnavailable(String),
}

impl From<InvalidInput> for AppError {
    fn from(e: InvalidInput) -> Self {
        let code = match e {
            InvalidInput::Id { .. } => ErrorCode::InvalidId,
            _ => ErrorCode::InvalidMessage,
        };
        AppError::BadRequest {
            code,
            message: e.to_string(),
        }
    }
}

impl From<JsonRejection> for AppError {
    fn from(e: JsonRejection) -> Self {
        let code = match &e {
            JsonRejection::JsonSyntaxError(_) => ErrorCode::InvalidJson,
            JsonRejection::BytesRejection(_) => ErrorCode::TooLarge,
            _ => ErrorCode::BadRequest,
        };
        AppError::BadRequest {
            code,
            message: e.body_text(),
        }
    }
}

impl From<history::Error> for AppError {
    fn from(e: history::Error) -> Self {
        AppError::Unavailable(e.to_string())
    }
}

impl From<redis_state::Error> for AppError {
    fn from(e: redis_state::Error) -> Self {
        AppError::Unavailable(e.to_string())
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, code, message) = match self {
            AppError::BadRequest { code, message } => {
                let status = if code == ErrorCode::TooLarge {
                    StatusCode::PAYLOAD_TOO_LARGE
                } else {
                    StatusCode::BAD_REQUEST
                };
                (status, code, message)
            }
            AppError::Busy(message) => (StatusCode::CONFLICT, ErrorCode::StreamActive, message),
            AppError::Unavailable(cause) => {
                tracing::error!(%cause, "request failed: Redis unavailable");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::Unavailable,
                    "storage is unavailable; try again".to_owned(),
                )
            }
            AppError::AiUnavailable(message) => {
                tracing::error!(cause = %message, "request failed: no AI node available");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::AiUnavailable,
                    message,
                )
            }
        };
        (
            status,
            Json(ErrorBody {
                error: message,
                code,
            }),
        )
            .into_response()
    }
}
