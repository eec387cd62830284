//! The conversation endpoints both binaries serve: read and delete history, cancel an answer.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRef, Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use protocol::rest::{
    CancelOutcome, CancelRequest, CancelResponse, DeletedResponse, HistoryResponse,
};
use protocol::{MessageId, SessionId};
use redis_state::ChatState;

use crate::AppError;

/// `GET`/`DELETE /history/{session_id}` and `POST /cancel`, for any router state that holds a
/// [`ChatState`].
pub fn conversation_routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    ChatState: FromRef<S>,
{
    Router::new()
        .route("/history/{session_id}", get(history).delete(delete_history))
        .route("/cancel", post(cancel))
}

async fn history(
    State(state): State<ChatState>,
    Path(session_id): Path<String>,
) -> Result<Json<HistoryResponse>, AppError> {
    let session = SessionId::parse(session_id)?;
    let (messages, streaming) = state.snapshot(&session).await?.into_messages();
    Ok(Json(HistoryResponse {
        session_id: session.into_string(),
        count: messages.len(),
        messages,
        streaming,
    }))
}

async fn delete_history(
    State(state): State<ChatState>,
    Path(session_id): Path<String>,
) -> Result<Json<DeletedResponse>, AppError> {
    let session = SessionId::parse(session_id)?;
    let deleted = state.delete_history(&session).await?;
    Ok(Json(DeletedResponse {
        status: "deleted".into(),
        session_id: session.into_string(),
        deleted,
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
