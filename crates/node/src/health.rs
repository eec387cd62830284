//! The health report: each component a node depends on is a [`Probe`]; `GET /health` asks them
//! all at once and answers 200 when every one is up, 503 otherwise.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use protocol::rest::HealthResponse;
use redis_state::ChatState;
use store::Store;

/// What a probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeStatus {
    pub up: bool,
    /// Said after `up`/`down` in the report, e.g. `2/3 nodes`.
    pub detail: Option<String>,
}

impl ProbeStatus {
    /// Up or down, with nothing more to say.
    pub fn up_if(up: bool) -> Self {
        Self { up, detail: None }
    }

    /// The report's text: `up`, `down`, or `up (detail)`.
    fn text(&self) -> String {
        let word = if self.up { "up" } else { "down" };
        match &self.detail {
            Some(detail) => format!("{word} ({detail})"),
            None => word.to_owned(),
        }
    }
}

/// One component a node depends on.
pub trait Probe: Send + Sync + 'static {
    /// Its name in the report (`redis`, `db`, `ai`).
    fn name(&self) -> &'static str;

    /// Checks it now. Probes run concurrently; each bounds its own wait.
    fn check(&self) -> BoxFuture<'_, ProbeStatus>;
}

/// A node's health: its id and the probes of what it depends on. Cheap to clone.
#[derive(Clone)]
pub struct Health {
    node_id: Arc<str>,
    probes: Vec<Arc<dyn Probe>>,
}

impl Health {
    /// A report with no components yet.
    pub fn new(node_id: Arc<str>) -> Self {
        Self {
            node_id,
            probes: Vec::new(),
        }
    }

    /// Adds a component.
    pub fn with(mut self, probe: impl Probe) -> Self {
        self.probes.push(Arc::new(probe));
        self
    }

    /// Runs every probe. `status` is `ok` when every component is up, else `degraded`; the
    /// returned flag says the same.
    pub async fn report(&self) -> (bool, HealthResponse) {
        let statuses = futures_util::future::join_all(self.probes.iter().map(|p| p.check())).await;
        let healthy = statuses.iter().all(|s| s.up);
        let components: BTreeMap<String, String> = self
            .probes
            .iter()
            .zip(&statuses)
            .map(|(probe, status)| (probe.name().to_owned(), status.text()))
            .collect();
        let response = HealthResponse {
            status: if healthy { "ok" } else { "degraded" }.into(),
            node_id: self.node_id.to_string(),
            components,
            timestamp: protocol::now_ms(),
        };
        (healthy, response)
    }
}

/// Redis answers PING.
pub(crate) struct RedisProbe(pub ChatState);

impl Probe for RedisProbe {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn check(&self) -> BoxFuture<'_, ProbeStatus> {
        async move { ProbeStatus::up_if(self.0.ping().await.is_ok()) }.boxed()
    }
}

/// The database answers `SELECT 1`.
pub(crate) struct SqlProbe(pub Store);

impl Probe for SqlProbe {
    fn name(&self) -> &'static str {
        "db"
    }

    fn check(&self) -> BoxFuture<'_, ProbeStatus> {
        async move { ProbeStatus::up_if(self.0.ping().await.is_ok()) }.boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(&'static str, ProbeStatus);

    impl Probe for Fixed {
        fn name(&self) -> &'static str {
            self.0
        }
        fn check(&self) -> BoxFuture<'_, ProbeStatus> {
            futures_util::future::ready(self.1.clone()).boxed()
        }
    }

    /// Every component is named with its state; one down makes the node degraded.
    #[tokio::test]
    async fn one_component_down_makes_the_node_degraded() {
        let health = Health::new(Arc::from("n1")).with(Fixed("redis", ProbeStatus::up_if(true)));
        let (healthy, report) = health.report().await;
        assert!(healthy);
        assert_eq!(report.status, "ok");
        assert_eq!(report.node_id, "n1");

        let health = health.with(Fixed(
            "ai",
            ProbeStatus {
                up: false,
                detail: Some("0/2 nodes".into()),
            },
        ));
        let (healthy, report) = health.report().await;
        assert!(!healthy);
        assert_eq!(report.status, "degraded");
        assert_eq!(report.components["redis"], "up");
        assert_eq!(report.components["ai"], "down (0/2 nodes)");
    }
}
