//! The built-in executors, which make taskwheel useful without writing a
//! worker: [`http`] calls a URL, [`command`] runs a program. Both are plain
//! [`Handler`](crate::Handler)s; [`builtin_worker`] registers them on a [`Worker`].
//!
//! Also here: what both share: reading a JSON payload field by field so a bad
//! payload gets an error that names the field, and cutting output to a bound.

pub mod command;
pub mod http;

use std::time::Duration;

use serde_json::{Map, Value};

pub use command::CommandExecutor;
pub use http::HttpExecutor;

use crate::client::Client;
use crate::worker::{DEFAULT_CONCURRENCY, Worker, WorkerBuilder, WorkerError};

/// The job kind the [`HttpExecutor`] handles.
pub const HTTP_KIND: &str = "http";
/// The job kind the [`CommandExecutor`] handles.
pub const COMMAND_KIND: &str = "command";

/// Settings of the worker that runs the built-in executors.
#[derive(Debug, Clone)]
pub struct BuiltinOptions {
    pub queues: Vec<String>,
    pub concurrency: usize,
    /// Run `command` jobs. Off by default: it lets anyone who can submit a job
    /// run programs as the worker's user.
    pub allow_command: bool,
    /// Default: `hostname-pid`.
    pub worker_id: Option<String>,
    /// How long running jobs may take to finish at shutdown; `None` keeps the default.
    pub shutdown_grace: Option<Duration>,
}

impl Default for BuiltinOptions {
    fn default() -> Self {
        Self {
            queues: vec![taskwheel_core::wire::DEFAULT_QUEUE.to_string()],
            concurrency: DEFAULT_CONCURRENCY,
            allow_command: false,
            worker_id: None,
            shutdown_grace: None,
        }
    }
}

/// A worker with the `http` and `command` executors registered: the worker of
/// `taskwheel worker` and `taskwheel dev`.
pub fn builtin_worker(client: Client, options: BuiltinOptions) -> Result<Worker, WorkerError> {
    let mut builder = Worker::builder(client)
        .queues(options.queues)
        .concurrency(options.concurrency);
    if let Some(id) = options.worker_id {
        builder = builder.worker_id(id);
    }
    if let Some(grace) = options.shutdown_grace {
        builder = builder.shutdown_grace(grace);
    }
    register_builtins(builder, options.allow_command)?.build()
}

/// Adds the built-in executors to `builder`, next to the caller's own handlers.
/// `command` is always registered, so a disabled one refuses its jobs with a
/// message that says how to enable it instead of "no handler".
pub fn register_builtins(
    builder: WorkerBuilder,
    allow_command: bool,
) -> Result<WorkerBuilder, WorkerError> {
    Ok(builder
        .handler(HTTP_KIND, HttpExecutor::new()?)
        .handler(COMMAND_KIND, CommandExecutor::new(allow_command)))
}

/// A payload that does not fit its executor. The job fails without retry:
/// the same payload would fail the same way.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid `{kind}` payload: {field}: {message}")]
pub struct PayloadError {
    pub kind: &'static str,
    pub field: String,
    pub message: String,
}

/// A payload object read field by field, so every error names its field.
struct PayloadFields<'a> {
    kind: &'static str,
    object: &'a Map<String, Value>,
}

impl<'a> PayloadFields<'a> {
    /// Refuses anything but an object, and fields not in `known` (a typo such
    /// as `header` would otherwise be silently ignored).
    fn new(kind: &'static str, payload: &'a Value, known: &[&str]) -> Result<Self, PayloadError> {
        let Some(object) = payload.as_object() else {
            return Err(PayloadError {
                kind,
                field: "payload".into(),
                message: format!("must be a JSON object with fields {}", known.join(", ")),
            });
        };
        let fields = Self { kind, object };
        if let Some(unknown) = object.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(fields.error(
                unknown,
                format!("unknown field (known: {})", known.join(", ")),
            ));
        }
        Ok(fields)
    }

    fn error(&self, field: &str, message: impl Into<String>) -> PayloadError {
        PayloadError {
            kind: self.kind,
            field: field.to_string(),
            message: message.into(),
        }
    }

    /// The field's value; `null` counts as absent.
    fn get(&self, field: &str) -> Option<&'a Value> {
        self.object.get(field).filter(|v| !v.is_null())
    }

    fn required_str(&self, field: &str) -> Result<&'a str, PayloadError> {
        match self.get(field) {
            None => Err(self.error(field, "is required")),
            Some(v) => v
                .as_str()
                .filter(|s| !s.is_empty())
                .ok_or_else(|| self.error(field, "must be a non-empty string")),
        }
    }

    fn optional_str(&self, field: &str) -> Result<Option<&'a str>, PayloadError> {
        match self.get(field) {
            None => Ok(None),
            Some(v) => v
                .as_str()
                .map(Some)
                .ok_or_else(|| self.error(field, "must be a string")),
        }
    }

    /// A list of strings; errors name the element (`args[2]`).
    fn string_list(&self, field: &str) -> Result<Vec<String>, PayloadError> {
        let Some(value) = self.get(field) else {
            return Ok(Vec::new());
        };
        let list = value
            .as_array()
            .ok_or_else(|| self.error(field, "must be a list of strings"))?;
        list.iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| self.error(&format!("{field}[{i}]"), "must be a string"))
            })
            .collect()
    }

    /// An object of string values; errors name the entry (`env.HOME`).
    fn string_map(&self, field: &str) -> Result<Vec<(String, String)>, PayloadError> {
        let Some(value) = self.get(field) else {
            return Ok(Vec::new());
        };
        let map = value
            .as_object()
            .ok_or_else(|| self.error(field, "must be an object of strings"))?;
        map.iter()
            .map(|(k, v)| {
                v.as_str()
                    .map(|s| (k.clone(), s.to_string()))
                    .ok_or_else(|| self.error(&format!("{field}.{k}"), "must be a string"))
            })
            .collect()
    }
}

