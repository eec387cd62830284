//! [`AppState`]: the handles every request and socket of the gateway shares.

use std::sync::Arc;

use anyhow::Context;
use axum::extract::FromRef;
use bus::{Bus, ClusterBus, RedisBus};
use node::{Core, Health};
use redis_state::RedisTarget;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;

use crate::ai_client::{AiClient, AiProbe};
use crate::config::Config;
use crate::gate::ChatGate;
use crate::socket::{Hub, NodeBackend, NodeServices, SocketEnv, UserSockets};
use crate::stats::Stats;

/// Handles shared by every request and socket; cheap to clone.
#[derive(Clone, FromRef)]
pub struct AppState {
    pub config: Arc<Config>,
    /// Redis, history, the SQL writer: what every node holds.
    pub core: Core,
    /// `GET /health`: Redis, the database and the AI nodes.
    pub health: Health,
    /// The AI nodes chats are forwarded to.
    pub ai: Arc<AiClient>,
    /// What every chat passes on its way to an AI node (REST and sockets alike).
    pub gate: ChatGate,
    /// What each socket is given: the hub, the bus, the backend, the limits.
    pub sockets: SocketEnv<NodeBackend>,
    /// Every socket task, so shutdown can wait for their close frames.
    pub socket_tasks: TaskTracker,
}

impl AppState {
    /// Subscribes the node's bus (the hub receives what it delivers) and builds the node's
    /// handles on top of `core`.
    pub async fn connect(
        config: Config,
        core: Core,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Self> {
        let stats = Arc::new(Stats::new(&core.node_id));
        let hub = Arc::new(Hub::new(stats.clone()));
        let target = &config.node.redis;
        let bus: Arc<dyn Bus> = match target {
            RedisTarget::Single(url) => {
                let client = redis::Client::open(url.as_str())
                    .with_context(|| format!("REDIS_URL {url}"))?;
                let bus = RedisBus::start(client, hub.clone(), shutdown.clone()).await;
                Arc::new(bus.with_context(|| format!("connecting the pub/sub bus to {url}"))?)
            }
            RedisTarget::Cluster(seeds) => {
                let bus = ClusterBus::start(seeds.clone(), hub.clone(), shutdown.clone()).await;
                Arc::new(bus.with_context(|| format!("connecting the pub/sub bus to {target}"))?)
            }
        };
        info!(redis = %target, "pub/sub bus connected");
        let ai = Arc::new(
            AiClient::new(
                config.service.ai_service_urls.clone(),
                config.service.ai_request_timeout,
                stats.clone(),
            )
            .context("building the AI client")?,
        );
        let gate = ChatGate {
            ai: ai.clone(),
            auth: core.auth.clone(),
        };
        let user_sockets = UserSockets::start(
            core.state.clone(),
            core.node_id.clone(),
            config.service.max_sockets_per_user,
            shutdown.clone(),
        );
        crate::owners::renew_claims(
            hub.clone(),
            core.state.clone(),
            core.node_id.clone(),
            config.service.session_owner_ttl,
            shutdown.clone(),
        );
        let sockets = SocketEnv {
            node_id: core.node_id.clone(),
            hub,
            bus,
            backend: NodeBackend::new(NodeServices {
                core: core.clone(),
                gate: gate.clone(),
                sockets: user_sockets,
                owner_ttl: config.service.session_owner_ttl,
            }),
            max_pending_frames: config.service.max_pending_frames,
            max_message_bytes: config.service.ws_max_message_bytes,
            stats,
            // Sockets close (1012) when the node drains, which starts after it is not ready.
            shutdown: CancellationToken::new(),
        };
        Ok(Self {
            config: Arc::new(config),
            health: core.health().with(AiProbe(ai.clone())),
            core,
            ai,
            gate,
            sockets,
            socket_tasks: TaskTracker::new(),
        })
    }

    /// Starts draining: the node turns not-ready (new sockets are refused), then every open
    /// socket is closed with 1012.
    pub fn start_draining(&self) {
        self.health.start_draining();
        self.sockets.shutdown.cancel();
    }

    /// The node's metrics.
    pub fn stats(&self) -> &Stats {
        &self.sockets.stats
    }
}
