//! `ws-gateway`: serve (the default), or mint a token for local use (`token`).

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    version,
    about = "Gateway node of the streaming chat: WebSockets and REST for browsers"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Print a token for USER, signed with JWT_SECRET (dev mode's built-in secret when unset),
    /// valid for JWT_EXPIRATION_MS. For development and tests: production tokens come from
    /// your identity provider, signed with the same secret.
    Token {
        /// The user the token names (its `sub`).
        #[arg(long)]
        user: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        None => node::main(ws_gateway::run).await,
        Some(Command::Token { user }) => {
            println!("{}", ws_gateway::mint_token(&runtime::env::vars(), &user)?);
            Ok(())
        }
    }
}
