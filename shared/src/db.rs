//! Database plumbing both services share: which backend a URL names, pools
//! with the settings money needs, the store's error and the one place where
//! database errors are classified, and the mapping of the domain's enums to
//! stored text (checked by each table's `CHECK` constraints).
use std::{
    str::FromStr,
    sync::atomic::{AtomicI64, Ordering},
    time::Duration,
};

use sqlx::{
    postgres::PgConnectOptions,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous},
    PgPool, SqlitePool,
};

mod kept;
pub use kept::{Kept, KeptConnections};

/// The two databases paybind runs on, chosen by the URL's scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The embedded default: `sqlite:path/file.db`.
    Sqlite,
    /// Production: `postgres://user@host/db`.
    Postgres,
}

impl Backend {
    pub fn of_url(url: &str) -> anyhow::Result<Self> {
        if url.starts_with("sqlite:") {
            Ok(Self::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres)
        } else {
            anyhow::bail!(
                "database.url must start with sqlite: or postgres:// (got another scheme)"
            )
        }
    }

    /// "sqlite" or "postgres", for logs and the benchmark report.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }

    /// How many group-commit batches may be written at once. SQLite has one
    /// writer: a second batch in flight would only wait for it, and take
    /// requests away from the batch being formed.
    pub fn batches_in_flight(self) -> usize {
        match self {
            Self::Sqlite => 1,
            Self::Postgres => 4,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique key is already taken.
    #[error("already exists: {0}")]
    Conflict(String),
    /// A row changed since it was read (optimistic concurrency).
    #[error("the record changed concurrently")]
    VersionConflict,
    /// What is stored cannot be what was written: an unknown status, a
    /// state without its data. Never papered over with a default.
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
    #[error("migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

pub type StoreResult<T> = Result<T, StoreError>;

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        note_connection_failure(&err);
        Self::Database(err)
    }
}

/// Starts [`PING_ALL_AFTER_FAILURE`] if `err` is a lost connection.
fn note_connection_failure(err: &sqlx::Error) {
    if is_connection_failure(err) {
        CONNECTION_FAILED_MS.store(crate::clock::now_ms(), Ordering::Relaxed);
    }
}

/// When this process last saw a database connection fail (Unix ms; 0:
/// never): for a while after, every pool pings what it hands out
/// ([`pool_options`]).
static CONNECTION_FAILED_MS: AtomicI64 = AtomicI64::new(0);

/// A connection lost, refused or ended by the server (a restart, a
/// failover, a terminated backend): the others opened to the same server
/// may be gone too.
fn is_connection_failure(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|code| code.starts_with("08") || code.starts_with("57P")),
        _ => false,
    }
}

impl StoreError {
    /// A failure that says nothing about the request: the database was
    /// unreachable or busy, or picked this transaction to break a deadlock.
    /// The same request may succeed if sent again; callers see UNAVAILABLE.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Database(e) => is_transient(e),
            _ => false,
        }
    }
}

/// Whether a database error is transient (see [`StoreError::is_transient`]):
/// a lost or refused connection, an exhausted or closed pool, and the
/// PostgreSQL states of connection failures (class 08), serialization
/// failures and deadlocks (40001, 40P01), shutdowns (57P0x), too many
/// connections (53300) and lock timeouts (55P03); SQLite's busy and locked.
pub fn is_transient(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => match db.code() {
            Some(code) => {
                code.starts_with("08")
                    || code.starts_with("57P")
                    || matches!(
                        code.as_ref(),
                        "40001" | "40P01" | "53300" | "55P03" | "5" | "6" | "261" | "517"
                    )
            }
            None => false,
        },
        _ => false,
    }
}

/// Runs `attempt` again while it fails transiently — a deadlock victim, a
/// dropped connection — up to `tries` times in all, pausing a few jittered
/// milliseconds, growing, between tries. The last error is returned.
pub async fn retry_transient<T, F, Fut>(what: &str, tries: u32, mut attempt: F) -> StoreResult<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = StoreResult<T>>,
{
    let mut pause_ms = 5u64;
    let mut tried = 1;
    loop {
        match attempt().await {
            Err(e) if e.is_transient() && tried < tries => {
                tracing::warn!(what, tried, error = %e, "transient database failure; trying again");
                let jitter = rand::random::<u64>() % pause_ms.max(1);
                tokio::time::sleep(Duration::from_millis(pause_ms + jitter)).await;
                pause_ms = (pause_ms * 3).min(500);
                tried += 1;
            }
            other => return other,
        }
    }
}

/// Turns unique-key violations into [`StoreError::Conflict`], in one place.
pub fn classify(err: sqlx::Error) -> StoreError {
    if matches!(&err, sqlx::Error::Database(db) if db.is_unique_violation()) {
        return StoreError::Conflict(err.to_string());
    }
    StoreError::from(err)
}

/// The error for a stored value a column cannot hold: names the column and
/// (the start of) the value.
pub fn unknown_value(column: &str, value: &str) -> StoreError {
    StoreError::Corrupt(format!(
        "{column} holds unknown value {:?}",
        value.chars().take(40).collect::<String>()
    ))
}

