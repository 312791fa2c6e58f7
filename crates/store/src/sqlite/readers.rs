//! A few read-only connections for lookups and listings. In WAL mode readers
//! never block the writer and see every committed transaction.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::Connection;
use tokio::sync::Semaphore;

use crate::{Result, StoreError};

pub(super) struct Readers {
    // A std Mutex: held only to pop or push a connection, never across an await.
    idle: Mutex<Vec<Connection>>,
    // One permit per connection, so a permit guarantees an idle connection.
    permits: Semaphore,
}

impl Readers {
    pub(super) fn open(path: &Path, count: usize) -> Result<Arc<Self>> {
        let conns = (0..count)
            .map(|_| super::open_connection(path, true))
            .collect::<Result<Vec<_>>>()?;
        Ok(Arc::new(Self {
            idle: Mutex::new(conns),
            permits: Semaphore::new(count),
        }))
    }

    pub(super) async fn read<T, F>(self: &Arc<Self>, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| StoreError::Closed)?;
        let this = Arc::clone(self);
        let outcome = tokio::task::spawn_blocking(move || {
            let conn = this
                .idle
                .lock()
                .expect("reader pool lock")
                .pop()
                .expect("a permit guarantees an idle connection");
            let outcome = f(&conn);
            this.idle.lock().expect("reader pool lock").push(conn);
            outcome
        })
        .await
        .map_err(|e| StoreError::Backend(format!("read task failed: {e}")))?;
        drop(permit);
        outcome
    }
}
