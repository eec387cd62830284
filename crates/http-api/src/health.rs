//! `GET /health`, `/health/ready` and `/health/live`.
//!
//! - `/health` and `/health/ready`: the node's components (state and check latency); 200 when
//!   the node can serve, 503 when a critical component is down or the node is draining. Load
//!   balancers and orchestrators route by it.
//! - `/health/live`: 200 while the process answers HTTP at all; checks nothing else, so an
//!   orchestrator restarts a node only when it is stuck, never because Redis is away.

use axum::extract::{FromRef, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use node::Health;
use protocol::rest::HealthResponse;
use serde_json::{Value, json};

/// The health routes for any router state that holds the node's [`Health`].
pub fn health_routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Health: FromRef<S>,
{
    Router::new()
        .route("/health", get(ready))
        .route("/health/ready", get(ready))
        .route("/health/live", get(live))
}

async fn ready(State(health): State<Health>) -> (StatusCode, Json<HealthResponse>) {
    let (serving, report) = health.report().await;
    let status = if serving {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(report))
}

async fn live(State(health): State<Health>) -> Json<Value> {
    Json(json!({
        "status": "alive",
        "node_id": health.node_id(),
        "draining": health.draining(),
    }))
}