/// Spells a domain enum for the database, in a module of its own:
/// `stored_enum!(pub payment_status: PaymentStatus, "payments.status", { Pending => "PENDING", … });`
/// gives `payment_status::to_stored(value)` and
/// `payment_status::from_stored(text)`, the only place the spelling lives.
/// An unknown stored value is an error naming `table.column` and the value.
#[macro_export]
macro_rules! stored_enum {
    ($vis:vis $module:ident : $ty:ident, $column:literal, { $($variant:ident => $text:literal),+ $(,)? }) => {
        $vis mod $module {
            #[allow(unused_imports)]
            use super::*;

            pub fn to_stored(value: $ty) -> &'static str {
                match value {
                    $($ty::$variant => $text,)+
                }
            }

            pub fn from_stored(value: &str) -> $crate::db::StoreResult<$ty> {
                match value {
                    $($text => Ok($ty::$variant),)+
                    other => Err($crate::db::unknown_value($column, other)),
                }
            }
        }
    };
}

/// Declares a row struct and its column list (in the struct's order), and
/// binds every column of a row, in that order, to a statement.
#[macro_export]
macro_rules! table_row {
    ($(#[$meta:meta])* $name:ident { $($field:ident : $ty:ty),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, sqlx::FromRow)]
        pub struct $name {
            $(pub $field: $ty,)+
        }

        impl $name {
            pub const COLUMNS: &'static [&'static str] = &[$(stringify!($field)),+];

            pub fn bind_all<'q, DB, O>(
                &'q self,
                mut query: sqlx::query::QueryAs<'q, DB, O, <DB as sqlx::Database>::Arguments<'q>>,
            ) -> sqlx::query::QueryAs<'q, DB, O, <DB as sqlx::Database>::Arguments<'q>>
            where
                DB: sqlx::Database,
                $(&'q $ty: sqlx::Encode<'q, DB> + sqlx::Type<DB>,)+
            {
                $(query = query.bind(&self.$field);)+
                query
            }
        }
    };
}

/// `INSERT INTO table (all columns) VALUES ($1 … $n) <tail>`.
pub fn insert_sql(table: &str, columns: &[&str], tail: &str) -> String {
    let placeholders: Vec<String> = (1..=columns.len()).map(|i| format!("${i}")).collect();
    format!(
        "INSERT INTO {table} ({}) VALUES ({}) {tail}",
        columns.join(", "),
        placeholders.join(", ")
    )
}

/// `UPDATE table SET every column = $i WHERE id = $1 AND version = $(n+1)
/// RETURNING id`: a whole row written over the version it was read at.
pub fn versioned_update_sql(table: &str, columns: &[&str]) -> String {
    let sets: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{c} = ${}", i + 1))
        .collect();
    format!(
        "UPDATE {table} SET {} WHERE id = $1 AND version = ${} RETURNING id",
        sets.join(", "),
        columns.len() + 1
    )
}

/// SQLite pools: one writer connection (SQLite has one writer at a time, so
/// writes never meet a busy lock) and a pool of read-only readers. WAL,
/// `synchronous = FULL`, foreign keys on, the file created if missing.
pub async fn sqlite_pools(
    url: &str,
    readers: u32,
) -> Result<(SqlitePool, SqlitePool), sqlx::Error> {
    let options = SqliteConnectOptions::from_str(url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(Duration::from_secs(10))
        .foreign_keys(true);
    let writer = pool_options::<sqlx::Sqlite>()
        .max_connections(1)
        .connect_with(options.clone())
        .await?;
    let reader = pool_options::<sqlx::Sqlite>()
        .max_connections(readers.max(1))
        .connect_with(options.read_only(true))
        .await?;
    Ok((writer, reader))
}

/// A PostgreSQL pool.
pub async fn pg_pool(url: &str, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    pool_options::<sqlx::Postgres>()
        .max_connections(max_connections.max(1))
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(PgConnectOptions::from_str(url)?)
        .await
}

/// A connection idle at least this long is pinged before it is handed out.
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(1);
/// For this long after a connection failed, every connection is pinged
/// before it is handed out.
const PING_ALL_AFTER_FAILURE: Duration = Duration::from_secs(30);

/// How every pool of both services hands out connections. sqlx's default
/// pings each connection it hands out, and again as it comes back: three
/// round trips for a one-statement write (the two pings together were
/// about a tenth of both services' and PostgreSQL's CPU under load,
/// BENCHMARKS.md). The ping on the way back stays (sqlx always makes it;
/// hot writers skip it by keeping their connections, [`KeptConnections`]):
/// a connection in the idle queue was alive when it was last used. So the
/// first one is made only where it can find something: on a connection
/// idle for [`PING_IF_IDLE_FOR`] or more, and on every connection for
/// [`PING_ALL_AFTER_FAILURE`] after any connection of this process failed
/// (a restart or failover of the database ends every idle connection at
/// once; those are then found by the ping and replaced, as by default).
/// What that leaves to fail is a statement on a connection that broke in
/// the moment before the first failure was seen, as one that breaks while
/// in use always could; the writes that matter try again
/// ([`retry_transient`]).
pub fn pool_options<DB: sqlx::Database>() -> sqlx::pool::PoolOptions<DB> {
    sqlx::pool::PoolOptions::<DB>::new()
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if worth_a_ping(meta.idle_for) {
                    // Most often the first to find the database restarted:
                    // the connections idle for less are as dead.
                    sqlx::Connection::ping(conn)
                        .await
                        .inspect_err(note_connection_failure)?;
                }
                Ok(true)
            })
        })
}

