//! Who a request comes from ([`Caller`]), and what they may touch.

use auth::AuthMode;
use axum::extract::{FromRef, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use node::Core;
use protocol::{SessionId, UserId};

use crate::AppError;

/// Who a request comes from: the subject of its `Authorization: Bearer` token; or, on a node
/// in dev mode, nobody in particular when there is no token (the request's own `user_id` is
/// then believed). A token that is there must be valid, in either mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    user: Option<UserId>,
    mode: AuthMode,
}

impl<S> FromRequestParts<S> for Caller
where
    S: Send + Sync,
    Core: FromRef<S>,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AppError> {
        let core = Core::from_ref(state);
        let mode = core.auth.mode();
        let Some(value) = parts.headers.get(AUTHORIZATION) else {
            return match mode {
                AuthMode::Required => Err(AppError::Unauthorized(
                    "a token is required: send Authorization: Bearer <token>".into(),
                )),
                AuthMode::Dev => Ok(Caller { user: None, mode }),
            };
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| {
                AppError::Unauthorized("the Authorization header must be Bearer <token>".into())
            })?;
        let user = core.auth.verify(token)?;
        Ok(Caller {
            user: Some(user),
            mode,
        })
    }
}

impl Caller {
    /// A caller already identified (a socket authenticated by its query or its `auth` frame).
    pub fn new(user: Option<UserId>, mode: AuthMode) -> Self {
        Self { user, mode }
    }

    /// The token's subject, if there was a token.
    pub fn token_user(&self) -> Option<&UserId> {
        self.user.as_ref()
    }

    /// The user the request acts for: the token's subject; without a token (dev mode only),
    /// `claimed`, the request's own `user_id`. A claim never overrides a token.
    pub fn acting_as(&self, claimed: UserId) -> UserId {
        self.user.clone().unwrap_or(claimed)
    }

    /// Whether sessions are guarded by their owner (required mode).
    pub fn enforces_ownership(&self) -> bool {
        self.mode == AuthMode::Required
    }

    /// Refuses `session` when sessions are guarded and it belongs to another user. A session
    /// nobody has chatted in yet is anybody's (there is nothing in it).
    pub async fn may_use(&self, core: &Core, session: &SessionId) -> Result<(), AppError> {
        let Some(user) = self.user.as_ref().filter(|_| self.enforces_ownership()) else {
            return Ok(());
        };
        match core.history.owner(session).await? {
            Some(owner) if owner != *user => Err(forbidden(session)),
            _ => Ok(()),
        }
    }
}

/// The refusal of another user's session. It says no more than that, to anyone.
pub fn forbidden(session: &SessionId) -> AppError {
    AppError::Forbidden(format!("session {session} is not found or not yours"))
}
