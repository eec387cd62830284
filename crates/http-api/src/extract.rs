//! [`Valid`]: a JSON request body, validated into its typed form on the way in.

use axum::Json;
use axum::extract::{FromRequest, Request};
use protocol::Validated;

use crate::AppError;

/// A body of type `T`, read as `T::Raw` and then validated, so that every refusal keeps its own
/// error code: `INVALID_JSON` for broken JSON, `BAD_REQUEST` for missing or ill-typed fields,
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
        let Json(raw) = Json::<T::Raw>::from_request(request, state).await?;
        Ok(Valid(T::validate(raw)?))
    }
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
