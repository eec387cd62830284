//! What a run records: latency histograms, each session's chunk sequence (lost, duplicated, out
//! of order), and a process's CPU time and memory read from `/proc`.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use hdrhistogram::Histogram;
use serde::Serialize;

/// Microseconds since the Unix epoch: the clock publishers stamp and receivers compare with (one
/// machine, so one clock).
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Latencies in microseconds, shared by many recorders that each add a batch at a time.
pub struct Latencies(Mutex<Histogram<u64>>);

/// Samples a recorder keeps before it takes the shared lock.
pub const BATCH: usize = 256;

impl Default for Latencies {
    fn default() -> Self {
        // 1 µs to 10 min, 3 significant figures.
        let histogram = Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid bounds");
        Self(Mutex::new(histogram))
    }
}

impl Latencies {
    /// Adds `samples` (µs) and empties it.
    pub fn add(&self, samples: &mut Vec<u64>) {
        if samples.is_empty() {
            return;
        }
        let mut h = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for &s in samples.iter() {
            h.saturating_record(s.max(1));
        }
        samples.clear();
    }

    pub fn summary(&self) -> Summary {
        Summary::of(&self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Percentiles of one latency, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, serde::Deserialize)]
pub struct Summary {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Summary {
    fn of(h: &Histogram<u64>) -> Summary {
        let ms = |us: u64| us as f64 / 1000.0;
        Summary {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
        }
    }

    /// Percentiles of a plain list of durations.
    pub fn of_durations(samples: &[std::time::Duration]) -> Summary {
        let h = Latencies::default();
        let mut us: Vec<u64> = samples.iter().map(|d| d.as_micros() as u64).collect();
        h.add(&mut us);
        h.summary()
    }
}

/// One session's chunk sequence as a receiver saw it. The publisher sends indices 0, 1, 2, ...
#[derive(Debug, Default)]
pub struct Sequence {
    /// The index expected next.
    next: u32,
    /// Indices skipped over and not (yet) received.
    missing: BTreeSet<u32>,
    pub received: u64,
    pub duplicated: u64,
    pub out_of_order: u64,
}

impl Sequence {
    /// Records chunk `index`; true when it is new (neither a duplicate nor seen before).
    pub fn see(&mut self, index: u32) -> bool {
        self.received += 1;
        if index == self.next {
            self.next += 1;
            true
        } else if index > self.next {
            self.missing.extend(self.next..index);
            self.next = index + 1;
            true
        } else if self.missing.remove(&index) {
            self.out_of_order += 1;
            true
        } else {
            self.duplicated += 1;
            false
        }
    }

    /// Chunks of the `published` ones never received.
    pub fn lost(&self, published: u32) -> u64 {
        self.missing.len() as u64 + u64::from(published.saturating_sub(self.next))
    }
}

/// Sequence totals over many sessions.
#[derive(Debug, Clone, Copy, Default, Serialize, serde::Deserialize)]
pub struct Tally {
    pub received: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub out_of_order: u64,
}

impl Tally {
    pub fn add(&mut self, sequence: &Sequence, published: u32) {
        self.received += sequence.received;
        self.lost += sequence.lost(published);
        self.duplicated += sequence.duplicated;
        self.out_of_order += sequence.out_of_order;
    }
}

/// A process's CPU time (user + system, every thread) and resident memory.
#[derive(Debug, Clone, Copy)]
pub struct ProcSample {
    pub cpu_us: u64,
    pub rss_bytes: u64,
}

/// Reads `pid`'s `/proc/{pid}/stat`.
pub fn sample(pid: i32) -> anyhow::Result<ProcSample> {
    let stat = procfs::process::Process::new(pid)
        .and_then(|p| p.stat())
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    let ticks = procfs::ticks_per_second();
    Ok(ProcSample {
        cpu_us: (stat.utime + stat.stime) * 1_000_000 / ticks,
        rss_bytes: stat.rss * procfs::page_size(),
    })
}

/// The process listening on TCP `port` on this machine, found through `/proc/net/tcp` and the
/// processes' open sockets.
pub fn pid_listening_on(port: u16) -> anyhow::Result<i32> {
    use procfs::process::FDTarget;
    let mut inodes = Vec::new();
    for entries in [procfs::net::tcp(), procfs::net::tcp6()] {
        for entry in entries.into_iter().flatten() {
            if entry.local_address.port() == port && entry.state == procfs::net::TcpState::Listen {
                inodes.push(entry.inode);
            }
        }
    }
    anyhow::ensure!(!inodes.is_empty(), "nothing listens on port {port}");
    for process in procfs::process::all_processes()?.flatten() {
        let Ok(fds) = process.fd() else { continue };
        for fd in fds.flatten() {
            if let FDTarget::Socket(inode) = fd.target
                && inodes.contains(&inode)
            {
                return Ok(process.pid);
            }
        }
    }
    anyhow::bail!("no process owns the socket listening on port {port}")
}

/// The port of a `http://host:port/...`, `ws://...` or `redis://host:port/...` URL.
pub fn port_of(url: &str) -> anyhow::Result<u16> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or(rest);
    let port = authority
        .rsplit_once(':')
        .with_context(|| format!("{url} has no port"))?
        .1;
    port.parse().with_context(|| format!("port of {url}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sequence_counts_gaps_duplicates_and_late_arrivals() {
        let mut s = Sequence::default();
        for i in [0, 1, 3, 3, 2, 1, 5] {
            s.see(i);
        }
        assert_eq!(s.received, 7);
        assert_eq!(s.duplicated, 2, "3 twice, 1 again");
        assert_eq!(s.out_of_order, 1, "2 after 3");
        assert_eq!(s.lost(8), 3, "4 missing, 6 and 7 never came");
    }

    #[test]
    fn ports_are_read_from_urls() {
        assert_eq!(port_of("http://127.0.0.1:8080").unwrap(), 8080);
        assert_eq!(port_of("redis://127.0.0.1:6390/0").unwrap(), 6390);
        assert!(port_of("http://localhost/x").is_err());
    }

    #[test]
    fn summaries_are_in_milliseconds() {
        let l = Latencies::default();
        let mut v: Vec<u64> = (1..=1000).collect();
        l.add(&mut v);
        let s = l.summary();
        assert_eq!(s.count, 1000);
        assert!((s.p50_ms - 0.5).abs() < 0.01, "{s:?}");
        assert!((s.max_ms - 1.0).abs() < 0.01, "{s:?}");
    }
}
