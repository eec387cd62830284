//! The health report: each component a node depends on is a [`Probe`]; `GET /health` asks them
//! all at once and answers 200 unless a critical one (Redis; the gateway's AI nodes) is down,
//! 503 otherwise. The database and Kafka are reported but never critical.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use events::Events;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use protocol::rest::HealthResponse;
use redis_state::ChatState;
use store::{Store, WriterStats};

/// What a probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeStatus {
    pub state: ComponentState,
    /// Said after the state in the report, e.g. `2/3 nodes`.
    pub detail: Option<String>,
}

/// A component's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComponentState {
    Up,
    Down,
    /// Not configured: neither up nor down, and never a reason to be unhealthy.
    Disabled,
}

impl ProbeStatus {
    /// Up or down, with nothing more to say.
    pub fn up_if(up: bool) -> Self {
        let state = if up {
            ComponentState::Up
        } else {
            ComponentState::Down
        };
        Self {
            state,
            detail: None,
        }
    }

    /// Not configured.
    pub fn disabled() -> Self {
        Self {
            state: ComponentState::Disabled,
            detail: None,
        }
    }

    /// The report's text: `up`, `down`, `disabled`, or `up (detail)`.
    fn text(&self) -> String {
        let word = match self.state {
            ComponentState::Up => "up",
            ComponentState::Down => "down",
            ComponentState::Disabled => "disabled",
        };
        match &self.detail {
            Some(detail) => format!("{word} ({detail})"),
            None => word.to_owned(),
        }
    }
}

/// One component a node depends on.
pub trait Probe: Send + Sync + 'static {
    /// Its name in the report (`redis`, `db`, `ai`, `kafka`).
    fn name(&self) -> &'static str;

    /// Whether the node cannot serve while this component is down (default: yes).
    fn critical(&self) -> bool {
        true
    }

    /// Checks it now. Probes run concurrently; each bounds its own wait.
    fn check(&self) -> BoxFuture<'_, ProbeStatus>;
}

/// A node's health: its id, the probes of what it depends on, and whether it is draining.
/// Cheap to clone; clones share the draining flag.
#[derive(Clone)]
pub struct Health {
    node_id: Arc<str>,
    probes: Vec<Arc<dyn Probe>>,
    draining: Arc<AtomicBool>,
}

impl Health {
    /// A report with no components yet.
    pub fn new(node_id: Arc<str>) -> Self {
        Self {
            node_id,
            probes: Vec::new(),
            draining: Arc::default(),
        }
    }

    /// The node is shutting down: from now on it is not ready (`/health` and `/health/ready`
    /// answer 503 `draining`), whatever its components say.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Whether [`Health::start_draining`] was called.
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// The node's id.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// Adds a component.
    pub fn with(mut self, probe: impl Probe) -> Self {
        self.probes.push(Arc::new(probe));
        self
    }

    /// Runs every probe, timing each. `status` is `ok` when no critical component is down and
    /// the node is not draining, else `degraded` or `draining`; the returned flag says whether
    /// it is `ok`.
    pub async fn report(&self) -> (bool, HealthResponse) {
        let timed = self.probes.iter().map(|probe| async move {
            let started = Instant::now();
            let status = probe.check().await;
            (status, started.elapsed())
        });
        let (statuses, took): (Vec<ProbeStatus>, Vec<Duration>) =
            futures_util::future::join_all(timed)
                .await
                .into_iter()
                .unzip();
        let serving = self
            .probes
            .iter()
            .zip(&statuses)
            .all(|(probe, status)| !probe.critical() || status.state != ComponentState::Down);
        let components: BTreeMap<String, String> = self
            .probes
            .iter()
            .zip(&statuses)
            .map(|(probe, status)| (probe.name().to_owned(), status.text()))
            .collect();
        let latency_ms = self
            .probes
            .iter()
            .zip(&took)
            .map(|(probe, took)| {
                let ms = (took.as_secs_f64() * 1e5).round() / 100.0;
                (probe.name().to_owned(), ms)
            })
            .collect();
        let status = match (self.draining(), serving) {
            (true, _) => "draining",
            (false, true) => "ok",
            (false, false) => "degraded",
        };
        let response = HealthResponse {
            status: status.into(),
            node_id: self.node_id.to_string(),
            components,
            latency_ms,
            timestamp: protocol::now_ms(),
        };
        (status == "ok", response)
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

/// The database answers `SELECT 1` within half a second. Not critical: SQL is off the delivery
/// path (sockets open, chats stream, history reads from Redis) and writes of record wait in
/// the writer's queue, whose depth the report shows while the database is down.
pub(crate) struct SqlProbe {
    pub store: Store,
    pub writer: Arc<WriterStats>,
}

impl Probe for SqlProbe {
    fn name(&self) -> &'static str {
        "db"
    }

    fn critical(&self) -> bool {
        false
    }

    fn check(&self) -> BoxFuture<'_, ProbeStatus> {
        async move {
            let ping = tokio::time::timeout(Duration::from_millis(500), self.store.ping()).await;
            let mut status = ProbeStatus::up_if(matches!(ping, Ok(Ok(()))));
            if status.state == ComponentState::Down {
                let queued = self.writer.queued.load(Ordering::Relaxed);
                status.detail = Some(format!("{queued} writes queued"));
            }
            status
        }
        .boxed()
    }
}

/// Kafka answers (or is not configured). Never critical: events wait in the outbox.
pub(crate) struct KafkaProbe(pub Events);

impl Probe for KafkaProbe {
    fn name(&self) -> &'static str {
        "kafka"
    }

    fn critical(&self) -> bool {
        false
    }

    fn check(&self) -> BoxFuture<'_, ProbeStatus> {
        async move {
            match self.0.reachable().await {
                None => ProbeStatus::disabled(),
                Some(up) => ProbeStatus::up_if(up),
            }
        }
        .boxed()
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
        fn critical(&self) -> bool {
            self.0 != "kafka"
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
                state: ComponentState::Down,
                detail: Some("0/2 nodes".into()),
            },
        ));
        let (healthy, report) = health.report().await;
        assert!(!healthy);
        assert_eq!(report.status, "degraded");
        assert_eq!(report.components["redis"], "up");
        assert_eq!(report.components["ai"], "down (0/2 nodes)");
    }

    /// A draining node is not ready however well its components are; each check is timed.
    #[tokio::test]
    async fn a_draining_node_is_not_ready() {
        let health = Health::new(Arc::from("n1")).with(Fixed("redis", ProbeStatus::up_if(true)));
        let clone = health.clone();
        health.start_draining();
        let (ready, report) = clone.report().await;
        assert!(!ready);
        assert_eq!(report.status, "draining");
        assert_eq!(report.components["redis"], "up");
        assert!(report.latency_ms["redis"] >= 0.0);
    }

    /// A component that is not critical (Kafka) is reported down or disabled, and the node
    /// stays healthy.
    #[tokio::test]
    async fn a_non_critical_component_down_keeps_the_node_healthy() {
        let health = Health::new(Arc::from("n1"))
            .with(Fixed("redis", ProbeStatus::up_if(true)))
            .with(Fixed("kafka", ProbeStatus::up_if(false)));
        let (healthy, report) = health.report().await;
        assert!(healthy);
        assert_eq!(report.components["kafka"], "down");
        let disabled = Health::new(Arc::from("n1")).with(Fixed("kafka", ProbeStatus::disabled()));
        let (healthy, report) = disabled.report().await;
        assert!(healthy);
        assert_eq!(report.components["kafka"], "disabled");
    }
}
