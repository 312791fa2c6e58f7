//! # taskwheel-client
//!
//! Everything a program needs to talk to a taskwheel server from Rust.
//!
//! ## Layout
//! - [`client`]: [`Client`], one typed method per REST API v1 endpoint, and
//!   [`ClientError`], which keeps the server's error codes apart from
//!   transport failures.
//! - [`worker`]: the worker SDK: [`Worker`] leases jobs, runs the [`Handler`]
//!   registered for each kind, heartbeats, reports the [`Outcome`], and shuts
//!   down gracefully.
//! - [`executors`]: the built-in `http` and `command` handlers, and
//!   [`builtin_worker`], the worker behind `taskwheel worker` and `taskwheel dev`.
//!
//! ## A worker in a few lines
//!
//! ```no_run
//! use taskwheel_client::{Client, Outcome, Worker};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let worker = Worker::builder(Client::new("http://127.0.0.1:7070")?)
//!     .queues(["emails"])
//!     .handler_fn("email.send", |job| async move {
//!         let Some(to) = job.payload()["to"].as_str() else {
//!             return Outcome::fail_permanently("payload.to is required");
//!         };
//!         println!("sending to {to}");
//!         Outcome::complete()
//!     })
//!     .build()?;
//! worker.run().await?; // until SIGTERM or Ctrl-C
//! # Ok(())
//! # }
//! ```
//!
//! Architecture invariant: this crate depends on `taskwheel-core` only for
//! wire and domain types; it never links the store or the server.

pub mod client;
pub mod executors;
pub mod worker;

pub use client::{Client, ClientError};
pub use executors::{BuiltinOptions, builtin_worker};
pub use worker::{
    Handler, JobContext, Outcome, Worker, WorkerBuilder, WorkerError, handler_fn, shutdown_signal,
};
