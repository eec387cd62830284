//! The layers both binaries put around their routes.

use auth::AllowedOrigins;
use axum::body::Body;
use axum::http::{HeaderValue, Method, Request, header};
use tower_http::classify::{ServerErrorsAsFailures, SharedClassifier};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::trace::{MakeSpan, TraceLayer};
use tracing::Span;

/// Request spans with the method and the path, never the query string: `?token=` carries a
/// secret.
#[derive(Debug, Clone, Copy)]
pub struct PathOnlySpan;

impl MakeSpan<Body> for PathOnlySpan {
    fn make_span(&mut self, request: &Request<Body>) -> Span {
        tracing::debug_span!("request", method = %request.method(), path = %request.uri().path())
    }
}

/// `tower-http`'s request tracing, with spans that leave query strings out.
pub fn trace_layer() -> TraceLayer<SharedClassifier<ServerErrorsAsFailures>, PathOnlySpan> {
    TraceLayer::new_for_http().make_span_with(PathOnlySpan)
}

/// CORS for the REST API: the allowed origins may call it with a token; `Retry-After` is
/// readable.
pub fn cors_layer(origins: &AllowedOrigins) -> CorsLayer {
    let allow = match origins {
        AllowedOrigins::Any => AllowOrigin::any(),
        AllowedOrigins::List(list) => AllowOrigin::list(
            list.iter()
                .filter_map(|origin| HeaderValue::from_str(origin).ok()),
        ),
    };
    CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([Method::GET, Method::POST, Method::DELETE])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .expose_headers([header::RETRY_AFTER])
}
