//! Durable history: the SQL schema, its migrations and every query, for SQLite (one file shared
//! by the processes of a host) and PostgreSQL (past one host), through sqlx's `Any` driver.
//!
//! The AI service is the writer of record: it queues writes on a [`StoreWriter`], whose task
//! applies them in order, whatever has queued up in one transaction, retrying failures, and
//! never making the stream wait. Readers call [`Store`] directly.
//!
//! Every change of record is one transaction that also writes the domain events describing it:
//! always to the audit trail, and, when events are published ([`Store::with_outbox`]), to the
//! outbox a relay publishes to Kafka. So an event exists exactly when its change does.
//!
//! # Layout
//! - [`Store`] (this file): connecting, migrating.
//! - `conversation.rs`: messages, sessions, chunks: the writes of record and the reads.
//! - `events.rs`: the audit trail and the event outbox ([`OutboxRow`]).
//! - `replay.rs`: rebuilding messages and sessions from domain events.
//! - `writer.rs`: [`StoreWriter`], the background writer.
//! - `migrations/`: the schema (one set of files for both databases).

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use protocol::MessageId;
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Executor};

mod conversation;
mod events;
mod replay;
mod writer;

pub use conversation::Record;
pub use events::OutboxRow;
pub use protocol::rest::SessionSummary;
pub use writer::{StoreWriter, WriterStats};

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database could not be reached, or refused a statement.
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("DATABASE_URL {0:?}: use sqlite://PATH or postgres://...")]
    Url(String),
    #[error("creating the database directory: {0}")]
    Io(#[from] std::io::Error),
    /// A stored row holds a value no writer of this code makes (an id outside the alphabet).
    #[error("a stored row is invalid: {0}")]
    Corrupt(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Whether the database could not take the statement *now*: unreachable, restarting,
    /// out of connections or resources, locked, read-only or full. Such a failure is worth
    /// retrying until the database is back; any other (a bug, corrupt data) is not.
    pub fn is_unavailable(&self) -> bool {
        let Error::Sql(e) = self else {
            return false;
        };
        match e {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::BeginFailed => true,
            sqlx::Error::Database(db) => db.code().is_some_and(|code| {
                let postgres = db
                    .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                    .is_some();
                unavailable_code(&code, postgres)
            }),
            _ => false,
        }
    }
}

/// Database error codes that mean "not now". SQLite reports numbers (extended result codes,
/// whose low byte is the primary code); PostgreSQL reports SQLSTATEs, some of which are digits
/// only too (`22021`, a bad byte, would read as SQLite's BUSY), hence `postgres`.
fn unavailable_code(code: &str, postgres: bool) -> bool {
    if !postgres {
        // BUSY, LOCKED, READONLY, IOERR, FULL, CANTOPEN, PROTOCOL.
        return code
            .parse::<u32>()
            .is_ok_and(|sqlite| matches!(sqlite & 0xff, 5 | 6 | 8 | 10 | 13 | 14 | 15));
    }
    // Connection exception, insufficient resources, operator intervention (admin shutdown,
    // crash shutdown, cannot connect now), system error.
    code.starts_with("08")
        || code.starts_with("53")
        || code.starts_with("57P")
        || code.starts_with("58")
}

/// Longest session title kept, in characters.
pub const TITLE_CHARS: usize = 60;
/// Set on every SQLite connection. WAL lets readers and one writer work at once across
/// processes; `busy_timeout` (ms) makes a second writer wait for the lock instead of failing
/// with "database is locked". A multi-row insert keeps a statement journal (to undo itself
/// alone): in memory, not in a temporary file (13 % of the AI node's CPU at 20k chunk rows/s).
/// Every chunk row lands in its answer's page of the `stream_chunk` key, so a busy node dirties
/// one page per streaming answer in every commit: a page cache of up to 64 MiB per connection
/// (the default is 2 MiB) keeps those pages instead of reading them back from the WAL, and
/// checkpointing at 16,384 WAL pages (64 MiB) rather than 1,000 copies a page that many commits
/// rewrote to the database once. At 1,500 streams SQLite then wrote a third more chunk rows in
/// the same CPU time and shed 3-8x fewer (docs/BENCHMARKS.md).
const SQLITE_PRAGMAS: &str = "PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL; \
     PRAGMA synchronous = NORMAL; PRAGMA temp_store = MEMORY; PRAGMA cache_size = -65536; \
     PRAGMA wal_autocheckpoint = 16384;";

/// Which database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

/// One streamed chunk of an answer, as the `stream_chunk` table keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkRow {
    pub message_id: MessageId,
    /// Position in its answer: 0, 1, 2, ...
    pub index: u32,
    /// The text this chunk adds.
    pub delta: String,
    /// When it was produced (ms since the epoch).
    pub at: i64,
}

