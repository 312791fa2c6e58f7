//! The conformance suite against the embedded SQLite engine, each case in a
//! fresh temporary data directory.

use std::sync::Arc;

use taskwheel_store::{SqliteStore, Store};

async fn fresh() -> Arc<dyn Store> {
    // The directory must outlive the store; leaking it is fine in a test process.
    let dir = tempfile::tempdir().expect("tempdir").keep();
    Arc::new(SqliteStore::open(&dir).expect("open store"))
}

taskwheel_store::conformance_tests!(fresh());
