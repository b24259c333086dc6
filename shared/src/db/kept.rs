//! Connections a hot writer keeps between its writes.
//!
//! sqlx pings every connection given back to its pool, always: for a
//! one-statement write (an order placed, an order settled) that is a second
//! round trip, and on PostgreSQL a second wake-up of the server's process
//! and a second TLS record each way. A writer that takes its connection
//! from a [`KeptConnections`] and hands it back with [`Kept::keep`] after a
//! write that succeeded skips that ping; the next write takes the same
//! connection.
//!
//! Kept connections stay the pool's: they count against its size while
//! kept (so at most `most` of them are held back from other users), and one
//! dropped without `keep` — its write failed or was cancelled — goes back
//! to the pool the usual way, where sqlx pings it and closes it if broken.
//! A kept connection is used again only while the pool itself would hand
//! it out unpinged (`worth_a_ping`): within a second of its last use, and
//! not for a while after any connection of this process failed. Otherwise
//! it goes back to the pool, and the connection comes from the pool, which
//! pings it within its acquire timeout (a database restart ends every idle
//! connection at once; those are then found by that ping and replaced).
//! Giving them back also lets the pool's own upkeep (its connections'
//! lifetime) apply to them.
use std::{
    sync::{Mutex, PoisonError},
    time::Instant,
};

use sqlx::{pool::PoolConnection, Database, Pool};

use super::worth_a_ping;

pub struct KeptConnections<DB: Database> {
    pool: Pool<DB>,
    /// The connections kept now, each with the time it was last used:
    /// the last kept is taken first (it is the warmest).
    idle: Mutex<Vec<(PoolConnection<DB>, Instant)>>,
    most: usize,
    /// Whether a connection idle this long goes back to the pool instead
    /// (`worth_a_ping`; another rule in tests).
    stale: fn(std::time::Duration) -> bool,
}

impl<DB: Database> KeptConnections<DB> {
    /// Keeps at most `most` connections of `pool`; with 0 (SQLite's one
    /// writer, which no one else could then use) every connection goes
    /// back to the pool after each write, as if taken from it directly.
    pub fn new(pool: Pool<DB>, most: usize) -> Self {
        Self {
            pool,
            idle: Mutex::new(Vec::with_capacity(most)),
            most,
            stale: worth_a_ping,
        }
    }

    /// A kept connection, or one from the pool if none is kept now.
    pub async fn take(&self) -> Result<Kept<'_, DB>, sqlx::Error> {
        loop {
            let next = self
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop();
            let Some((conn, last_used)) = next else {
                let conn = self.pool.acquire().await?;
                return Ok(Kept { conn, home: self });
            };
            if (self.stale)(last_used.elapsed()) {
                // Back to the pool (dropped), which pings what it hands out
                // in such a case, within its acquire timeout.
                drop(conn);
                continue;
            }
            return Ok(Kept { conn, home: self });
        }
    }

    /// How many connections are kept now (for the tests).
    #[cfg(test)]
    fn kept(&self) -> usize {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// A connection taken from [`KeptConnections`]: it derefs to the
/// connection, and goes back to the pool when dropped (the pool connection's
/// own drop) unless [`Kept::keep`] is called.
pub struct Kept<'a, DB: Database> {
    conn: PoolConnection<DB>,
    home: &'a KeptConnections<DB>,
}

impl<DB: Database> Kept<'_, DB> {
    /// The write on it succeeded: keep it for the next one (if fewer than
    /// `most` are kept; otherwise it goes back to the pool).
    pub fn keep(self) {
        let Self { conn, home } = self;
        let mut idle = home.idle.lock().unwrap_or_else(PoisonError::into_inner);
        // The stale ones go back to the pool now: with few writers the
        // oldest would otherwise never be taken again.
        idle.retain(|(_, last_used)| !(home.stale)(last_used.elapsed()));
        if idle.len() < home.most {
            idle.push((conn, Instant::now()));
        }
    }
}

impl<DB: Database> std::ops::Deref for Kept<'_, DB> {
    type Target = DB::Connection;

    fn deref(&self) -> &Self::Target {
        &self.conn
    }
}