/// The first `limit` bytes of `bytes` as text, never splitting a character,
/// and whether anything was cut.
fn head(bytes: &[u8], limit: usize) -> (String, bool) {
    if bytes.len() <= limit {
        return (String::from_utf8_lossy(bytes).into_owned(), false);
    }
    let mut end = limit;
    while end > 0 && is_continuation(bytes[end]) {
        end -= 1;
    }
    (String::from_utf8_lossy(&bytes[..end]).into_owned(), true)
}

/// The last `limit` bytes of `bytes` as text, never splitting a character,
/// and whether anything was cut. Output's end is where errors are.
fn tail(bytes: &[u8], limit: usize) -> (String, bool) {
    if bytes.len() <= limit {
        return (String::from_utf8_lossy(bytes).into_owned(), false);
    }
    let mut start = bytes.len() - limit;
    while start < bytes.len() && is_continuation(bytes[start]) {
        start += 1;
    }
    (String::from_utf8_lossy(&bytes[start..]).into_owned(), true)
}

fn is_continuation(byte: u8) -> bool {
    byte & 0b1100_0000 == 0b1000_0000
}

#[cfg(test)]
pub(crate) mod testing {
    //! A job context for running a handler without a server.

    use std::sync::Arc;
    use std::time::Duration;

    use serde_json::Value;
    use taskwheel_core::wire::{JobView, LeasedJob};
    use taskwheel_core::{DurationSpec, JobId, JobState, LeaseToken, RetryPolicy, Timestamp};
    use tokio::sync::watch;

    use crate::worker::JobContext;

    /// A context for a running job of `kind`, and the switch that cancels it.
    pub(crate) fn context(
        kind: &str,
        payload: Value,
        timeout: Option<Duration>,
    ) -> (JobContext, watch::Sender<bool>) {
        let now = Timestamp::now();
        let job = JobView {
            id: JobId::new_v7(now),
            queue: "default".into(),
            kind: kind.into(),
            payload,
            priority: 5,
            state: JobState::Running,
            run_at: now,
            created_at: now,
            updated_at: now,
            finished_at: None,
            timeout: timeout.map(DurationSpec),
            retry: RetryPolicy::default(),
            idempotency_key: None,
            tags: Vec::new(),
            concurrency_key: None,
            schedule_id: None,
            fire_time: None,
            depends_on: Vec::new(),
            on_parent_failure: None,
            workflow_id: None,
            workflow_job: None,
            attempt: 1,
            cancel_requested: false,
            lease: None,
            attempts: Vec::new(),
            unique_key: None,
            progress: None,
            deduplicated: None,
            unique: None,
        };
        let leased = LeasedJob {
            job,
            lease_token: LeaseToken::random(),
            lease_expires_at: now,
            parents: Vec::new(),
        };
        let (cancel_tx, cancel_rx) = watch::channel(false);
        (
            JobContext::new(
                leased,
                Arc::from("test-worker"),
                cancel_rx,
                Arc::new(watch::channel(None).0),
            ),
            cancel_tx,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn head_and_tail_cut_on_character_boundaries() {
        assert_eq!(head(b"hello", 10), ("hello".to_string(), false));
        assert_eq!(head(b"hello", 3), ("hel".to_string(), true));
        assert_eq!(tail(b"hello", 3), ("llo".to_string(), true));
        // "é" is two bytes; a cut through it drops the half character.
        let text = "aé".as_bytes();
        assert_eq!(head(text, 2), ("a".to_string(), true));
        let text = "éa".as_bytes();
        assert_eq!(tail(text, 2), ("a".to_string(), true));
        assert_eq!(tail(b"", 2), (String::new(), false));
    }

    #[test]
    fn payload_fields_name_the_bad_field() {
        let known = ["program", "args", "env", "cwd"];
        let read = |payload: Value| -> Result<(), PayloadError> {
            let f = PayloadFields::new("command", &payload, &known)?;
            f.required_str("program")?;
            f.string_list("args")?;
            f.string_map("env")?;
            f.optional_str("cwd")?;
            Ok(())
        };
        let cases = [
            (json!("ls"), "payload"),
            (json!({}), "program"),
            (json!({"program": 7}), "program"),
            (json!({"program": "ls", "args": "-l"}), "args"),
            (json!({"program": "ls", "args": ["-l", 2]}), "args[1]"),
            (json!({"program": "ls", "env": {"A": 1}}), "env.A"),
            (json!({"program": "ls", "cwd": false}), "cwd"),
            (json!({"program": "ls", "arg": []}), "arg"),
        ];
        for (payload, field) in cases {
            let err = read(payload.clone()).unwrap_err();
            assert_eq!(err.field, field, "{payload}: {err}");
        }
        assert!(read(json!({"program": "ls", "args": null, "cwd": "/tmp"})).is_ok());
    }
}
