//! [`Valid`]: a JSON request body, validated into its typed form on the way in.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, header};
use protocol::validate::{MAX_JSON_DEPTH, json_depth_within};
use protocol::{ErrorCode, Validated};

use crate::AppError;

/// A body of type `T`, read as `T::Raw` and then validated, so that every refusal keeps its own
/// error code: `INVALID_JSON` for broken (or too deeply nested) JSON, `BAD_REQUEST` for a
/// missing JSON content type or missing or ill-typed fields, `TOO_LARGE` past the body limit,
/// `INVALID_ID` / `INVALID_MESSAGE` for values outside the rules.
#[derive(Debug)]
pub struct Valid<T>(pub T);

impl<S, T> FromRequest<S> for Valid<T>
where
    S: Send + Sync,
    T: Validated,
{
    type Rejection = AppError;

    async fn from_request(request: Request, state: &S) -> Result<Self, AppError> {
        if !json_content_type(request.headers()) {
            return Err(AppError::BadRequest {
                code: ErrorCode::BadRequest,
                message: "expected a body with Content-Type: application/json".into(),
            });
        }
        let bytes =
            Bytes::from_request(request, state)
                .await
                .map_err(|e| AppError::BadRequest {
                    code: ErrorCode::TooLarge,
                    message: e.body_text(),
                })?;
        if !json_depth_within(&bytes, MAX_JSON_DEPTH) {
            return Err(AppError::BadRequest {
                code: ErrorCode::InvalidJson,
                message: format!("JSON nested deeper than {MAX_JSON_DEPTH} levels"),
            });
        }
        let Json(raw) = Json::<T::Raw>::from_bytes(&bytes)?;
        Ok(Valid(T::validate(raw)?))
    }
}

/// `application/json`, or a `+json` type.
fn json_content_type(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|mime| mime.trim().to_ascii_lowercase())
        .is_some_and(|mime| mime == "application/json" || mime.ends_with("+json"))
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::Body;
    use axum::http::{Request, StatusCode, header};
    use axum::routing::post;
    use protocol::rest::CancelRequest;
    use tower::ServiceExt;

    use super::*;

    async fn echo(Valid(request): Valid<CancelRequest>) -> String {
        request.message_id.into_string()
    }

    async fn post_body(body: &'static str) -> (StatusCode, serde_json::Value) {
        let response = Router::new()
            .route("/", post(echo))
            .oneshot(
                Request::post("/")
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(body))
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
        )
    }

    /// Each kind of bad body gets 400 with its own code; a good one reaches the handler typed.
    #[tokio::test]
    async fn each_kind_of_bad_body_keeps_its_code() {
        for (body, code) in [
            ("{not json", "INVALID_JSON"),
            (r#"{"session_id":"s"}"#, "BAD_REQUEST"),
            (r#"{"session_id":7,"message_id":"m"}"#, "BAD_REQUEST"),
            (r#"{"session_id":"a:b","message_id":"m"}"#, "INVALID_ID"),
            (r#"{"session_id":"s","message_id":"*"}"#, "INVALID_ID"),
            (
                r#"{"session_id":"s","message_id":"m","x":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}"#,
                "INVALID_JSON",
            ),
        ] {
            let (status, error) = post_body(body).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
            assert_eq!(error["code"], code, "{body}: {error}");
        }
        let response = Router::new()
            .route("/", post(echo))
            .oneshot(
                Request::post("/")
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(r#"{"session_id":"s","message_id":"m-1"}"#))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
}
