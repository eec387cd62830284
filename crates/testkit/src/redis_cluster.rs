//! A real Redis Cluster: three masters and three replicas of Debian's `redis-server`, each on
//! free loopback ports, created with `redis-cli --cluster create`.
//!
//! Each node gets its own free `--cluster-port` (the bus port defaults to port + 10000, which
//! overflows for high ports). `cluster_state:ok` comes before the nodes agree on roles, so the
//! cluster counts as ready only when every node sees three connected masters with slots and
//! three connected replicas. `cluster-require-full-coverage no` keeps the other shards
//! serving while one fails over, as a deployment would configure it.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::free_port;

/// Masters and replicas of a test cluster.
const MASTERS: usize = 3;
const NODES: usize = 6;

/// The node timeout of test clusters: short enough that a killed master's replica takes over
/// within a few seconds, long enough that a busy 2-core machine does not cause failovers of
/// its own.
pub const CLUSTER_NODE_TIMEOUT_MS: u64 = 3000;

/// One `redis-server` of the cluster.
struct Node {
    child: Option<Child>,
    port: u16,
    /// Stopped with SIGSTOP: running, but answering nothing.
    frozen: bool,
}

/// A Redis Cluster owned by a test; its processes are killed on drop.
pub struct RedisCluster {
    nodes: Vec<Node>,
    _dir: tempfile::TempDir,
}

