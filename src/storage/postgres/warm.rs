//! Connections kept between the hot single statements.
//!
//! sqlx 0.8 tests every connection given back to its pool with a round trip to the
//! server (a `Sync` and its `ReadyForQuery`, on a task it spawns) before anyone can
//! have it again: one more round trip, a task and a wake-up for each statement. The
//! hot statements (a rotation, a bearer's user) lease a connection here instead. A
//! lease whose statement completed comes back to this short list as it is: the server
//! has answered in full, so there is nothing to test. A lease whose statement failed,
//! or whose future was dropped mid-way, goes back to sqlx, which tests or closes it as
//! before.
//!
//! Kept connections count as checked out in sqlx's pool, and an idle kept connection
//! is one the pool cannot hand to anyone else: the pool always keeps [`RESERVE`]
//! connections for other statements (cleanup holds one for its lock while it works on
//! another), at most half of the rest is kept, and a pool of `RESERVE` or fewer keeps
//! none. Each kept connection goes back through sqlx (its lifetime and health checks)
//! a minute after it was taken from it.

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use sqlx::{pool::PoolConnection, PgConnection, PgPool, Postgres};

/// How long a connection stays out of sqlx's pool before it is handed back once.
const RETIRE_AFTER: Duration = Duration::from_secs(60);

/// Connections never kept, left to sqlx's pool for every other statement.
const RESERVE: u32 = 4;

/// The kept connections.
#[derive(Debug)]
pub(super) struct Warm {
    state: Mutex<State>,
    cap: usize,
}

#[derive(Debug, Default)]
struct State {
    idle: Vec<Kept>,
    closed: bool,
}

#[derive(Debug)]
struct Kept {
    conn: PoolConnection<Postgres>,
    taken_from_pool: Instant,
}

impl Warm {
    /// Keeps up to half of what `pool` has beyond [`RESERVE`].
    pub(super) fn for_pool(pool: &PgPool) -> Self {
        Self::with_max_connections(pool.options().get_max_connections())
    }

    fn with_max_connections(max: u32) -> Self {
        Self {
            state: Mutex::new(State::default()),
            cap: usize::try_from(max.saturating_sub(RESERVE) / 2).unwrap_or(0),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A kept connection, or a new lease from `pool`.
    pub(super) async fn lease<'a>(&'a self, pool: &PgPool) -> Result<Lease<'a>, sqlx::Error> {
        let kept = self.state().idle.pop();
        let kept = match kept {
            Some(kept) => kept,
            None => Kept {
                conn: pool.acquire().await?,
                taken_from_pool: Instant::now(),
            },
        };
        Ok(Lease {
            home: self,
            kept: Some(kept),
            completed: false,
        })
    }

    /// Hands every kept connection back to sqlx and keeps none from now on (before the
    /// pool is closed, which waits for every checked-out connection).
    pub(super) fn close(&self) {
        let idle = {
            let mut state = self.state();
            state.closed = true;
            std::mem::take(&mut state.idle)
        };
        drop(idle);
    }

    /// How many connections are kept idle.
    pub(super) fn idle(&self) -> usize {
        self.state().idle.len()
    }
}

/// One connection for one statement; see the module's documentation.
pub(super) struct Lease<'a> {
    home: &'a Warm,
    kept: Option<Kept>,
    completed: bool,
}

impl Lease<'_> {
    /// The connection, for one statement.
    pub(super) fn conn(&mut self) -> &mut PgConnection {
        match self.kept.as_mut() {
            Some(kept) => &mut kept.conn,
            None => unreachable!("BUG: a lease holds its connection until dropped"),
        }
    }

    /// The statement completed: the connection is idle and may be kept.
    pub(super) fn completed(&mut self) {
        self.completed = true;
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let Some(kept) = self.kept.take() else {
            return;
        };
        if self.completed && kept.taken_from_pool.elapsed() < RETIRE_AFTER {
            let mut state = self.home.state();
            if !state.closed && state.idle.len() < self.home.cap {
                state.idle.push(kept);
                return;
            }
        }
        // Back to sqlx, which tests the connection (or closes it) on its own task.
        drop(kept);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pool_keeps_its_reserve() {
        for (max, cap) in [(1, 0), (2, 0), (4, 0), (5, 0), (6, 1), (16, 6), (100, 48)] {
            assert_eq!(
                Warm::with_max_connections(max).cap,
                cap,
                "{max} connections"
            );
        }
    }
}