/// Called after a transaction that wrote events to the outbox has committed (to wake the
/// relay). Must not block.
pub type OnEventsWritten = Arc<dyn Fn() + Send + Sync>;

/// The SQL store. Cheap to clone (a pool).
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// `Some` when events are published: they are written to the outbox too, and this is
    /// called after each commit that wrote some.
    outbox: Option<OnEventsWritten>,
}

impl Store {
    /// Connects to `url` (`sqlite://data/chat.db`, `sqlite::memory:`, `postgres://...`), creating
    /// a SQLite file and its directory when missing, and applies pending migrations. Events go
    /// to the audit trail only, until [`Store::with_outbox`].
    pub async fn connect(url: &str) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let backend: Backend = url.parse()?;
        let url = match backend {
            Backend::Sqlite => sqlite_url(url)?,
            Backend::Postgres => url.to_owned(),
        };
        let mut options = AnyPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(15));
        if backend == Backend::Sqlite {
            options = options.after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute(SQLITE_PRAGMAS).await?;
                    Ok(())
                })
            });
        }
        let pool = options.connect(&url).await?;
        migrate(&pool).await?;
        Ok(Store {
            pool,
            backend,
            outbox: None,
        })
    }

    /// From now on, every event is also written to the outbox (in the same transaction as its
    /// change), and `written` is called after each commit that wrote some.
    pub fn with_outbox(mut self, written: OnEventsWritten) -> Store {
        self.outbox = Some(written);
        self
    }

    /// A trivial query, for health checks.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

/// Applies pending migrations. Processes starting together on a new SQLite file race to create
/// the schema (PostgreSQL serializes them with an advisory lock; SQLite has none): the loser
/// retries and then finds the migrations applied.
async fn migrate(pool: &AnyPool) -> Result<()> {
    let mut attempt = 0;
    loop {
        match sqlx::migrate!("./migrations").run(pool).await {
            Ok(()) => return Ok(()),
            Err(e) if attempt < 10 => {
                attempt += 1;
                tracing::debug!(attempt, cause = %e, "migration raced another process; retrying");
                tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// `sqlite://path` with the file's directory created and `mode=rwc` (create if missing).
fn sqlite_url(url: &str) -> Result<String> {
    if url.contains(":memory:") {
        return Ok(url.to_owned());
    }
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .ok_or_else(|| Error::Url(url.to_owned()))?;
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if let Some(dir) = Path::new(path)
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
    {
        std::fs::create_dir_all(dir)?;
    }
    let mut params: Vec<&str> = query.split('&').filter(|p| !p.is_empty()).collect();
    if !params.iter().any(|p| p.starts_with("mode=")) {
        params.push("mode=rwc");
    }
    Ok(format!("sqlite://{path}?{}", params.join("&")))
}

impl FromStr for Backend {
    type Err = Error;
    fn from_str(url: &str) -> Result<Backend> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres") {
            Ok(Backend::Postgres)
        } else {
            Err(Error::Url(url.to_owned()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::unavailable_code;

    #[test]
    fn unavailable_codes_are_read_by_their_database() {
        // PostgreSQL: connection, resources, shutdown: not now. A bad byte (22021, digits only)
        // or a unique violation is a refusal, not an outage.
        for code in ["08006", "53300", "57P01", "58030"] {
            assert!(unavailable_code(code, true), "{code}");
        }
        for code in ["22021", "23505", "42601"] {
            assert!(!unavailable_code(code, true), "{code}");
        }
        // SQLite: BUSY, BUSY_SNAPSHOT (517), LOCKED, READONLY; not CONSTRAINT (19) or
        // CONSTRAINT_UNIQUE (2067).
        for code in ["5", "517", "6", "8"] {
            assert!(unavailable_code(code, false), "{code}");
        }
        for code in ["19", "2067", "1"] {
            assert!(!unavailable_code(code, false), "{code}");
        }
    }
}