impl RedisCluster {
    /// Starts six nodes, creates the cluster (three masters, one replica each) and waits
    /// until every node agrees on it. Panics (with the install command when `redis-server` is
    /// missing) if it cannot.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir for the cluster");
        let mut nodes = Vec::new();
        for i in 0..NODES {
            let node_dir = dir.path().join(format!("node-{i}"));
            std::fs::create_dir_all(&node_dir).expect("node dir");
            nodes.push(start_node(&node_dir));
        }
        let cluster = Self { nodes, _dir: dir };
        let addrs: Vec<String> = cluster
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli (apt-get install -y redis-tools)");
        assert!(
            created.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&created.stdout),
            String::from_utf8_lossy(&created.stderr)
        );
        cluster.wait_until(
            "the nodes agree on 3 masters and 3 replicas, each replica in sync",
            |c| {
                c.live().all(|n| agreed(n.port, MASTERS, NODES - MASTERS))
                    && c.live().all(|n| in_sync(n.port))
            },
        );
        cluster
    }

    /// Every node's URL (`redis://127.0.0.1:{port}`), for `REDIS_CLUSTER_URLS`.
    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("redis://127.0.0.1:{}", n.port))
            .collect()
    }

    /// [`RedisCluster::urls`] joined with commas: the value of `REDIS_CLUSTER_URLS`.
    pub fn seeds(&self) -> String {
        self.urls().join(",")
    }

    /// The port of node `i` (0..6).
    pub fn port(&self, i: usize) -> u16 {
        self.nodes[i].port
    }

    /// Runs `redis-cli` against a live node with `args`; its trimmed output.
    pub fn cli(&self, args: &[&str]) -> String {
        let node = self.live().next().expect("a live node");
        cli(node.port, args)
    }

    /// The node (index) serving `key`'s slot as a master now.
    pub fn master_of(&self, key: &str) -> usize {
        let slot: u16 = self
            .cli(&["CLUSTER", "KEYSLOT", key])
            .parse()
            .expect("CLUSTER KEYSLOT");
        let node = self.live().next().expect("a live node");
        let port = owner_seen_by(node.port, slot).unwrap_or_else(|| {
            panic!(
                "no master serves slot {slot}: {}",
                self.cli(&["CLUSTER", "NODES"])
            )
        });
        self.nodes
            .iter()
            .position(|n| n.port == port)
            .expect("a node of this cluster")
    }

    /// The nodes (indexes) that are masters serving slots now.
    pub fn masters(&self) -> Vec<usize> {
        let node = self.live().next().expect("a live node");
        let nodes = cli(node.port, &["CLUSTER", "NODES"]);
        let mut masters: Vec<usize> = nodes
            .lines()
            .filter_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let serving =
                    fields.len() > 8 && fields[2].contains("master") && !fields[2].contains("fail");
                let port = port_of(fields.get(1)?);
                serving.then(|| self.nodes.iter().position(|n| n.port == port))?
            })
            .collect();
        masters.sort_unstable();
        masters
    }

    /// Empties every key of the cluster (`FLUSHALL` on each master; replicas follow).
    pub fn flush_all(&self) {
        for node in self.live() {
            let role = cli(node.port, &["ROLE"]);
            if role.starts_with("master") {
                let done = cli(node.port, &["FLUSHALL"]);
                assert_eq!(done, "OK", "FLUSHALL on {}", node.port);
            }
        }
    }

    /// Kills node `i` (SIGKILL) and waits for it to exit.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes node `i` (SIGSTOP): it keeps its sockets open and answers nothing, as a
    /// stalled host would; the other nodes fail it over after the node timeout.
    pub fn freeze(&mut self, i: usize) {
        if let Some(child) = &self.nodes[i].child {
            crate::signal(child, "-STOP");
            self.nodes[i].frozen = true;
        }
    }

    /// Lets frozen node `i` run again (SIGCONT); if it was failed over meanwhile, it rejoins
    /// as a replica. Waits until every node sees 3 masters and the thawed node connected.
    pub fn thaw(&mut self, i: usize) {
        if let Some(child) = &self.nodes[i].child {
            crate::signal(child, "-CONT");
            self.nodes[i].frozen = false;
        }
        let port = self.nodes[i].port;
        self.wait_until("the thawed node rejoined", |c| {
            c.live().all(|n| agreed(n.port, MASTERS, 0))
                && cli(port, &["CLUSTER", "INFO"]).contains("cluster_state:ok")
        });
    }

    /// Moves the slot of `key`, with its keys, to master `to` (0..6, a master now), as
    /// `redis-cli --cluster reshard` does: IMPORTING on the target, MIGRATING on the source,
    /// every key MIGRATEd, then the slot assigned to the target on every master.
    pub fn move_slot(&self, key: &str, to: usize) {
        let slot = self.cli(&["CLUSTER", "KEYSLOT", key]);
        let number: u16 = slot.parse().expect("CLUSTER KEYSLOT");
        let from = self.master_of(key);
        assert_ne!(from, to, "slot {slot} is on node {to} already");
        let (from_port, to_port) = (self.nodes[from].port, self.nodes[to].port);
        let (from_id, to_id) = (
            cli(from_port, &["CLUSTER", "MYID"]),
            cli(to_port, &["CLUSTER", "MYID"]),
        );
        let ok = |port: u16, args: &[&str]| {
            let said = cli(port, args);
            assert_eq!(said, "OK", "{args:?} on {port}");
        };
        ok(
            to_port,
            &["CLUSTER", "SETSLOT", &slot, "IMPORTING", &from_id],
        );
        ok(
            from_port,
            &["CLUSTER", "SETSLOT", &slot, "MIGRATING", &to_id],
        );
        loop {
            let keys = cli(from_port, &["CLUSTER", "GETKEYSINSLOT", &slot, "100"]);
            if keys.is_empty() {
                break;
            }
            let to_port_text = to_port.to_string();
            let mut args = vec![
                "MIGRATE",
                "127.0.0.1",
                &to_port_text,
                "",
                "0",
                "5000",
                "KEYS",
            ];
            args.extend(keys.lines());
            ok(from_port, &args);
        }
        for node in self.live() {
            if cli(node.port, &["ROLE"]).starts_with("master") {
                ok(node.port, &["CLUSTER", "SETSLOT", &slot, "NODE", &to_id]);
            }
        }
        self.wait_until("every node sees the slot on its new master", |c| {
            c.live()
                .all(|n| owner_seen_by(n.port, number) == Some(to_port))
        });
    }

    /// Kills every node: the cluster is unreachable.
    pub fn kill_all(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }

    /// Waits until the slots of killed (or frozen) master `i` are served by another node (its
    /// replica took over) and every live node sees that.
    pub fn wait_failover(&self, i: usize) {
        let gone = self.nodes[i].port;
        self.wait_until("a replica took over the killed master's slots", |c| {
            c.live()
                .all(|n| agreed(n.port, MASTERS, 0) && !serves_slots(n.port, gone))
        });
    }

    /// Polls `ready` every 100 ms for up to 60 s; panics with `what` otherwise.
    fn wait_until(&self, what: &str, ready: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !ready(self) {
            assert!(
                Instant::now() < deadline,
                "cluster: {what} did not happen within 60 s:\n{}",
                self.cli(&["CLUSTER", "NODES"])
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Nodes that run and answer.
    fn live(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(|n| n.child.is_some() && !n.frozen)
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// Starts one cluster-enabled node on free ports and waits until it answers.
fn start_node(dir: &Path) -> Node {
    let mut last = String::new();
    for _ in 0..5 {
        let (port, cluster_port) = (free_port(), free_port());
        if port == cluster_port {
            continue;
        }
        let mut child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--cluster-port",
                &cluster_port.to_string(),
                "--bind",
                "127.0.0.1",
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                &CLUSTER_NODE_TIMEOUT_MS.to_string(),
                "--cluster-require-full-coverage",
                "no",
                "--cluster-replica-validity-factor",
                "0",
                // A replica's first sync starts at once, not 5 s later (Redis's default, to
                // gather replicas), so that a test's master is never killed with replicas
                // that have nothing: with validity factor 0 an empty replica would take over.
                "--repl-diskless-sync-delay",
                "0",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--loglevel",
                "warning",
            ])
            .arg("--dir")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("redis-server could not be started ({e}); apt-get install -y redis-server")
            });
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            if cli(port, &["CONFIG", "GET", "dir"]).contains(&*dir.to_string_lossy()) {
                return Node {
                    child: Some(child),
                    port,
                    frozen: false,
                };
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        last = format!("node on port {port} did not answer");
    }
    panic!("could not start a cluster node: {last}");
}

/// The port of the master (not failing) the node on `port` thinks serves `slot`.
fn owner_seen_by(port: u16, slot: u16) -> Option<u16> {
    cli(port, &["CLUSTER", "NODES"]).lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 9 || !fields[2].contains("master") || fields[2].contains("fail") {
            return None;
        }
        fields[8..]
            .iter()
            .any(|range| {
                let (a, b) = range.split_once('-').unwrap_or((range, range));
                matches!((a.parse::<u16>(), b.parse::<u16>()), (Ok(a), Ok(b)) if (a..=b).contains(&slot))
            })
            .then(|| port_of(fields[1]))
    })
}

