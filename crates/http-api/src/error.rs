//! HTTP errors: a JSON body with a clear message for 4xx; 5xx are logged with what failed and
//! its cause, and answered without internals.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use protocol::rest::ErrorBody;
use protocol::{ErrorCode, InvalidInput};

/// Everything a handler can fail with.
#[derive(Debug)]
pub enum AppError {
    /// 400 (or 413 for a body too large): the request is wrong; `message` says how.
    BadRequest { code: ErrorCode, message: String },
    /// 401: no valid token; the text says what was wrong with it (never what it was).
    Unauthorized(String),
    /// 403: the session is another user's, or the page's origin is not allowed.
    Forbidden(String),
    /// 409: the session already streams an answer.
    Busy(String),
    /// 429: too many chats (or sockets) for this user; `Retry-After` says when to come back.
    RateLimited {
        retry_after_secs: u64,
        message: String,
    },
    /// 503: a store the request needs cannot be reached. `what` names it in the log
    /// (`Redis`, `the database`); the client is only told to try again.
    Unavailable { what: &'static str, cause: String },
    /// 500: something that should not happen (a bug, corrupt data). Logged, never shown.
    Internal(String),
    /// 503: no AI node took the chat; the text says why.
    AiUnavailable(String),
    /// An AI node refused the chat (4xx): its status and body, passed on as they are.
    Refused { status: StatusCode, body: ErrorBody },
}

impl From<InvalidInput> for AppError {
    fn from(e: InvalidInput) -> Self {
        AppError::BadRequest {
            code: e.code(),
            message: e.to_string(),
        }
    }
}

impl From<auth::AuthError> for AppError {
    fn from(e: auth::AuthError) -> Self {
        AppError::Unauthorized(e.to_string())
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

impl From<QueryRejection> for AppError {
    fn from(e: QueryRejection) -> Self {
        AppError::BadRequest {
            code: ErrorCode::BadRequest,
            message: e.body_text(),
        }
    }
}

impl From<redis_state::Error> for AppError {
    fn from(e: redis_state::Error) -> Self {
        match e {
            redis_state::Error::Redis(cause) => AppError::Unavailable {
                what: "Redis",
                cause: cause.to_string(),
            },
            other => AppError::Internal(other.to_string()),
        }
    }
}

impl From<store::Error> for AppError {
    fn from(e: store::Error) -> Self {
        match e {
            store::Error::Sql(cause) => AppError::Unavailable {
                what: "the database",
                cause: cause.to_string(),
            },
            other => AppError::Internal(other.to_string()),
        }
    }
}

impl From<history::Error> for AppError {
    fn from(e: history::Error) -> Self {
        match e {
            history::Error::Redis(e) => e.into(),
            history::Error::Sql(e) => e.into(),
        }
    }
}

impl AppError {
    /// The code its body carries.
    pub fn code(&self) -> ErrorCode {
        match self {
            AppError::BadRequest { code, .. } => *code,
            AppError::Unauthorized(_) => ErrorCode::Unauthorized,
            AppError::Forbidden(_) => ErrorCode::Forbidden,
            AppError::Busy(_) => ErrorCode::StreamActive,
            AppError::RateLimited { .. } => ErrorCode::RateLimited,
            AppError::Unavailable { .. } => ErrorCode::Unavailable,
            AppError::Internal(_) => ErrorCode::Internal,
            AppError::AiUnavailable(_) => ErrorCode::AiUnavailable,
            AppError::Refused { body, .. } => body.code,
        }
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
            AppError::Unauthorized(message) => {
                (StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, message)
            }
            AppError::Forbidden(message) => (StatusCode::FORBIDDEN, ErrorCode::Forbidden, message),
            AppError::Busy(message) => (StatusCode::CONFLICT, ErrorCode::StreamActive, message),
            AppError::RateLimited {
                retry_after_secs,
                message,
            } => {
                let body = Json(ErrorBody {
                    error: message,
                    code: ErrorCode::RateLimited,
                });
                let mut response = (StatusCode::TOO_MANY_REQUESTS, body).into_response();
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
                return response;
            }
            AppError::Unavailable { what, cause } => {
                tracing::error!(%cause, "request failed: {what} unavailable");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::Unavailable,
                    "storage is unavailable; try again".to_owned(),
                )
            }
            AppError::Internal(cause) => {
                tracing::error!(%cause, "request failed: internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    ErrorCode::Internal,
                    "internal error".to_owned(),
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
            AppError::Refused { status, body } => return (status, Json(body)).into_response(),
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
