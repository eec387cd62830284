//! The gateway's HTTP surface.

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::StreamExt;
use http_api::{AppError, Valid, conversation_routes, health_routes};
use protocol::rest::{ChatAccepted, ChatRequest};
use protocol::{ErrorCode, SessionId, UserId};
use serde::Deserialize;
use tower_http::services::{ServeDir, ServeFile};
use tower_http::trace::TraceLayer;

use crate::config::WS_HARD_LIMIT;
use crate::socket;
use crate::state::AppState;

/// Largest REST body accepted.
const BODY_LIMIT: usize = 64 * 1024;
/// WebSocket buffers: small buffers keep an idle socket cheap (the defaults cost ~150 KB each).
const WS_BUFFER: usize = 4 * 1024;

/// The gateway's routes; everything else is the browser app from `STATIC_DIR`.
pub fn router(app: AppState) -> Router {
    let static_dir = std::path::Path::new(&app.config.service.static_dir);
    // Unknown paths get the app's index.html, so client-side routes survive a reload.
    let app_files =
        ServeDir::new(static_dir).fallback(ServeFile::new(static_dir.join("index.html")));
    Router::new()
        .route("/ws/chat", get(ws_chat))
        .route("/api/chat", post(chat))
        .nest("/api", conversation_routes())
        .merge(health_routes())
        .route("/metrics", get(metrics))
        .fallback_service(app_files)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(TraceLayer::new_for_http())
        .with_state(app)
}

/// The query of `GET /ws/chat`, as it arrives; read by name.
#[derive(Deserialize)]
struct WsParams {
    session_id: Option<String>,
    user_id: Option<String>,
}

/// `GET /ws/chat?session_id=..&user_id=..`: validates the ids by name, then upgrades.
async fn ws_chat(
    State(app): State<AppState>,
    Query(params): Query<WsParams>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, AppError> {
    let Some(raw_session) = params.session_id else {
        return Err(AppError::BadRequest {
            code: ErrorCode::InvalidId,
            message: "session_id is required".into(),
        });
    };
    let session = SessionId::parse(raw_session)?;
    let user = match params.user_id {
        Some(raw) => UserId::parse(raw)?,
        None => UserId::default(),
    };
    let upgrade = match upgrade {
        Ok(u) => u,
        Err(rejection) => return Ok(rejection.into_response()),
    };
    let (env, tasks) = (app.sockets.clone(), app.socket_tasks.clone());
    Ok(upgrade
        .read_buffer_size(WS_BUFFER)
        .write_buffer_size(WS_BUFFER)
        .max_message_size(WS_HARD_LIMIT)
        .max_frame_size(WS_HARD_LIMIT)
        .on_upgrade(move |ws| {
            let (sink, stream) = ws.split();
            tasks.track_future(socket::serve(env, sink, stream, session, user))
        }))
}

/// `POST /api/chat`: validated on the way in, then forwarded to an AI node.
async fn chat(
    State(app): State<AppState>,
    Valid(request): Valid<ChatRequest>,
) -> Result<(StatusCode, Json<ChatAccepted>), AppError> {
    let accepted = app.ai.chat(&request).await?;
    Ok((StatusCode::ACCEPTED, Json(accepted)))
}

/// `GET /metrics`: the node's counters in the Prometheus text format.
async fn metrics(State(app): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.stats()
            .render(&app.core.node_id, &app.core.history.stats),
    )
}
