//! Database plumbing both services share: pools for the two backends, with
//! the settings money needs, and the one place unique-key violations become
//! a domain-level conflict.
use std::{str::FromStr, time::Duration};

use sqlx::{
    postgres::{PgConnectOptions, PgPoolOptions},
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
    PgPool, SqlitePool,
};

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
    let writer = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options.clone())
        .await?;
    let reader = SqlitePoolOptions::new()
        .max_connections(readers.max(1))
        .connect_with(options.read_only(true))
        .await?;
    Ok((writer, reader))
}

/// A PostgreSQL pool.
pub async fn pg_pool(url: &str, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    PgPoolOptions::new()
        .max_connections(max_connections.max(1))
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(PgConnectOptions::from_str(url)?)
        .await
}

/// Whether an error is a unique-key violation.
pub fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}
