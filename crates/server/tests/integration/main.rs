//! The server's integration tests, in one binary to keep link time down:
//! a real server on a loopback port, driven over HTTP and by the worker SDK.

mod api;
mod batch;
mod cluster;
mod common;
mod queues;
mod schedules;
mod sdk;
mod unique;
mod workflows;
