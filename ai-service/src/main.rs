//! `ai-service`: serve (the default), or rebuild the SQL store from Kafka (`replay`).

use clap::{Parser, Subcommand};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    version,
    about = "AI node of the streaming chat: takes chats, streams answers through Redis"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Rebuild the SQL store at DATABASE_URL (messages, sessions, deletions) from the
    /// chat-events topic at KAFKA_BOOTSTRAP_SERVERS, then exit.
    Replay {
        /// Read the topic from its first event (the only mode: replaying twice is harmless).
        #[arg(long, required = true)]
        from_beginning: bool,
        /// End the replay when no event arrives for this long (seconds), should a partition
        /// never report its end.
        #[arg(long, default_value_t = 10)]
        idle_seconds: u64,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        None => node::main(ai_service::run).await,
        Some(Command::Replay { idle_seconds, .. }) => {
            ai_service::replay(std::time::Duration::from_secs(idle_seconds)).await
        }
    }
}
