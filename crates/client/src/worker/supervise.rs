//! The life of one leased job inside a worker: run its handler in a task of
//! its own, heartbeat while it runs, report its outcome, and give it back to
//! the server when the worker has to stop before it finishes.
//!
//! The handler runs in a separate task so that a panic becomes a failed
//! attempt instead of a dead worker, and so that it can be aborted.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use taskwheel_core::wire::{LeasedJob, ProgressReport, SnoozeRequest};
use taskwheel_core::{DurationSpec, JobId, LeaseToken};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tracing::{Instrument, debug, info, info_span, warn};

use super::Shared;
use super::handler::{JobContext, Outcome, Report};
use crate::client::ClientError;

/// Tries for reporting an outcome. The job's lease keeps it safe meanwhile:
/// if every try fails, the lease expires and the job runs again.
const REPORT_TRIES: u32 = 5;
const REPORT_RETRY_DELAY: Duration = Duration::from_millis(500);
/// The least time between two heartbeats sent for progress reports.
const PROGRESS_GAP: Duration = Duration::from_secs(1);

/// Runs `leased` to its end. Returns early, releasing the job, when `stop`
/// turns true (the shutdown grace period is over).
pub(super) async fn supervise(shared: Arc<Shared>, leased: LeasedJob, stop: watch::Receiver<bool>) {
    let span = info_span!(
        "job",
        id = %leased.job.id,
        kind = %leased.job.kind,
        attempt = leased.job.attempt
    );
    run(shared, leased, stop).instrument(span).await;
}

async fn run(shared: Arc<Shared>, leased: LeasedJob, mut stop: watch::Receiver<bool>) {
    let id = leased.job.id;
    let token = leased.lease_token;
    let Some(handler) = shared.handlers.get(&leased.job.kind).cloned() else {
        let error = unknown_kind_error(&leased.job.kind, &shared);
        warn!("{error}");
        let report = Outcome::fail_permanently(error).into_report(token);
        report_outcome(&shared, id, report).await;
        return;
    };

    let (cancel_tx, cancel_rx) = watch::channel(false);
    // The supervisor keeps a sender too, so the last report can still be
    // read (and sent) after the handler and its context are gone.
    let (progress_tx, mut progress_rx) = watch::channel(None);
    let progress_tx = Arc::new(progress_tx);
    let ctx = JobContext::new(
        leased,
        shared.worker_id.clone(),
        cancel_rx,
        Arc::clone(&progress_tx),
    );
    let mut task = AbortOnDrop(tokio::spawn(async move { handler.handle(ctx).await }));
    let beat = shared.heartbeat_interval;
    let mut heartbeat = tokio::time::interval_at(Instant::now() + beat, beat);
    // After a slow heartbeat, beat again one interval later rather than in a burst.
    heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // Progress the handler reported and the server has not heard yet is
    // sent at `flush_at`: at once, or a second after the previous beat.
    // The lease was just taken: the first report may go at once.
    let mut last_beat = Instant::now()
        .checked_sub(PROGRESS_GAP)
        .unwrap_or_else(Instant::now);
    let mut flush_at: Option<Instant> = None;

    let outcome = loop {
        let flush = async {
            match flush_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            joined = &mut task.0 => break match joined {
                Ok(outcome) => outcome,
                Err(e) if e.is_panic() => {
                    Outcome::retry(format!("handler panicked: {}", panic_message(e.into_panic())))
                }
                // Only this function aborts the task, and it never polls it afterwards.
                Err(_) => Outcome::retry("handler task was cancelled"),
            },
            // Never an error: this task holds a sender.
            Ok(()) = progress_rx.changed(), if flush_at.is_none() => {
                flush_at = Some(Instant::now().max(last_beat + PROGRESS_GAP));
                continue;
            }
            _ = flush, if flush_at.is_some() => {}
            _ = heartbeat.tick() => {}
            _ = stopped(&mut stop) => {
                task.0.abort();
                // Wait for the abort to land so the handler's resources (child
                // processes, files) are dropped before the job is handed back.
                let _ = (&mut task.0).await;
                info!("shutdown grace period over; releasing the job");
                let release = SnoozeRequest { lease_token: token, delay: DurationSpec(Duration::ZERO) };
                report_outcome(&shared, id, Report::Snooze(release)).await;
                return;
            }
        }
        // A regular tick or the flush instant: beat, carrying any unsent progress.
        let progress = flush_at
            .take()
            .and_then(|_| progress_rx.borrow_and_update().clone());
        last_beat = Instant::now();
        heartbeat.reset();
        match send_heartbeat(&shared, id, token, progress.clone(), beat).await {
            Beat::Alive { cancel_requested } => {
                if cancel_requested && !*cancel_tx.borrow() {
                    info!("cancel requested; telling the handler");
                    cancel_tx.send_replace(true);
                }
            }
            // The attempt is void: another worker may run the job now, and
            // any result would be refused. Dropping `task` aborts the handler.
            Beat::LeaseLost(e) => {
                warn!(error = %e, "lease lost; abandoning the job and dropping its result");
                return;
            }
            // Send the progress again with the next regular beat.
            Beat::Unknown if progress.is_some() => flush_at = Some(last_beat + beat),
            Beat::Unknown => {}
        }
    };
    // Progress reported just before the end is stored before the outcome.
    if flush_at.is_some() || progress_rx.has_changed().unwrap_or(false) {
        // (`progress_tx` is still alive here, so `has_changed` cannot fail.)
        let progress = progress_rx.borrow_and_update().clone();
        if let Beat::LeaseLost(e) = send_heartbeat(&shared, id, token, progress, beat).await {
            warn!(error = %e, "lease lost; dropping the result");
            return;
        }
    }
    drop(progress_tx);
    debug!(?outcome, "handler finished");
    report_outcome(&shared, id, outcome.into_report(token)).await;
}

