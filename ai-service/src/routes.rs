//! The AI node's HTTP API (the seed's FastAPI endpoints).

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use http_api::{
    AppError, Caller, Valid, conversation_routes, cors_layer, forbidden, health_routes,
    http_metrics_layer, metrics_routes, trace_layer,
};
use protocol::rest::{ChatAccepted, ChatRequest, ServiceInfo};
use runtime::trace::TraceParent;
use tracing::Instrument;

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
        .merge(metrics_routes())
        .merge(conversation_routes())
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(cors)
        .layer(trace_layer())
        .layer(http_metrics_layer())
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
            "GET /health/live",
            "GET /health/ready",
            "GET /metrics",
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
    headers: HeaderMap,
    caller: Caller,
    Valid(mut request): Valid<ChatRequest>,
) -> Result<(StatusCode, Json<ChatAccepted>), AppError> {
    request.user_id = caller.acting_as(request.user_id);
    // The gateway's trace (or the caller's, or a new one): the answer's lines carry its id.
    let trace = TraceParent::accept(
        headers
            .get(runtime::trace::TRACEPARENT)
            .and_then(|v| v.to_str().ok()),
    );
    let outcome = start(&app, request, caller.enforces_ownership())
        .instrument(runtime::trace::chat_span(&trace))
        .await;
    let stats = app.streamer.stats();
    match &outcome {
        Ok(_) => stats.chat("accepted"),
        Err(refused) => stats.chat(refused.code().as_str()),
    }
    outcome.map(|accepted| (StatusCode::ACCEPTED, Json(accepted)))
}

async fn start(
    app: &AppState,
    request: ChatRequest,
    enforce_owner: bool,
) -> Result<ChatAccepted, AppError> {
    app.chat_limit.take(&request.user_id).await?;
    let session = request.session_id.clone();
    app.streamer
        .start(request, enforce_owner)
        .await
        .map_err(|e| match e {
            StartError::Forbidden => forbidden(&session),
            e @ StartError::Busy { .. } => AppError::Busy(e.to_string()),
            StartError::Redis(e) => e.into(),
            StartError::History(e) => e.into(),
        })
}
