//! The reports as Markdown tables (they paste into docs/BENCHMARKS.md as they are).

use std::fmt::Write;

use crate::chat::ChatReport;
use crate::fanout::{FanoutReport, TargetReport};
use crate::reconnect::ReconnectReport;

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("-".into(), |v| format!("{v:.digits$}"))
}

pub fn fanout(r: &FanoutReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "fanout: {} sessions x {} chunks/s, {} B frames, {} s measured",
        r.sessions, r.rate, r.frame_bytes, r.seconds
    );
    let gateway = r.targets.iter().find(|t| t.target == "gateway");
    let minimal = r.targets.iter().find(|t| t.target == "minimal");
    let redis = r.targets.iter().find(|t| t.target == "redis");
    let mut header = String::from("| figure |");
    let mut rule = String::from("|---|");
    for t in &r.targets {
        let _ = write!(header, " {} |", t.target);
        rule.push_str("---|");
    }
    let both = gateway.zip(minimal);
    if both.is_some() {
        header.push_str(" gateway ÷ minimal |");
        rule.push_str("---|");
    }
    if gateway.zip(redis).is_some() {
        header.push_str(" gateway − redis |");
        rule.push_str("---|");
    }
    let _ = writeln!(out, "{header}\n{rule}");
    type Figure = fn(&TargetReport) -> Option<f64>;
    let rows: [(&str, Figure, usize); 15] = [
        ("connects/s", |t| Some(t.connect_per_s), 0),
        ("idle B/socket", |t| t.idle_bytes_per_socket, 0),
        ("offered chunks/s", |t| Some(t.offered_per_s), 0),
        ("delivered chunks/s", |t| Some(t.delivered_per_s), 0),
        ("lost", |t| Some(t.tally.lost as f64), 0),
        (
            "duplicated + out of order",
            |t| Some((t.tally.duplicated + t.tally.out_of_order) as f64),
            0,
        ),
        ("p50 ms", |t| Some(t.latency.p50_ms), 2),
        ("p99 ms", |t| Some(t.latency.p99_ms), 2),
        ("max ms", |t| Some(t.latency.max_ms), 2),
        ("CPU µs/chunk", |t| t.cpu_us_per_chunk, 1),
        ("receiver processes", |t| Some(t.receivers as f64), 0),
        ("CPU cores (all of them)", |t| t.cpu_cores, 2),
        ("Redis CPU µs/chunk", |t| t.redis_cpu_us_per_chunk, 1),
        ("Redis nodes", |t| Some(t.redis_nodes as f64), 0),
        ("busiest Redis node, cores", |t| t.redis_busiest_cores, 2),
    ];
    for (name, figure, digits) in rows {
        let mut line = format!("| {name} |");
        for t in &r.targets {
            let _ = write!(line, " {} |", opt(figure(t), digits));
        }
        if let Some((g, m)) = both {
            let ratio = figure(g)
                .zip(figure(m))
                .and_then(|(g, m)| (m != 0.0).then(|| g / m));
            let _ = write!(line, " {} |", opt(ratio, 2));
        }
        if let Some((g, b)) = gateway.zip(redis) {
            let _ = write!(
                line,
                " {} |",
                opt(figure(g).zip(figure(b)).map(|(g, b)| g - b), digits)
            );
        }
        let _ = writeln!(out, "{line}");
    }
    let mut line = String::from("| sockets closed by the receiver |");
    for t in &r.targets {
        let _ = write!(line, " {} |", t.closed);
    }
    let _ = writeln!(out, "{line}");
    let mut line = String::from("| PUBLISHes nobody received |");
    for t in &r.targets {
        let _ = write!(line, " {} |", t.published.unreceived);
    }
    let _ = writeln!(out, "{line}");
    out
}

pub fn chat(r: &ChatReport) -> String {
    let mut out = String::from(
        "| streams | connects/s | answers | chunks/s | TTFC p50 | TTFC p99 | jitter p99 | publish→receive p99 | reconnect p50 | reconnect p99 | lost | dup | corrupt | refused | gateway cores |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for run in &r.runs {
        let refused: u64 = run.refused.values().sum();
        let _ = writeln!(
            out,
            "| {} | {:.0} | {} | {:.0} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {} | {} | {} | {} | {} |",
            run.streams,
            run.connect_per_s,
            run.answers,
            run.chunks_per_s,
            run.time_to_first_chunk.p50_ms,
            run.time_to_first_chunk.p99_ms,
            run.jitter.p99_ms,
            run.publish_to_receive.p99_ms,
            run.reconnect.p50_ms,
            run.reconnect.p99_ms,
            run.lost,
            run.duplicated + run.out_of_order,
            run.corrupt,
            refused,
            opt(run.gateway_cpu_cores, 2),
        );
    }
    out
}

pub fn reconnect(r: &ReconnectReport) -> String {
    format!(
        "reconnects={} concurrency={} mid_stream={} p50={:.2}ms p90={:.2}ms p99={:.2}ms max={:.2}ms\n",
        r.reconnects,
        r.concurrency,
        r.mid_stream,
        r.latency.p50_ms,
        r.latency.p90_ms,
        r.latency.p99_ms,
        r.latency.max_ms
    )
}