enum Beat {
    Alive {
        cancel_requested: bool,
    },
    LeaseLost(ClientError),
    /// No answer in time; the lease may still be ours, so try at the next beat.
    Unknown,
}

async fn send_heartbeat(
    shared: &Shared,
    id: JobId,
    token: LeaseToken,
    progress: Option<ProgressReport>,
    limit: Duration,
) -> Beat {
    // A heartbeat slower than the interval is worth less than the next one.
    let request = shared.client.heartbeat_with_progress(id, token, progress);
    match tokio::time::timeout(limit, request).await {
        Ok(Ok(answer)) => Beat::Alive {
            cancel_requested: answer.cancel_requested,
        },
        Ok(Err(e)) if lease_is_gone(&e) => Beat::LeaseLost(e),
        Ok(Err(e)) => {
            warn!(error = %e, "heartbeat failed; retrying at the next beat");
            Beat::Unknown
        }
        Err(_) => {
            warn!(timeout = ?limit, "heartbeat timed out; retrying at the next beat");
            Beat::Unknown
        }
    }
}

/// The server no longer holds this job under our lease (expired, timed out,
/// re-leased, finished, or deleted).
fn lease_is_gone(e: &ClientError) -> bool {
    e.is_lease_mismatch() || e.is_not_found() || e.is_invalid_state()
}

/// Sends `report`, retrying transient failures a few times.
async fn report_outcome(shared: &Shared, id: JobId, report: Report) {
    for attempt in 1..=REPORT_TRIES {
        let answer = match &report {
            Report::Complete(r) => shared.client.complete(id, r).await,
            Report::Fail(r) => shared.client.fail(id, r).await,
            Report::Snooze(r) => shared.client.snooze(id, r).await,
        };
        match answer {
            Ok(outcome) => {
                info!(state = %outcome.state, "reported");
                return;
            }
            Err(e) if lease_is_gone(&e) => {
                warn!(error = %e, "result dropped: the lease is gone");
                return;
            }
            Err(e) if e.is_transient() && attempt < REPORT_TRIES => {
                warn!(error = %e, attempt, "reporting failed; retrying");
                tokio::time::sleep(REPORT_RETRY_DELAY * attempt).await;
            }
            Err(e) => {
                warn!(error = %e, "could not report the outcome; the lease will expire and the job run again");
                return;
            }
        }
    }
}

fn unknown_kind_error(kind: &str, shared: &Shared) -> String {
    let mut known: Vec<&str> = shared.handlers.keys().map(String::as_str).collect();
    known.sort_unstable();
    format!(
        "worker {} has no handler for kind `{kind}` (it handles: {}); \
         run a worker that registers `{kind}` on this queue",
        shared.worker_id,
        if known.is_empty() {
            "nothing".to_string()
        } else {
            known.join(", ")
        }
    )
}

/// Resolves when `stop` turns true; never, if its sender is gone.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    if stop.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}

fn panic_message(panic: Box<dyn Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "a non-string panic payload".to_string()
    }
}

/// Aborts the handler when the supervisor ends early (lease lost, or the
/// supervisor itself dropped), so no handler outlives its job.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_messages_are_kept() {
        assert_eq!(panic_message(Box::new("boom")), "boom");
        assert_eq!(panic_message(Box::new(String::from("bang"))), "bang");
        assert_eq!(panic_message(Box::new(7_u8)), "a non-string panic payload");
    }
}
