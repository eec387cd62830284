//! The AI node's HTTP API (the seed's FastAPI endpoints).

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use http_api::{
    AppError, Caller, Valid, conversation_routes, cors_layer, forbidden, health_routes, trace_layer,
};
use protocol::rest::{ChatAccepted, ChatRequest, ServiceInfo};

use crate::state::AppState;
use crate::streamer::StartError;

/// Largest request body accepted: a 5,000-character message in JSON fits many times over.
const BODY_LIMIT: usize = 64 * 1024;

/// The AI node's routes.
pub fn router(app: AppState) -> Router {
    let cors = cors_layer(app.core.auth.allowed_origins());
    Router::new()
        .route("/", get(info))
        .route("/chat", post(chat))
        .merge(health_routes())
        .merge(conversation_routes())
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(cors)
        .layer(trace_layer())
        .with_state(app)
}

async fn info(State(app): State<AppState>) -> Json<ServiceInfo> {
    Json(ServiceInfo {
        service: "ai-service".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        node_id: app.core.node_id.to_string(),
        endpoints: [
            "GET /",
            "GET /health",
            "POST /chat",
            "GET /history/{session_id}",
            "DELETE /history/{session_id}",
            "GET /sessions",
            "POST /cancel",
            "GET /me",
        ]
        .map(String::from)
        .to_vec(),
    })
}

/// Starts the answer and answers 202 at once (429 when the user is over
/// `CHAT_RATE_LIMIT_PER_MINUTE`). With a token, the chat is its subject's,
/// whatever the body's `user_id` says; in required mode only the session's owner may chat in
/// it.
async fn chat(
    State(app): State<AppState>,
    caller: Caller,
    Valid(mut request): Valid<ChatRequest>,
) -> Result<(StatusCode, Json<ChatAccepted>), AppError> {
    request.user_id = caller.acting_as(request.user_id);
    app.chat_limit.take(&request.user_id).await?;
    let session = request.session_id.clone();
    match app
        .streamer
        .start(request, caller.enforces_ownership())
        .await
    {
        Ok(accepted) => Ok((StatusCode::ACCEPTED, Json(accepted))),
        Err(StartError::Forbidden) => Err(forbidden(&session)),
        Err(e @ StartError::Busy { .. }) => Err(AppError::Busy(e.to_string())),
        Err(StartError::Redis(e)) => Err(e.into()),
        Err(StartError::History(e)) => Err(e.into()),
    }
}
