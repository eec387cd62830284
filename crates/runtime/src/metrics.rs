//! The process's metrics recorder: the `metrics` crate's facade, exported in the Prometheus
//! text format by `metrics-exporter-prometheus`.
//!
//! One recorder per process, installed by the first [`install`] (the binaries call it before
//! anything records; in-process test stacks call it when a node starts). Series that belong to
//! a node carry a `node_id` label of their own (see [`node_label`]), so several nodes in one
//! process count apart; a binary also sets `node_id` as a global label, which covers the series
//! recorded by libraries (HTTP requests). Labels are bounded: node ids, route templates,
//! statuses, outcomes; never a session or message id.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::Label;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Buckets of every histogram whose name ends in `_seconds`: half a millisecond to two
/// minutes (Redis calls sit at the bottom, whole answers at the top).
pub const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 120.0,
];

/// How often histograms are drained into their buckets between scrapes.
const UPKEEP: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process's recorder, once; later calls return the same handle. `node_id`, when
/// given to the first call, labels every series that has no `node_id` of its own.
pub fn install(node_id: Option<&str>) -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let mut builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
            .expect("the buckets are not empty");
        if let Some(node_id) = node_id {
            builder = builder.add_global_label("node_id", node_id);
        }
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics shows only ours");
        }
        let upkeep = handle.clone();
        let spawned = std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(UPKEEP);
                    upkeep.run_upkeep();
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(cause = %e, "no metrics upkeep thread; histograms drain at scrapes");
        }
        handle
    })
}

/// The process's metrics in the Prometheus text exposition format (installing the recorder if
/// nobody has).
pub fn render() -> String {
    install(None).render()
}

/// The `node_id` label of a node's own series.
pub fn node_label(node_id: &str) -> Label {
    Label::new("node_id", node_id.to_owned())
}
