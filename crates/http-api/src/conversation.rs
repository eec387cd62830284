//! The conversation endpoints both binaries serve: read and delete history, list a user's
//! sessions, cancel an answer.

use axum::extract::{FromRef, Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use node::Core;
use protocol::rest::{
    CancelOutcome, CancelRequest, CancelResponse, DeletedResponse, HistoryResponse,
    SessionsResponse,
};
use protocol::{SessionId, UserId};
use serde::Deserialize;

use crate::{AppError, Valid};

/// Most sessions `GET /sessions` lists.
const SESSIONS_LIMIT: u32 = 100;

/// `GET`/`DELETE /history/{session_id}`, `GET /sessions?user_id=..` and `POST /cancel`, for
/// any router state that holds the node's [`Core`].
pub fn conversation_routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Core: FromRef<S>,
{
    Router::new()
        .route("/history/{session_id}", get(history).delete(delete_history))
        .route("/sessions", get(sessions))
        .route("/cancel", post(cancel))
}

async fn history(
    State(core): State<Core>,
    Path(session_id): Path<String>,
) -> Result<Json<HistoryResponse>, AppError> {
    let session = SessionId::parse(session_id)?;
    let conversation = core.history.conversation(&session).await?;
    let (messages, streaming) = (conversation.messages, conversation.streaming);
    Ok(Json(HistoryResponse {
        session_id: session,
        count: messages.len(),
        messages,
        streaming,
    }))
}

async fn delete_history(
    State(core): State<Core>,
    Path(session_id): Path<String>,
) -> Result<Json<DeletedResponse>, AppError> {
    let session = SessionId::parse(session_id)?;
    let deleted = core.history.delete(&session).await?;
    Ok(Json(DeletedResponse {
        status: "deleted".into(),
        session_id: session,
        deleted,
    }))
}

/// `?user_id=`, as it arrives.
#[derive(Deserialize)]
struct SessionsQuery {
    user_id: Option<String>,
}

/// A user's sessions, most recent first, for a sidebar.
async fn sessions(
    State(core): State<Core>,
    query: Result<Query<SessionsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<SessionsResponse>, AppError> {
    let Query(query) = query?;
    let user = match query.user_id {
        Some(raw) => UserId::parse(raw)?,
        None => UserId::default(),
    };
    let sessions = core.history.sessions(&user, SESSIONS_LIMIT).await?;
    Ok(Json(SessionsResponse {
        user_id: user,
        sessions,
    }))
}

async fn cancel(
    State(core): State<Core>,
    Valid(request): Valid<CancelRequest>,
) -> Result<(StatusCode, Json<CancelResponse>), AppError> {
    let outcome = core
        .state
        .cancel(&request.session_id, &request.message_id)
        .await?;
    let status = match outcome {
        CancelOutcome::NotFound => StatusCode::NOT_FOUND,
        CancelOutcome::Cancelling | CancelOutcome::AlreadyFinished => StatusCode::OK,
    };
    Ok((
        status,
        Json(CancelResponse {
            status: outcome,
            session_id: request.session_id,
            message_id: request.message_id,
        }),
    ))
}
