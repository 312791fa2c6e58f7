//! WAL checkpoints off the write path. SQLite's automatic checkpoint runs in
//! the committing connection, so the writer (and every request waiting on it)
//! would stall while pages are copied back and the database file is synced.
//! Instead the writer never checkpoints, and this thread does it with its own
//! connection, in PASSIVE mode, which never blocks the writer.

use std::path::Path;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use crate::Result;

/// How often the WAL is copied back into the database file.
const INTERVAL: Duration = Duration::from_millis(500);

/// Stops the thread when dropped.
pub(super) struct Checkpointer {
    _stop: mpsc::Sender<()>,
}

impl Checkpointer {
    pub(super) fn spawn(path: &Path) -> Result<Self> {
        let conn = super::open_connection(path, false)?;
        let (stop, stopped) = mpsc::channel::<()>();
        thread::Builder::new()
            .name("taskwheel-sqlite-checkpoint".into())
            .spawn(move || {
                // Wakes every INTERVAL until the sender is dropped with the store.
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(INTERVAL) {
                    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                    {
                        tracing::warn!(error = %e, "WAL checkpoint failed");
                    }
                }
            })
            .map_err(|e| {
                crate::StoreError::Backend(format!("cannot start the checkpointer: {e}"))
            })?;
        Ok(Self { _stop: stop })
    }
}
