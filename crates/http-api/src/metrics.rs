//! `GET /metrics` and the HTTP request metrics both binaries record.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum_prometheus::{EndpointLabel, GenericMetricLayer, MakeDefaultHandle, MetricLayerBuilder};

/// `GET /metrics`: the process's metrics in the Prometheus text format.
pub fn metrics_routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    Router::new().route("/metrics", get(metrics))
}

async fn metrics() -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        runtime::metrics::render(),
    )
}

/// The recorder `axum-prometheus` records into: the process's own (`runtime::metrics`), which
/// the node installs before it serves.
#[derive(Default)]
pub struct ProcessRecorder;

impl MakeDefaultHandle for ProcessRecorder {
    type Out = ();

    fn make_default_handle(self) -> Self::Out {}
}

/// `axum-prometheus`'s layer: `axum_http_requests_total`, `axum_http_requests_duration_seconds`
/// and `axum_http_requests_pending`, by method, route template and status. A path no route
/// matches (the browser app's files, unknown paths) is labelled `fallback`, so labels stay
/// bounded whatever paths clients make up.
pub fn http_metrics_layer() -> GenericMetricLayer<'static, (), ProcessRecorder> {
    MetricLayerBuilder::<(), ProcessRecorder, _>::new()
        .with_endpoint_label_type(EndpointLabel::MatchedPathWithFallbackFn(|_| {
            "fallback".to_owned()
        }))
        .build()
}
