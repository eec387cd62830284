//! The conversation endpoints both binaries serve: read and delete history, list a user's
//! sessions, cancel an answer.

use std::collections::HashMap;

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRef, Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use history::HistoryReader;
use protocol::rest::{
    CancelOutcome, CancelRequest, CancelResponse, DEFAULT_USER_ID, DeletedResponse,
    HistoryResponse, SessionsResponse,
};
use protocol::{MessageId, SessionId, UserId};
use redis_state::ChatState;

use crate::AppError;

/// Most sessions `GET /sessions` lists.
const SESSIONS_LIMIT: u32 = 100;

/// `GET`/`DELETE /history/{session_id}`, `GET /sessions?user_id=..` and `POST /cancel`, for
/// any router state that holds a [`ChatState`] and a [`HistoryReader`].
pub fn conversation_routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    ChatState: FromRef<S>,
    HistoryReader: FromRef<S>,
{
    Router::new()
        .route("/history/{session_id}", get(history).delete(delete_history))
        .route("/sessions", get(sessions))
        .route("/cancel", post(cancel))
}

async fn history(
    State(reader): State<HistoryReader>,
    Path(session_id): Path<String>,
) -> Result<Json<HistoryResponse>, AppError> {
    let session = SessionId::parse(session_id)?;
    let conversation = reader.conversation(&session).await?;
    let (messages, streaming) = (conversation.messages, conversation.streaming);
    Ok(Json(HistoryResponse {
        session_id: session.into_string(),
        count: messages.len(),
        messages,
        streaming,
    }))
}

async fn delete_history(
    State(reader): State<HistoryReader>,
    Path(session_id): Path<String>,
) -> Result<Json<DeletedResponse>, AppError> {
    let session = SessionId::parse(session_id)?;
    let deleted = reader.delete(&session).await?;
    Ok(Json(DeletedResponse {
        status: "deleted".into(),
        session_id: session.into_string(),
        deleted,
    }))
}

/// A user's sessions, most recent first, for a sidebar.
async fn sessions(
    State(reader): State<HistoryReader>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<SessionsResponse>, AppError> {
    let user = UserId::parse(
        params
            .get("user_id")
            .map_or(DEFAULT_USER_ID, String::as_str),
    )?;
    let sessions = reader
        .store()
        .sessions(user.as_str(), SESSIONS_LIMIT)
        .await
        .map_err(history::Error::from)?;
    Ok(Json(SessionsResponse {
        user_id: user.into_string(),
        sessions,
    }))
}

async fn cancel(
    State(state): State<ChatState>,
    body: Result<Json<CancelRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<CancelResponse>), AppError> {
    let Json(request) = body?;
    let session = SessionId::parse(request.session_id)?;
    let message = MessageId::parse(request.message_id)?;
    let outcome = state.cancel(&session, &message).await?;
    let status = match outcome {
        CancelOutcome::NotFound => StatusCode::NOT_FOUND,
        CancelOutcome::Cancelling | CancelOutcome::AlreadyFinished => StatusCode::OK,
    };
    Ok((
        status,
        Json(CancelResponse {
            status: outcome,
            session_id: session.into_string(),
            message_id: message.into_string(),
        }),
    ))
}
