//! The gateway's HTTP surface.

use auth::AuthMode;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::StreamExt;
use http_api::{
    AppError, Caller, Valid, conversation_routes, cors_layer, forbidden, health_routes,
    http_metrics_layer, metrics_routes, trace_layer,
};
use protocol::rest::{ChatAccepted, ChatRequest, ErrorBody};
use protocol::{ErrorCode, SessionId, UserId};
use runtime::trace::TraceParent;
use serde::Deserialize;
use tower_http::services::{ServeDir, ServeFile};
use tracing::{Instrument, debug};

use crate::config::WS_HARD_LIMIT;
use crate::socket::{self, Backend, Identity, ReadError, TooManySockets};
use crate::state::AppState;

/// Largest REST body accepted.
const BODY_LIMIT: usize = 64 * 1024;
/// WebSocket buffers: small buffers keep an idle socket cheap (the defaults cost ~150 KB each).
/// The read buffer is allocated whole when the socket opens, so it is sized for what clients
/// send (chat, cancel and ping frames of a few hundred bytes; a larger frame is read in several
/// steps); the write buffer grows only as frames are written.
const WS_READ_BUFFER: usize = 1024;
const WS_WRITE_BUFFER: usize = 4 * 1024;

/// The gateway's routes; everything else is the browser app from `STATIC_DIR`.
pub fn router(app: AppState) -> Router {
    let static_dir = std::path::Path::new(&app.config.service.static_dir);
    // Unknown paths get the app's index.html, so client-side routes survive a reload.
    let app_files =
        ServeDir::new(static_dir).fallback(ServeFile::new(static_dir.join("index.html")));
    let cors = cors_layer(app.core.auth.allowed_origins());
    Router::new()
        .route("/ws/chat", get(ws_chat))
        .route("/api/chat", post(chat))
        .nest("/api", conversation_routes())
        .merge(health_routes())
        .merge(metrics_routes())
        .fallback_service(app_files)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(cors)
        .layer(trace_layer())
        .layer(http_metrics_layer())
        .with_state(app)
}

/// The query of `GET /ws/chat`, as it arrives; read by name.
#[derive(Deserialize)]
struct WsParams {
    session_id: Option<String>,
    user_id: Option<String>,
    token: Option<String>,
}

/// `GET /ws/chat?session_id=..&user_id=..&token=..`: checks everything that can be checked
/// before the upgrade, each refusal an HTTP answer with a JSON body: the ids (400), the page's
/// origin (403), the token (401), the session's owner (403), the user's sockets (429). Without
/// a token on a node that requires one, the socket must authenticate with its first frame.
async fn ws_chat(
    State(app): State<AppState>,
    headers: HeaderMap,
    Query(params): Query<WsParams>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, AppError> {
    if app.health.draining() {
        // NGINX passes a 503 to the next node (`proxy_next_upstream http_503`).
        return Err(AppError::Refused {
            status: StatusCode::SERVICE_UNAVAILABLE,
            body: ErrorBody {
                error: "this node is restarting; connect again".into(),
                code: ErrorCode::Unavailable,
            },
        });
    }
    let Some(raw_session) = params.session_id else {
        return Err(AppError::BadRequest {
            code: ErrorCode::InvalidId,
            message: "session_id is required".into(),
        });
    };
    let session = SessionId::parse(raw_session)?;
    let claimed = params.user_id.map(UserId::parse).transpose()?;
    check_origin(&app, &headers)?;
    let backend = &app.sockets.backend;
    let user = match params.token.filter(|t| !t.is_empty()) {
        Some(token) => Some(backend.verify(&token)?),
        None if app.core.auth.mode() == AuthMode::Required => None,
        None => Some(claimed.unwrap_or_default()),
    };
    let identity = match user {
        Some(user) => {
            if !backend.may_use(&user, &session).await? {
                return Err(forbidden(&session));
            }
            let pass =
                backend
                    .admit(&user)
                    .await
                    .map_err(|TooManySockets| AppError::RateLimited {
                        retry_after_secs: 60,
                        message: "too many open sockets for this user".into(),
                    })?;
            Identity::Known { user, pass }
        }
        None => Identity::AwaitAuth,
    };
    let upgrade = match upgrade {
        Ok(u) => u,
        Err(rejection) => return Ok(rejection.into_response()),
    };
    let (env, tasks) = (app.sockets.clone(), app.socket_tasks.clone());
    Ok(upgrade
        .read_buffer_size(WS_READ_BUFFER)
        .write_buffer_size(WS_WRITE_BUFFER)
        .max_message_size(WS_HARD_LIMIT)
        .max_frame_size(WS_HARD_LIMIT)
        .on_upgrade(move |ws| {
            let (sink, stream) = ws.split();
            let stream = stream.map(|item| item.map_err(read_error));
            tasks.track_future(socket::serve(env, sink, stream, session, identity))
        }))
}

/// A browser page may open a socket only from an allowed origin (or the node's own).
fn check_origin(app: &AppState, headers: &HeaderMap) -> Result<(), AppError> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        // Not a browser: nothing for CORS to protect.
        return Ok(());
    };
    let origin = origin.to_str().unwrap_or("null");
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    if app.core.auth.allowed_origins().allows(origin, host) {
        Ok(())
    } else {
        Err(AppError::Forbidden(format!(
            "origin {origin} is not allowed"
        )))
    }
}

/// Tells a frame above the hard limit (it gets a 1009) from a broken connection.
fn read_error(error: axum::Error) -> ReadError {
    let inner = error.into_inner();
    match inner.downcast_ref::<tungstenite::Error>() {
        Some(tungstenite::Error::Capacity(_)) => ReadError::TooBig,
        _ => ReadError::Broken(inner.to_string()),
    }
}

/// `POST /api/chat`: validated on the way in, acted on for the caller (a token's subject wins
/// over the body's `user_id`), then forwarded to an AI node.
/// The chat runs in a span carrying its trace id: the caller's `traceparent`, or a new trace.
async fn chat(
    State(app): State<AppState>,
    headers: HeaderMap,
    caller: Caller,
    Valid(mut request): Valid<ChatRequest>,
) -> Result<(StatusCode, Json<ChatAccepted>), AppError> {
    request.user_id = caller.acting_as(request.user_id);
    let trace = TraceParent::accept(
        headers
            .get(runtime::trace::TRACEPARENT)
            .and_then(|v| v.to_str().ok()),
    );
    let span = runtime::trace::chat_span(&trace);
    let accepted = async {
        debug!(session_id = %request.session_id, "forwarding a chat from REST");
        app.gate.forward(&request, &trace).await
    }
    .instrument(span)
    .await?;
    Ok((StatusCode::ACCEPTED, Json(accepted)))
}
