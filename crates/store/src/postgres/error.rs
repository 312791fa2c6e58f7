//! How a database failure becomes a [`StoreError`], and which failures are
//! worth running the whole transaction again for.
//!
//! Inside a transaction the engine works with [`Fault`]: a store error
//! (returned to the caller as is), or one of two failures after which
//! PostgreSQL has rolled the transaction back, so running it again from the
//! start is safe: a transient conflict (deadlock, serialization failure), or
//! a connection that broke before COMMIT (typically a pooled connection that
//! died with a server restart). `transaction!` and `read!` in `mod.rs` retry
//! those; what outlasts the retries reaches the caller as
//! [`StoreError::Backend`] or [`StoreError::Unavailable`]. A connection lost
//! *during* COMMIT is not retried: the outcome is unknown (`Tx::commit`).

use sqlx_core::error::DatabaseError;
use taskwheel_core::TransitionError;

use crate::StoreError;

/// What went wrong inside one transaction.
#[derive(Debug)]
pub(super) enum Fault {
    Store(StoreError),
    /// A deadlock or serialization failure: the transaction may be run again.
    Transient(String),
    /// The connection broke (I/O error): the server rolled the transaction
    /// back; it may be run again on another connection.
    Disconnected(String),
}

/// The result type of every function that runs inside a transaction.
pub(super) type Res<T> = std::result::Result<T, Fault>;

/// Splits one item's outcome into its caller's answer (the request was
/// refused: no such job, a transition the lifecycle forbids, an invalid
/// reference; nothing was written) and a failure that ends the transaction.
pub(super) fn answer<T>(outcome: Res<T>) -> Res<std::result::Result<T, StoreError>> {
    match outcome {
        Ok(value) => Ok(Ok(value)),
        Err(Fault::Store(
            e @ (StoreError::NotFound | StoreError::Transition(_) | StoreError::Invalid(_)),
        )) => Ok(Err(e)),
        Err(fault) => Err(fault),
    }
}

impl From<StoreError> for Fault {
    fn from(e: StoreError) -> Self {
        Fault::Store(e)
    }
}

impl From<TransitionError> for Fault {
    fn from(e: TransitionError) -> Self {
        Fault::Store(e.into())
    }
}

impl From<serde_json::Error> for Fault {
    fn from(e: serde_json::Error) -> Self {
        Fault::Store(e.into())
    }
}

impl From<sqlx_core::Error> for Fault {
    fn from(e: sqlx_core::Error) -> Self {
        classify(e)
    }
}

impl From<Fault> for StoreError {
    fn from(f: Fault) -> Self {
        match f {
            Fault::Store(e) => e,
            Fault::Transient(message) => StoreError::Backend(message),
            Fault::Disconnected(message) => StoreError::Unavailable(message),
        }
    }
}

impl From<sqlx_core::Error> for StoreError {
    fn from(e: sqlx_core::Error) -> Self {
        classify(e).into()
    }
}

/// Sorts a sqlx error into "cannot reach the database" (the caller may answer
/// 503 and retry later), "transient conflict" (run the transaction again),
/// and everything else (a bug or a broken database: `Backend`).
pub(super) fn classify(e: sqlx_core::Error) -> Fault {
    use sqlx_core::Error as E;
    let unavailable = |what: &str| Fault::Store(StoreError::Unavailable(what.to_string()));
    match e {
        E::Io(io) => Fault::Disconnected(format!("connection to PostgreSQL failed: {io}")),
        E::Tls(tls) => unavailable(&format!("TLS to PostgreSQL failed: {tls}")),
        E::PoolTimedOut => unavailable("no PostgreSQL connection became free in time"),
        E::WorkerCrashed => unavailable("the PostgreSQL connection worker crashed"),
        E::PoolClosed => Fault::Store(StoreError::Closed),
        E::Database(db) => classify_database(db.as_ref()),
        other => Fault::Store(StoreError::Backend(format!("PostgreSQL: {other}"))),
    }
}

fn classify_database(db: &dyn DatabaseError) -> Fault {
    let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
    let message = format!("PostgreSQL: {} (SQLSTATE {code})", db.message());
    match code.as_str() {
        // serialization_failure, deadlock_detected: the server rolled us back.
        "40001" | "40P01" => Fault::Transient(message),
        // Class 08 (connection exception), the session terminated by an admin
        // or a crash: the transaction is gone with the connection.
        c if c.starts_with("08") => Fault::Disconnected(message),
        "57P01" | "57P02" => Fault::Disconnected(message),
        // Cannot connect now (starting up, recovering), too many connections.
        "57P03" | "53300" => Fault::Store(StoreError::Unavailable(message)),
        _ => Fault::Store(StoreError::Backend(message)),
    }
}

/// True when `e` is a unique violation of the index or constraint `name`.
pub(super) fn is_unique_violation(e: &sqlx_core::Error, name: &str) -> bool {
    match e {
        sqlx_core::Error::Database(db) => {
            db.code().as_deref() == Some("23505") && db.constraint() == Some(name)
        }
        _ => false,
    }
}
