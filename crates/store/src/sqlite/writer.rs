//! The single writer. SQLite allows one writer at a time, so one thread owns
//! the write connection and runs every mutation. Operations that arrive while
//! a transaction is being committed queue up and share the next one: many
//! requests, one transaction, one fsync ("group commit"). Each operation runs
//! inside its own savepoint, so one that fails is rolled back alone, and its
//! caller hears back only after the commit that made it durable.

use std::sync::mpsc;
use std::thread;

use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::{Result, StoreError};

/// Sends the outcome of one operation once its transaction's fate is known.
type Reply = Box<dyn FnOnce(Option<&StoreError>) + Send>;
type Op = Box<dyn FnOnce(&Connection) -> Reply + Send>;

/// The most operations that share one transaction; bounds commit latency under load.
const MAX_GROUP: usize = 1024;

/// A handle to the writer thread; cheap to clone.
#[derive(Clone)]
pub(super) struct Writer {
    ops: mpsc::Sender<Op>,
}

impl Writer {
    pub(super) fn spawn(conn: Connection) -> std::io::Result<Self> {
        let (ops, rx) = mpsc::channel::<Op>();
        thread::Builder::new()
            .name("taskwheel-sqlite-writer".into())
            .spawn(move || run(conn, rx))?;
        Ok(Self { ops })
    }

    /// Runs `f` in the next group transaction; resolves after it is committed.
    pub(super) async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let op: Op = Box::new(move |conn| {
            let outcome = in_savepoint(conn, f);
            Box::new(move |commit_error| {
                let _ = tx.send(match commit_error {
                    Some(e) => Err(e.clone()),
                    None => outcome,
                });
            })
        });
        self.ops.send(op).map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }
}

/// Runs `f` in a savepoint: an error undoes its writes and nothing else.
pub(super) fn in_savepoint<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> Result<T>,
) -> Result<T> {
    conn.prepare_cached("SAVEPOINT op")?.execute([])?;
    let outcome = f(conn);
    if outcome.is_err() {
        conn.prepare_cached("ROLLBACK TO op")?.execute([])?;
    }
    conn.prepare_cached("RELEASE op")?.execute([])?;
    outcome
}

fn run(conn: Connection, rx: mpsc::Receiver<Op>) {
    while let Ok(first) = rx.recv() {
        let mut group = Vec::with_capacity(16);
        group.push(first);
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(op) => group.push(op),
                Err(_) => break,
            }
        }
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            let err = StoreError::from(e);
            tracing::error!(error = %err, "cannot begin a write transaction");
            // Each op must still hear back; run none of them.
            for op in group {
                drop(op);
            }
            continue;
        }
        let replies: Vec<Reply> = group.into_iter().map(|op| op(&conn)).collect();
        let commit_error = conn.execute_batch("COMMIT").err().map(|e| {
            let err = StoreError::from(e);
            tracing::error!(error = %err, ops = replies.len(), "group commit failed; rolling back");
            let _ = conn.execute_batch("ROLLBACK");
            err
        });
        for reply in replies {
            reply(commit_error.as_ref());
        }
    }
    tracing::debug!("SQLite writer stopped");
}
