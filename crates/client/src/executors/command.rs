//! The `command` executor: runs a program and succeeds when it exits 0.
//!
//! Payload: `{"program": "pg_dump", "args": ["-Fc", "app"], "env": {"K": "v"},
//! "cwd": "/srv"}`; only `program` is required. No shell is involved: to use
//! one, run `/bin/sh` with `["-c", "…"]`. `env` adds to the worker's environment.
//!
//! Result: `{"exit_code", "stdout", "stderr", "stdout_truncated",
//! "stderr_truncated"}`, keeping the last [`OUTPUT_LIMIT`] bytes of each
//! stream. A non-zero exit fails the attempt with the code and the end of stderr.
//!
//! The program runs in a process group of its own, so Ctrl-C at the worker's
//! terminal does not reach it (the worker shuts down gracefully instead), and
//! so the whole group can be killed: on cancel, on the job's `timeout`, when
//! the worker abandons the job, and after the program exits (anything it left
//! running in the background dies with the job).
//!
//! Off unless the operator enables it: whoever can submit a job could
//! otherwise run any program as the worker's user.

use std::io;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};
use taskwheel_core::duration::format_duration;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

use super::{COMMAND_KIND, PayloadError, PayloadFields, tail};
use crate::worker::{Handler, JobContext, Outcome};

/// How much of the end of stdout and of stderr is kept in the result.
pub const OUTPUT_LIMIT: usize = 16 * 1024;
/// How much of the end of stderr goes into a failure's error message.
const ERROR_TAIL_LIMIT: usize = 2 * 1024;
/// How long to wait for the output pipes to close once the program is gone.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

const FIELDS: [&str; 4] = ["program", "args", "env", "cwd"];

/// Runs `command` jobs, or refuses them when not allowed.
#[derive(Debug, Clone)]
pub struct CommandExecutor {
    allowed: bool,
}

impl CommandExecutor {
    /// `allowed: false` refuses every job with a message saying how to enable it.
    pub fn new(allowed: bool) -> Self {
        Self { allowed }
    }
}

#[async_trait]
impl Handler for CommandExecutor {
    async fn handle(&self, job: JobContext) -> Outcome {
        if !self.allowed {
            return Outcome::fail_permanently(format!(
                "the command executor is disabled on worker {}; \
                 start the worker with --allow-command to run `command` jobs",
                job.worker_id()
            ));
        }
        match CommandSpec::from_payload(job.payload()) {
            Ok(spec) => spec.run(&job).await,
            Err(e) => Outcome::fail_permanently(e.to_string()),
        }
    }
}

/// A validated `command` payload.
#[derive(Debug, Clone, PartialEq)]
struct CommandSpec {
    program: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    cwd: Option<PathBuf>,
}

/// Why the wait for the program ended.
enum Ended {
    Exited(io::Result<ExitStatus>),
    Cancelled,
    TimedOut(Duration),
}

impl CommandSpec {
    fn from_payload(payload: &Value) -> Result<Self, PayloadError> {
        let fields = PayloadFields::new(COMMAND_KIND, payload, &FIELDS)?;
        Ok(Self {
            program: fields.required_str("program")?.to_string(),
            args: fields.string_list("args")?,
            env: fields.string_map("env")?,
            cwd: fields.optional_str("cwd")?.map(PathBuf::from),
        })
    }

    async fn run(&self, job: &JobContext) -> Outcome {
        let mut child = match self.spawn() {
            Ok(child) => child,
            Err(e) => {
                let error = format!("cannot start `{}`: {e}", self.program);
                // A missing program or a bad cwd stays that way; anything else
                // (too many processes, out of memory) may pass.
                return match e.kind() {
                    io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied => {
                        Outcome::fail_permanently(error)
                    }
                    _ => Outcome::retry(error),
                };
            }
        };
        let group = ProcessGroup::of(&child);
        let stdout = Capture::start(child.stdout.take());
        let stderr = Capture::start(child.stderr.take());

        let timeout = job.timeout();
        let ended = tokio::select! {
            status = child.wait() => Ended::Exited(status),
            () = job.cancelled() => Ended::Cancelled,
            () = sleep_for(timeout) => Ended::TimedOut(timeout.unwrap_or_default()),
        };
        // Kill what is left either way: the program itself when it did not
        // exit, and whatever it started that still holds the output pipes.
        group.kill();
        if !matches!(ended, Ended::Exited(_)) {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
        let (stdout, stdout_truncated) = stdout.finish().await;
        let (stderr, stderr_truncated) = stderr.finish().await;

        match ended {
            Ended::Cancelled => {
                Outcome::cancel(format!("cancel requested; killed `{}`", self.program))
            }
            Ended::TimedOut(after) => Outcome::retry(format!(
                "`{}` timed out after {}; killed it{}",
                self.program,
                format_duration(after),
                stderr_excerpt(&stderr)
            )),
            Ended::Exited(Err(e)) => {
                Outcome::retry(format!("waiting for `{}` failed: {e}", self.program))
            }
            Ended::Exited(Ok(status)) if status.success() => Outcome::complete_with(json!({
                "exit_code": 0,
                "stdout": stdout,
                "stderr": stderr,
                "stdout_truncated": stdout_truncated,
                "stderr_truncated": stderr_truncated,
            })),
            Ended::Exited(Ok(status)) => Outcome::retry(format!(
                "`{}` {}{}",
                self.program,
                describe_exit(status),
                stderr_excerpt(&stderr)
            )),
        }
    }

    fn spawn(&self) -> io::Result<Child> {
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // If the worker drops this job (shutdown, lost lease), the
            // program must not outlive it.
            .kill_on_drop(true);
        if let Some(cwd) = &self.cwd {
            command.current_dir(cwd);
        }
        #[cfg(unix)]
        command.process_group(0);
        command.spawn()
    }
}

/// Resolves after `timeout`, or never when there is none.
async fn sleep_for(timeout: Option<Duration>) {
    match timeout {
        Some(t) => tokio::time::sleep(t).await,
        None => std::future::pending().await,
    }
}

fn describe_exit(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exited with code {code}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            return format!("was killed by signal {signal}");
        }
    }
    format!("ended with {status}")
}

