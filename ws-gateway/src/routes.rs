//! The gateway's HTTP surface.

use std::collections::{BTreeMap, HashMap};

use axum::extract::rejection::JsonRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{DefaultBodyLimit, FromRef, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use history::HistoryReader;
use http_api::{AppError, conversation_routes};
use protocol::rest::{ChatAccepted, ChatRequest, DEFAULT_USER_ID, HealthResponse};
use protocol::{ErrorCode, SessionId, UserId, validate};
use redis_state::ChatState;
use tower_http::services::{ServeDir, ServeFile};
use tower_http::trace::TraceLayer;

use crate::AppState;
use crate::ai_client::ForwardError;
use crate::config::WS_HARD_LIMIT;
use crate::socket;

/// Largest REST body accepted.
const BODY_LIMIT: usize = 64 * 1024;
/// WebSocket buffers: small buffers keep an idle socket cheap (the defaults cost ~150 KB each).
const WS_BUFFER: usize = 4 * 1024;

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

/// The gateway's routes; everything else is the browser app from `STATIC_DIR`.
pub fn router(app: AppState) -> Router {
    let static_dir = std::path::Path::new(&app.config.static_dir);
    // Unknown paths get the app's index.html, so client-side routes survive a reload.
    let app_files =
        ServeDir::new(static_dir).fallback(ServeFile::new(static_dir.join("index.html")));
    Router::new()
        .route("/ws/chat", get(ws_chat))
        .route("/api/chat", post(chat))
        .nest("/api", conversation_routes())
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .fallback_service(app_files)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(TraceLayer::new_for_http())
        .with_state(app)
}

/// `GET /ws/chat?session_id=..&user_id=..`: validates the ids by name, then upgrades.
async fn ws_chat(
    State(app): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let Some(raw_session) = params.get("session_id") else {
        return AppError::BadRequest {
            code: ErrorCode::InvalidId,
            message: "session_id is required".into(),
        }
        .into_response();
    };
    let session = match SessionId::parse(raw_session.as_str()) {
        Ok(s) => s,
        Err(e) => return AppError::from(e).into_response(),
    };
    let user = match UserId::parse(
        params
            .get("user_id")
            .map_or(DEFAULT_USER_ID, String::as_str),
    ) {
        Ok(u) => u,
        Err(e) => return AppError::from(e).into_response(),
    };
    let upgrade = match upgrade {
        Ok(u) => u,
        Err(rejection) => return rejection.into_response(),
    };
    let sockets = app.sockets.clone();
    upgrade
        .read_buffer_size(WS_BUFFER)
        .write_buffer_size(WS_BUFFER)
        .max_message_size(WS_HARD_LIMIT)
        .max_frame_size(WS_HARD_LIMIT)
        .on_upgrade(move |ws| sockets.track_future(socket::serve(ws, app, session, user)))
}

/// `POST /api/chat`: validates, then forwards to an AI node.
async fn chat(
    State(app): State<AppState>,
    body: Result<Json<ChatRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<ChatAccepted>), Response> {
    let Json(request) = body.map_err(|e| AppError::from(e).into_response())?;
    let session = SessionId::parse(request.session_id).map_err(bad)?;
    let user = UserId::parse(request.user_id).map_err(bad)?;
    let text = validate::chat_text(&request.message).map_err(bad)?;
    match app.forward_chat(&session, &user, text.to_owned()).await {
        Ok(accepted) => Ok((StatusCode::ACCEPTED, Json(accepted))),
        Err(ForwardError::Rejected { status, body }) => Err((status, Json(body)).into_response()),
        Err(ForwardError::Unavailable(why)) => Err(AppError::AiUnavailable(why).into_response()),
    }
}

fn bad(e: protocol::InvalidInput) -> Response {
    AppError::from(e).into_response()
}

/// `GET /health`: Redis and the AI nodes. 200 when Redis is up and at least one AI node is.
async fn health(State(app): State<AppState>) -> (StatusCode, Json<HealthResponse>) {
    let (redis, db, ai_up) = tokio::join!(
        app.state.ping(),
        app.history.store().ping(),
        app.ai.healthy_nodes()
    );
    let db_up = db.is_ok();
    let ai_total = app.ai.urls().len();
    let redis_up = redis.is_ok();
    let components = BTreeMap::from([
        ("redis".to_owned(), up_down(redis_up).to_owned()),
        ("db".to_owned(), up_down(db_up).to_owned()),
        (
            "ai".to_owned(),
            format!(
                "{} ({ai_up}/{ai_total} nodes)",
                if ai_up > 0 { "up" } else { "down" }
            ),
        ),
    ]);
    let healthy = redis_up && db_up && ai_up > 0;
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(HealthResponse {
            status: if healthy { "ok" } else { "degraded" }.into(),
            node_id: app.config.node_id.clone(),
            components,
            timestamp: protocol::now_ms(),
        }),
    )
}

fn up_down(up: bool) -> &'static str {
    if up { "up" } else { "down" }
}

/// `GET /metrics`: the node's counters in the Prometheus text format.
async fn metrics(State(app): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.stats.render(&app.config.node_id, &app.history.stats),
    )
}
