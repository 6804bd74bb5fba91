//! Database calls with a deadline. A server that is gone — or a link that
//! went silent, with no FIN and no RST — cannot enforce its own
//! `statement_timeout`, so every call ends within the client's limit, and
//! a connection whose call ran out is closed rather than put back in the
//! pool: its answer may still come, to whoever used it next.

use std::{
    future::Future,
    ops::{Deref, DerefMut},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use diesel_async::{
    AsyncPgConnection,
    pooled_connection::deadpool::{Object, Pool},
};

use super::error::{DbError, Result};

/// A pooled connection, held for one call. Dropped, it goes back to the
/// pool — unless its call was abandoned midway, when it is closed.
pub(super) struct Conn {
    object: Option<Object<AsyncPgConnection>>,
    abandoned: Arc<AtomicBool>,
}

impl Deref for Conn {
    type Target = AsyncPgConnection;

    fn deref(&self) -> &AsyncPgConnection {
        self.object.as_ref().expect("held until dropped")
    }
}

impl DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut AsyncPgConnection {
        self.object.as_mut().expect("held until dropped")
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if self.abandoned.load(Ordering::Acquire)
            && let Some(object) = self.object.take()
        {
            drop(Object::take(object));
        }
    }
}

/// Sets its flag when dropped: once the call it guards is over, however it
/// ended, a connection the call still holds was left midway.
struct AbandonOnDrop(Arc<AtomicBool>);

impl Drop for AbandonOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// Where calls get their connections, and how long each may take.
#[derive(Clone)]
pub(super) struct Connections {
    pool: Pool<AsyncPgConnection>,
    address: String,
    limit: Duration,
}

impl Connections {
    pub(super) fn new(pool: Pool<AsyncPgConnection>, address: String, limit: Duration) -> Self {
        Self {
            pool,
            address,
            limit,
        }
    }

    /// The longest one call may take.
    pub(super) fn limit(&self) -> Duration {
        self.limit
    }

    /// The error of a call that ran out of time.
    pub(super) fn timed_out(&self) -> DbError {
        DbError::Timeout {
            address: self.address.clone(),
            after: self.limit,
        }
    }

    /// Runs `work` on a connection of the pool, waiting for one included,
    /// within the limit. A call that runs out — or whose caller stops
    /// waiting — closes the connection it held instead of returning it.
    pub(super) async fn call<T, F, Fut>(&self, work: F) -> Result<T>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let abandoned = Arc::new(AtomicBool::new(false));
        let call = std::pin::pin!(async {
            let object = self
                .pool
                .get()
                .await
                .map_err(|source| DbError::NoConnection {
                    address: self.address.clone(),
                    source,
                })?;
            work(Conn {
                object: Some(object),
                abandoned: abandoned.clone(),
            })
            .await
        });
        // Declared after the call, so dropped before it: the flag is set
        // before an unfinished call lets go of its connection.
        let _abandon = AbandonOnDrop(abandoned.clone());
        tokio::time::timeout(self.limit, call)
            .await
            .unwrap_or_else(|_| Err(self.timed_out()))
    }
}