impl<DB: Database> std::ops::DerefMut for Kept<'_, DB> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.conn
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::{
            atomic::{AtomicUsize, Ordering},
            Arc,
        },
        time::Duration,
    };

    use sqlx::sqlite::SqlitePoolOptions;

    use super::*;

    /// A pool of in-memory SQLite connections that counts the connections
    /// given back to it, and a `KeptConnections` of it whose rule for
    /// "stale" is `stale` (not the process-wide one, which other tests move).
    async fn pool_and_kept(
        max: u32,
        most: usize,
        stale: fn(Duration) -> bool,
    ) -> (
        Pool<sqlx::Sqlite>,
        KeptConnections<sqlx::Sqlite>,
        Arc<AtomicUsize>,
    ) {
        let given_back = Arc::new(AtomicUsize::new(0));
        let counter = given_back.clone();
        let pool = SqlitePoolOptions::new()
            .max_connections(max)
            .after_release(move |_, _| {
                counter.fetch_add(1, Ordering::SeqCst);
                Box::pin(async { Ok(true) })
            })
            .connect("sqlite::memory:")
            .await
            .expect("pool");
        let kept = KeptConnections {
            pool: pool.clone(),
            idle: Mutex::new(Vec::new()),
            most,
            stale,
        };
        (pool, kept, given_back)
    }

    fn never(_: Duration) -> bool {
        false
    }

    fn after_50_ms(idle: Duration) -> bool {
        idle >= Duration::from_millis(50)
    }

    /// Whether `conn` is the connection that made the temporary table
    /// `mark` (each SQLite connection has its own).
    async fn marked(conn: &mut sqlx::SqliteConnection) -> bool {
        sqlx::query("SELECT x FROM mark")
            .fetch_all(conn)
            .await
            .is_ok()
    }

    async fn mark(conn: &mut sqlx::SqliteConnection) {
        sqlx::query("CREATE TEMP TABLE mark (x INTEGER)")
            .execute(conn)
            .await
            .expect("mark it");
    }

    /// Waits for `expected` connections to have been given back to the pool
    /// (each goes back in a task of its own).
    async fn given_back_reaches(given_back: &AtomicUsize, expected: usize) {
        for _ in 0..1_000 {
            if given_back.load(Ordering::SeqCst) == expected {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!(
            "{} connections given back to the pool, not {expected}",
            given_back.load(Ordering::SeqCst)
        );
    }

    #[tokio::test]
    async fn a_kept_connection_is_taken_next_and_one_not_kept_goes_back_to_the_pool() {
        let (_pool, kept, given_back) = pool_and_kept(3, 1, never).await;

        let mut first = kept.take().await.expect("from the pool");
        mark(&mut first).await;
        first.keep();
        assert_eq!(kept.kept(), 1);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(given_back.load(Ordering::SeqCst), 0, "kept, not given back");

        let mut again = kept.take().await.expect("the kept one");
        assert!(
            marked(&mut again).await,
            "the kept connection is taken next"
        );
        let mut other = kept.take().await.expect("from the pool");
        assert!(!marked(&mut other).await, "none kept now: another one");

        again.keep();
        other.keep();
        assert_eq!(kept.kept(), 1, "at most `most` are kept");
        given_back_reaches(&given_back, 1).await;
        let mut next = kept.take().await.expect("the kept one");
        assert!(marked(&mut next).await, "the first kept stays kept");

        // Its write failed (dropped without `keep`): back to the pool.
        drop(next);
        assert_eq!(kept.kept(), 0);
        given_back_reaches(&given_back, 2).await;
    }

    #[tokio::test]
    async fn a_stale_kept_connection_goes_back_to_the_pool_instead_of_being_used() {
        let (_pool, kept, given_back) = pool_and_kept(3, 2, after_50_ms).await;
        kept.take().await.expect("from the pool").keep();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let taken = kept.take().await.expect("from the pool");
        given_back_reaches(&given_back, 1).await;
        assert_eq!(kept.kept(), 0);
        drop(taken);

        // Kept while another is kept and stale: that one goes back.
        let (first, second) = (
            kept.take().await.expect("one"),
            kept.take().await.expect("two"),
        );
        first.keep();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let before = given_back.load(Ordering::SeqCst);
        second.keep();
        assert_eq!(kept.kept(), 1, "only the fresh one is kept");
        given_back_reaches(&given_back, before + 1).await;
    }

    #[tokio::test]
    async fn none_are_kept_when_none_may_be() {
        let (pool, kept, given_back) = pool_and_kept(1, 0, never).await;
        kept.take().await.expect("the one").keep();
        assert_eq!(kept.kept(), 0);
        given_back_reaches(&given_back, 1).await;
        // The pool's only connection is the pool's again: taken directly.
        pool.acquire().await.expect("given back");
    }
}
