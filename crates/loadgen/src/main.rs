//! `loadgen`: the bench tool. Measures a running stack from the outside, the way browsers use
//! it, on 127.0.0.1 only, bounded in sockets and time.
//!
//! ```text
//! loadgen fanout --redis redis://127.0.0.1:P --gateway http://127.0.0.1:G [--sessions 1000]
//!                [--rate 20] [--seconds 10] [--targets redis,minimal,gateway] [--json FILE]
//! loadgen chat --gateway http://127.0.0.1:G [--streams 1000,3000] [--reconnects 500]
//! loadgen reconnect [--url http://127.0.0.1:8080] [--count 1000] [--concurrency 1]
//! loadgen median run1.json run2.json run3.json
//! loadgen minimal-server --redis redis://127.0.0.1:P
//! ```
//!
//! - `fanout`: synthetic chunk frames (the real format) PUBLISHed straight to Redis, received by
//!   Redis alone, by the minimal fan-out and by the gateway, one after the other in one run, so
//!   the gateway's figures come with the two floors beside them ([`fanout`]).
//! - `chat`: concurrent chats end to end through the AI nodes ([`chat`]).
//! - `reconnect`: the cost of a reload while an answer streams ([`reconnect`]).
//! - `minimal-server`: the minimal fan-out (started by `fanout` itself) ([`minimal`]).
//!
//! Every command prints a table on stdout and, with `--json FILE`, the same figures as JSON.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use serde::Serialize;

mod chat;
mod fanout;
mod measure;
mod median;
mod minimal;
mod publisher;
mod reconnect;
mod table;
mod ws;

/// The most sockets one run may open.
const MAX_SOCKETS: usize = 20_000;

#[derive(Parser)]
#[command(name = "loadgen", about = "The bench tool of the chat backend")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Also write the report as JSON to this file.
    #[arg(long, global = true)]
    json: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Chunks published straight to Redis, received by Redis alone, the minimal fan-out and the
    /// gateway.
    Fanout(fanout::FanoutArgs),
    /// Concurrent chats end to end.
    Chat(chat::ChatArgs),
    /// Fresh sockets to a session mid-answer, timed to their `history` frame.
    Reconnect(reconnect::ReconnectArgs),
    /// The median of several runs' JSON reports (`--json` of each), figure by figure.
    Median { files: Vec<PathBuf> },
    /// The minimal fan-out server (prints its port, serves until killed).
    MinimalServer {
        #[arg(long)]
        redis: String,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Sockets are file descriptors: take what the hard limit allows.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        match cli.command {
            Command::MinimalServer { redis } => minimal::serve(&redis).await,
            Command::Median { files } => write_json(cli.json, &median::of_files(&files)?),
            Command::Fanout(args) => {
                anyhow::ensure!(
                    args.sessions <= MAX_SOCKETS,
                    "at most {MAX_SOCKETS} sessions"
                );
                anyhow::ensure!(args.seconds <= 600.0, "at most 600 seconds");
                let report = fanout::run(args).await?;
                print!("{}", table::fanout(&report));
                write_json(cli.json, &report)
            }
            Command::Chat(args) => {
                anyhow::ensure!(
                    args.streams.iter().all(|&s| s <= MAX_SOCKETS),
                    "at most {MAX_SOCKETS} streams"
                );
                anyhow::ensure!(args.seconds <= 600.0, "at most 600 seconds");
                let report = chat::run(args).await?;
                print!("{}", table::chat(&report));
                write_json(cli.json, &report)
            }
            Command::Reconnect(args) => {
                let report = reconnect::run(args).await?;
                print!("{}", table::reconnect(&report));
                write_json(cli.json, &report)
            }
        }
    })
}

fn write_json(path: Option<PathBuf>, report: &impl Serialize) -> anyhow::Result<()> {
    if let Some(path) = path {
        std::fs::write(&path, serde_json::to_vec_pretty(report)?)?;
    }
    Ok(())
}