/// Whether a connection idle for `idle_for` is pinged before it is used
/// (see [`pool_options`]).
fn worth_a_ping(idle_for: Duration) -> bool {
    let since_failure =
        crate::clock::now_ms().saturating_sub(CONNECTION_FAILED_MS.load(Ordering::Relaxed));
    let after_failure =
        u128::try_from(since_failure).is_ok_and(|ms| ms < PING_ALL_AFTER_FAILURE.as_millis());
    after_failure || idle_for >= PING_IF_IDLE_FOR
}

/// What `pools` hold now, together (SQLite's writer and readers; one
/// PostgreSQL pool), for the metrics.
pub fn pool_use<DB: sqlx::Database>(pools: &[&sqlx::Pool<DB>]) -> crate::metrics::PoolUse {
    pools.iter().fold(
        crate::metrics::PoolUse {
            open: 0,
            idle: 0,
            max: 0,
        },
        |sum, pool| crate::metrics::PoolUse {
            open: sum.open + pool.size(),
            idle: sum.idle + pool.num_idle() as u32,
            max: sum.max + pool.options().get_max_connections(),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Colour {
        Red,
        Blue,
    }
    stored_enum!(colour: Colour, "paint.colour", { Red => "RED", Blue => "BLUE" });

    #[test]
    fn stored_enums_round_trip_and_refuse_unknown_values_by_name() {
        for c in [Colour::Red, Colour::Blue] {
            assert_eq!(colour::from_stored(colour::to_stored(c)).expect("known"), c);
        }
        let err = colour::from_stored("GREEN").expect_err("unknown");
        assert_eq!(
            err.to_string(),
            "stored data is inconsistent: paint.colour holds unknown value \"GREEN\""
        );
    }

    #[test]
    fn update_and_insert_statements_list_every_column_once() {
        let insert = insert_sql("t", &["id", "version", "a"], "RETURNING *");
        assert_eq!(
            insert,
            "INSERT INTO t (id, version, a) VALUES ($1, $2, $3) RETURNING *"
        );
        let update = versioned_update_sql("t", &["id", "version", "a"]);
        assert_eq!(
            update,
            "UPDATE t SET id = $1, version = $2, a = $3 WHERE id = $1 AND version = $4 RETURNING id"
        );
    }

    #[tokio::test]
    async fn transient_failures_are_tried_again_and_others_are_not() {
        let tries = std::sync::atomic::AtomicU32::new(0);
        let result: StoreResult<u32> = retry_transient("test", 4, || {
            let n = tries.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move {
                if n < 2 {
                    Err(StoreError::Database(sqlx::Error::PoolTimedOut))
                } else {
                    Ok(n)
                }
            }
        })
        .await;
        assert_eq!(result.expect("third try"), 2);
        let tries = std::sync::atomic::AtomicU32::new(0);
        let result: StoreResult<()> = retry_transient("test", 4, || {
            tries.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async { Err(StoreError::Corrupt("x".into())) }
        })
        .await;
        assert!(result.is_err());
        assert_eq!(tries.into_inner(), 1, "not transient: not tried again");
        let result: StoreResult<()> = retry_transient("test", 3, || async {
            Err(StoreError::Database(sqlx::Error::PoolClosed))
        })
        .await;
        assert!(result.expect_err("gives up").is_transient());
    }

    #[test]
    fn a_lost_connection_has_every_pool_ping_for_a_while_and_other_errors_do_not() {
        let before = crate::clock::now_ms();
        let _ = StoreError::from(sqlx::Error::RowNotFound);
        let _ = StoreError::from(sqlx::Error::PoolTimedOut);
        assert!(
            CONNECTION_FAILED_MS.load(Ordering::Relaxed) < before,
            "not a lost connection"
        );
        let lost = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert!(StoreError::from(sqlx::Error::Io(lost)).is_transient());
        assert!(CONNECTION_FAILED_MS.load(Ordering::Relaxed) >= before);
    }

    #[test]
    fn backends_by_scheme() {
        assert_eq!(
            Backend::of_url("sqlite:x.db").expect("sqlite"),
            Backend::Sqlite
        );
        assert_eq!(
            Backend::of_url("postgresql://u@h/d").expect("pg"),
            Backend::Postgres
        );
        assert!(Backend::of_url("mysql://u@h/d").is_err());
    }
}
