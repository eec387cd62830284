//! The conversation endpoints both binaries serve: read and delete history, list a user's
//! sessions, cancel an answer.

use axum::extract::{FromRef, Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use node::Core;
use protocol::rest::{
    CancelOutcome, CancelRequest, CancelResponse, DeletedResponse, HistoryResponse, MeResponse,
    SessionsResponse,
};
use protocol::{SessionId, UserId};
use serde::Deserialize;

use crate::access::Caller;
use crate::{AppError, Valid};

/// Most sessions `GET /sessions` lists.
const SESSIONS_LIMIT: u32 = 100;

/// `GET`/`DELETE /history/{session_id}`, `GET /sessions?user_id=..`, `POST /cancel` and
/// `GET /me`, for any router state that holds the node's [`Core`]. With `AUTH_MODE=required`
/// each needs a token, and a session is only its owner's.
pub fn conversation_routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Core: FromRef<S>,
{
    Router::new()
        .route("/history/{session_id}", get(history).delete(delete_history))
        .route("/sessions", get(sessions))
        .route("/cancel", post(cancel))
        .route("/me", get(me))
}

async fn history(
    State(core): State<Core>,
    caller: Caller,
    Path(session_id): Path<String>,
) -> Result<Json<HistoryResponse>, AppError> {
    let session = SessionId::parse(session_id)?;
    caller.may_use(&core, &session).await?;
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
    caller: Caller,
    Path(session_id): Path<String>,
) -> Result<Json<DeletedResponse>, AppError> {
    let session = SessionId::parse(session_id)?;
    caller.may_use(&core, &session).await?;
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

/// The caller's sessions, most recent first, for a sidebar. With a token, only its user's
/// (asking for another user's is refused).
async fn sessions(
    State(core): State<Core>,
    caller: Caller,
    query: Result<Query<SessionsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<SessionsResponse>, AppError> {
    let Query(query) = query?;
    let claimed = query.user_id.map(UserId::parse).transpose()?;
    if let (Some(user), Some(claimed)) = (caller.token_user(), &claimed)
        && user != claimed
    {
        return Err(AppError::Forbidden(
            "a token lists its own user's sessions only".into(),
        ));
    }
    let user = caller.acting_as(claimed.unwrap_or_default());
    let sessions = core.history.sessions(&user, SESSIONS_LIMIT).await?;
    Ok(Json(SessionsResponse {
        user_id: user,
        sessions,
    }))
}

async fn cancel(
    State(core): State<Core>,
    caller: Caller,
    Valid(request): Valid<CancelRequest>,
) -> Result<(StatusCode, Json<CancelResponse>), AppError> {
    caller.may_use(&core, &request.session_id).await?;
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

/// Who the node thinks the caller is, and whether it requires tokens: what a client asks first.
async fn me(
    State(core): State<Core>,
    caller: Caller,
    query: Result<Query<SessionsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<MeResponse>, AppError> {
    let Query(query) = query?;
    let claimed = query.user_id.map(UserId::parse).transpose()?;
    Ok(Json(MeResponse {
        user_id: caller.acting_as(claimed.unwrap_or_default()),
        auth_mode: core.auth.mode().as_str().to_owned(),
    }))
}
