//! The AI node's HTTP API (the seed's FastAPI endpoints).

use std::collections::BTreeMap;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRef, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use history::HistoryReader;
use http_api::{AppError, conversation_routes};
use protocol::rest::{ChatAccepted, ChatRequest, HealthResponse, ServiceInfo};
use protocol::{SessionId, UserId, validate};
use redis_state::ChatState;
use tower_http::trace::TraceLayer;

use crate::streamer::{StartError, Streamer};

/// Largest request body accepted: a 5,000-character message in JSON fits many times over.
const BODY_LIMIT: usize = 64 * 1024;

/// Handles shared by every request.
#[derive(Clone)]
pub struct AppState {
    pub state: ChatState,
    pub history: HistoryReader,
    pub streamer: Streamer,
    pub node_id: String,
}

impl FromRef<AppState> for ChatState {
    fn from_ref(app: &AppState) -> ChatState {
        app.state.clone()
    }
}

impl FromRef<AppState> for HistoryReader {
    fn from_ref(app: &AppState) -> HistoryReader {
        app.history.clone()
    }
}

/// The AI node's routes.
pub fn router(app: AppState) -> Router {
    Router::new()
        .route("/", get(info))
        .route("/health", get(health))
        .route("/chat", post(chat))
        .merge(conversation_routes())
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(TraceLayer::new_for_http())
        .with_state(app)
}

async fn info(State(app): State<AppState>) -> Json<ServiceInfo> {
    Json(ServiceInfo {
        service: "ai-service".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        node_id: app.node_id,
        endpoints: [
            "GET /",
            "GET /health",
            "POST /chat",
            "GET /history/{session_id}",
            "DELETE /history/{session_id}",
            "POST /cancel",
        ]
        .map(String::from)
        .to_vec(),
    })
}

async fn health(State(app): State<AppState>) -> (StatusCode, Json<HealthResponse>) {
    let (redis, db) = tokio::join!(app.state.ping(), app.history.store().ping());
    let (redis_up, db_up) = (redis.is_ok(), db.is_ok());
    let components = BTreeMap::from([
        ("redis".to_owned(), up_down(redis_up)),
        ("db".to_owned(), up_down(db_up)),
    ]);
    let (status, text) = if redis_up && db_up {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "degraded")
    };
    (
        status,
        Json(HealthResponse {
            status: text.into(),
            node_id: app.node_id,
            components,
            timestamp: protocol::now_ms(),
        }),
    )
}

fn up_down(up: bool) -> String {
    if up { "up" } else { "down" }.to_owned()
}

/// Validates the chat, starts the answer and answers 202 at once.
async fn chat(
    State(app): State<AppState>,
    body: Result<Json<ChatRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<ChatAccepted>), AppError> {
    let Json(request) = body?;
    let session = SessionId::parse(request.session_id)?;
    let user = UserId::parse(request.user_id)?;
    let text = validate::chat_text(&request.message)?;
    match app.streamer.start(session, user, text).await {
        Ok(accepted) => Ok((StatusCode::ACCEPTED, Json(accepted))),
        Err(e @ StartError::Busy { .. }) => Err(AppError::Busy(e.to_string())),
        Err(StartError::Redis(e)) => Err(e.into()),
        Err(StartError::History(e)) => Err(e.into()),
    }
}