/// `: <end of stderr>` for an error message, or nothing when stderr is empty.
fn stderr_excerpt(stderr: &str) -> String {
    let trimmed = stderr.trim_end();
    if trimmed.is_empty() {
        return String::new();
    }
    let (end, cut) = tail(trimmed.as_bytes(), ERROR_TAIL_LIMIT);
    format!("; stderr: {}{end}", if cut { "…" } else { "" })
}

/// The program's process group; killed when dropped, which also covers a
/// handler future the worker aborts.
struct ProcessGroup {
    #[cfg(unix)]
    leader: Option<rustix::process::Pid>,
}

impl ProcessGroup {
    fn of(child: &Child) -> Self {
        Self {
            #[cfg(unix)]
            leader: child
                .id()
                .and_then(|id| i32::try_from(id).ok())
                .and_then(rustix::process::Pid::from_raw),
        }
    }

    fn kill(&self) {
        // The group id stays reserved while any member lives, so this cannot
        // hit an unrelated process; ESRCH (nobody left) is the usual answer.
        #[cfg(unix)]
        if let Some(leader) = self.leader {
            let _ = rustix::process::kill_process_group(leader, rustix::process::Signal::KILL);
        }
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The last bytes of one output stream, read in a task of its own so a
/// chatty program never blocks on a full pipe.
struct Capture {
    /// Shared with the reader so what was read survives an aborted reader.
    buffer: Arc<Mutex<TailBuffer>>,
    reader: Option<JoinHandle<()>>,
}

impl Capture {
    fn start(stream: Option<impl AsyncRead + Unpin + Send + 'static>) -> Self {
        let buffer = Arc::new(Mutex::new(TailBuffer::new(OUTPUT_LIMIT)));
        let reader = stream.map(|mut stream| {
            let buffer = buffer.clone();
            tokio::spawn(async move {
                let mut chunk = [0_u8; 8192];
                while let Ok(n @ 1..) = stream.read(&mut chunk).await {
                    if let Ok(mut b) = buffer.lock() {
                        b.push(&chunk[..n]);
                    }
                }
            })
        });
        Self { buffer, reader }
    }

    /// The captured tail, after the pipe closes or [`DRAIN_TIMEOUT`] passes
    /// (a process outside the group may still hold it open).
    async fn finish(mut self) -> (String, bool) {
        if let Some(mut reader) = self.reader.take()
            && tokio::time::timeout(DRAIN_TIMEOUT, &mut reader)
                .await
                .is_err()
        {
            reader.abort();
        }
        match self.buffer.lock() {
            Ok(b) => b.text(),
            // Only a panic while pushing bytes poisons it; report that instead of output.
            Err(_) => ("<output lost: the reader panicked>".to_string(), true),
        }
    }
}

/// Keeps roughly the last `limit` bytes written to it.
#[derive(Debug)]
struct TailBuffer {
    bytes: Vec<u8>,
    limit: usize,
    /// Whether bytes were dropped from the front.
    dropped: bool,
}

impl TailBuffer {
    fn new(limit: usize) -> Self {
        Self {
            bytes: Vec::new(),
            limit,
            dropped: false,
        }
    }

    fn push(&mut self, chunk: &[u8]) {
        self.bytes.extend_from_slice(chunk);
        // Trim in batches (at twice the limit) so each byte is moved about once.
        if self.bytes.len() > 2 * self.limit {
            let excess = self.bytes.len() - self.limit;
            self.bytes.drain(..excess);
            self.dropped = true;
        }
    }

    fn text(&self) -> (String, bool) {
        let (text, cut) = tail(&self.bytes, self.limit);
        (text, cut || self.dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executors::testing::context;
    use std::time::Instant;

    fn sh(script: &str) -> Value {
        json!({"program": "/bin/sh", "args": ["-c", script]})
    }

    async fn run(payload: Value, timeout: Option<Duration>) -> Outcome {
        let (ctx, _cancel) = context(COMMAND_KIND, payload, timeout);
        CommandExecutor::new(true).handle(ctx).await
    }

    #[test]
    fn payloads_parse() {
        let spec = CommandSpec::from_payload(&json!({
            "program": "ls", "args": ["-l"], "env": {"A": "1"}, "cwd": "/tmp"
        }))
        .unwrap();
        assert_eq!(
            spec,
            CommandSpec {
                program: "ls".into(),
                args: vec!["-l".into()],
                env: vec![("A".into(), "1".into())],
                cwd: Some(PathBuf::from("/tmp")),
            }
        );
        let err = CommandSpec::from_payload(&json!({"args": []})).unwrap_err();
        assert_eq!(err.field, "program");
    }

    #[test]
    fn tail_buffer_keeps_the_end() {
        let mut b = TailBuffer::new(4);
        b.push(b"ab");
        assert_eq!(b.text(), ("ab".to_string(), false));
        for chunk in [b"cdef".as_slice(), b"ghij", b"kl"] {
            b.push(chunk);
        }
        assert_eq!(b.text(), ("ijkl".to_string(), true));
        assert!(b.bytes.len() <= 8);
    }

    #[tokio::test]
    async fn success_returns_output() {
        let payload = json!({
            "program": "/bin/sh",
            "args": ["-c", "echo \"hi $GREETING\"; pwd; echo warn >&2"],
            "env": {"GREETING": "there"},
            "cwd": "/",
        });
        let out = run(payload, None).await;
        assert_eq!(
            out,
            Outcome::complete_with(json!({
                "exit_code": 0, "stdout": "hi there\n/\n", "stderr": "warn\n",
                "stdout_truncated": false, "stderr_truncated": false,
            }))
        );
    }

    #[tokio::test]
    async fn non_zero_exit_fails_with_code_and_stderr() {
        let out = run(sh("echo hi; echo oops >&2; exit 3"), None).await;
        let Outcome::Fail { error, retry: true } = out else {
            panic!("{out:?}")
        };
        assert!(error.contains("exited with code 3"), "{error}");
        assert!(error.contains("oops"), "{error}");
    }

    #[tokio::test]
    async fn long_output_keeps_its_tail() {
        let out = run(sh("head -c 40000 /dev/zero | tr '\\0' a; echo END"), None).await;
        let Outcome::Complete(Some(result)) = out else {
            panic!("{out:?}")
        };
        let stdout = result["stdout"].as_str().unwrap();
        assert_eq!(stdout.len(), OUTPUT_LIMIT);
        assert!(stdout.ends_with("aEND\n"));
        assert_eq!(result["stdout_truncated"], true);
    }

    #[tokio::test]
    async fn cancel_kills_the_process_quickly() {
        let (ctx, cancel) = context(COMMAND_KIND, sh("sleep 30"), None);
        let started = Instant::now();
        let running = tokio::spawn(async move { CommandExecutor::new(true).handle(ctx).await });
        // Let the program start, so the kill is what ends it.
        tokio::time::sleep(Duration::from_millis(100)).await;
        cancel.send_replace(true);
        let out = tokio::time::timeout(Duration::from_secs(5), running)
            .await
            .expect("cancel ends the job quickly")
            .unwrap();
        assert!(matches!(out, Outcome::Cancel { .. }), "{out:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn timeout_kills_the_process() {
        let started = Instant::now();
        let out = run(sh("sleep 30"), Some(Duration::from_millis(200))).await;
        let Outcome::Fail { error, retry: true } = out else {
            panic!("{out:?}")
        };
        assert!(error.contains("timed out after 200ms"), "{error}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn background_children_do_not_hold_the_job() {
        let started = Instant::now();
        let out = run(sh("sleep 30 & echo started"), None).await;
        let Outcome::Complete(Some(result)) = out else {
            panic!("{out:?}")
        };
        assert_eq!(result["stdout"], "started\n");
        assert!(
            started.elapsed() < DRAIN_TIMEOUT,
            "the group kill closes the pipes"
        );
    }

    #[tokio::test]
    async fn refusals_are_final() {
        let (ctx, _cancel) = context(COMMAND_KIND, sh("true"), None);
        let out = CommandExecutor::new(false).handle(ctx).await;
        let Outcome::Fail {
            error,
            retry: false,
        } = out
        else {
            panic!("{out:?}")
        };
        assert!(error.contains("--allow-command"), "{error}");

        let out = run(json!({"program": "/no/such/program"}), None).await;
        assert!(matches!(out, Outcome::Fail { retry: false, .. }), "{out:?}");
        let out = run(json!({"program": 1}), None).await;
        assert!(matches!(out, Outcome::Fail { retry: false, .. }), "{out:?}");
    }
}
