//! The AI node's HTTP API (the seed's FastAPI endpoints).

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use http_api::{AppError, Valid, conversation_routes, health_routes};
use protocol::rest::{ChatAccepted, ChatRequest, ServiceInfo};
use tower_http::trace::TraceLayer;

use crate::state::AppState;
use crate::streamer::StartError;

/// Largest request body accepted: a 5,000-character message in JSON fits many times over.
const BODY_LIMIT: usize = 64 * 1024;

/// The AI node's routes.
pub fn router(app: AppState) -> Router {
    Router::new()
        .route("/", get(info))
        .route("/chat", post(chat))
        .merge(health_routes())
        .merge(conversation_routes())
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(TraceLayer::new_for_http())
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
        ]
        .map(String::from)
        .to_vec(),
    })
}

/// Starts the answer and answers 202 at once.
async fn chat(
    State(app): State<AppState>,
    Valid(request): Valid<ChatRequest>,
) -> Result<(StatusCode, Json<ChatAccepted>), AppError> {
    match app.streamer.start(request).await {
        Ok(accepted) => Ok((StatusCode::ACCEPTED, Json(accepted))),
        Err(e @ StartError::Busy { .. }) => Err(AppError::Busy(e.to_string())),
        Err(StartError::Redis(e)) => Err(e.into()),
        Err(StartError::History(e)) => Err(e.into()),
    }
}