/// `redis-cli -p port args...`, its trimmed output (empty when it fails).
fn cli(port: u16, args: &[&str]) -> String {
    Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// Whether the node on `port` says the cluster is ok and sees `masters` connected masters
/// with slots and at least `replicas` connected replicas, none failing.
fn agreed(port: u16, masters: usize, replicas: usize) -> bool {
    if !cli(port, &["CLUSTER", "INFO"]).contains("cluster_state:ok") {
        return false;
    }
    let nodes = cli(port, &["CLUSTER", "NODES"]);
    let (mut m, mut r) = (0, 0);
    for line in nodes.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 8 || fields[2].contains("fail") || fields[2].contains("handshake") {
            continue;
        }
        if fields[7] != "connected" && !fields[2].contains("myself") {
            continue;
        }
        if fields[2].contains("master") && fields.len() > 8 {
            m += 1;
        } else if fields[2].contains("slave") {
            r += 1;
        }
    }
    m == masters && r >= replicas
}

/// Whether the node on `port` is a master, or a replica whose link to its master is up (its
/// first sync done): `CLUSTER NODES` shows replicas connected before they have any data.
fn in_sync(port: u16) -> bool {
    let info = cli(port, &["INFO", "replication"]);
    info.contains("role:master") || info.contains("master_link_status:up")
}

/// Whether the node on `port` thinks the node on port `master` serves slots.
fn serves_slots(port: u16, master: u16) -> bool {
    cli(port, &["CLUSTER", "NODES"]).lines().any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.len() > 8 && port_of(fields[1]) == master
    })
}

/// The port in `ip:port@cport`.
fn port_of(addr: &str) -> u16 {
    addr.split('@')
        .next()
        .and_then(|a| a.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or(0)
}
