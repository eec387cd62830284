//! `GET /health`: the node's components, 200 when all are up, 503 when any is down.

use axum::extract::{FromRef, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use node::Health;
use protocol::rest::HealthResponse;

/// `GET /health` for any router state that holds the node's [`Health`].
pub fn health_routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Health: FromRef<S>,
{
    Router::new().route("/health", get(health))
}

async fn health(State(health): State<Health>) -> (StatusCode, Json<HealthResponse>) {
    let (healthy, report) = health.report().await;
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(report))
}
