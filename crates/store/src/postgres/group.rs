//! Group commit: submits, heartbeats and worker reports (complete, fail,
//! snooze) that arrive together share one transaction and one WAL flush.
//!
//! Callers send their operation with a reply channel to the dispatcher task.
//! It takes whatever is queued (up to [`MAX_GROUP`] operations) and runs it
//! as one group on its own task; up to [`IN_FLIGHT`] groups run at once
//! (PostgreSQL flushes concurrent commits together), and only while all of
//! them are busy do new operations queue up, so a lone request goes at once:
//! there is no timer, and no batch to wait for.
//!
//! A group is one transaction: all its submits in one multi-row insert, all
//! its heartbeats in one update, all its completions in one batch, then each
//! fail or snooze in turn. Each operation gets its own answer (a stale lease
//! token or an unknown job answers only its caller), sent after COMMIT. If
//! the group's transaction fails for any other reason (a deadlock with
//! another group, a broken connection, a database error), it is rolled back
//! and its operations run again one by one, each in its own transaction with
//! the usual retries, so one bad operation cannot fail the others. A failure
//! of the COMMIT itself leaves the outcome unknown: every caller hears it.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use sqlx_postgres::PgPool;
use taskwheel_core::lifecycle::FailureCause;
use taskwheel_core::{JobId, LeaseToken, NewJob};
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::MAX_CONFLICT_TRIES;
use super::error::{Fault, Res, answer};
use super::jobs::{self, Beat, Done};
use super::tx::Tx;
use crate::{Completion, Heartbeat, Moved, Result, StoreError, Submitted};

/// The most operations that share one transaction; bounds a group's latency.
const MAX_GROUP: usize = 500;
/// How many groups run at once.
const IN_FLIGHT: usize = 4;

/// One caller's operation and where its answer goes.
pub(super) enum Op {
    Submit {
        job: Box<NewJob>,
        now: Timestamp,
        reply: oneshot::Sender<Result<Submitted>>,
    },
    Heartbeat {
        beat: Beat,
        reply: oneshot::Sender<Result<Heartbeat>>,
    },
    Complete {
        tenant: String,
        items: Vec<Completion>,
        now: Timestamp,
        reply: oneshot::Sender<Result<Vec<Result<Moved>>>>,
    },
    Fail {
        report: Report,
        error: String,
        cause: FailureCause,
        reply: oneshot::Sender<Result<Moved>>,
    },
    Snooze {
        report: Report,
        delay: Duration,
        reply: oneshot::Sender<Result<Moved>>,
    },
}

/// Which running job a fail or snooze reports on.
pub(super) struct Report {
    pub(super) tenant: String,
    pub(super) id: JobId,
    pub(super) token: LeaseToken,
    pub(super) now: Timestamp,
}

impl Report {
    pub(super) fn new(tenant: &str, id: JobId, token: LeaseToken, now: Timestamp) -> Self {
        Self {
            tenant: tenant.to_string(),
            id,
            token,
            now,
        }
    }
}

/// What the groups run on; the fields `transaction!` needs.
pub(super) struct Db {
    pub(super) pool: PgPool,
    pub(super) max_connections: u32,
}

/// The sending side of the dispatcher; dropping it stops the dispatcher.
pub(super) struct Groups {
    ops: mpsc::UnboundedSender<Op>,
}

impl Groups {
    /// Starts the dispatcher on the current tokio runtime.
    pub(super) fn start(db: Db) -> Self {
        let (ops, queued) = mpsc::unbounded_channel();
        tokio::spawn(dispatch(Arc::new(db), queued));
        Self { ops }
    }

    /// Sends the operation `make` builds, and waits for its answer.
    pub(super) async fn run<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T>>) -> Op,
    ) -> Result<T> {
        let (reply, answer) = oneshot::channel();
        self.ops.send(make(reply)).map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }
}

async fn dispatch(db: Arc<Db>, mut queued: mpsc::UnboundedReceiver<Op>) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    loop {
        // Wait for a free slot first: while every slot is busy, operations
        // pile up in the channel and the next group takes them all.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = queued.recv().await else {
            return;
        };
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match queued.try_recv() {
                Ok(op) => group.push(op),
                Err(_) => break,
            }
        }
        let db = db.clone();
        tokio::spawn(async move {
            run_group(&db, group).await;
            drop(slot);
        });
    }
}

/// One operation's answer, held until the group's fate is known.
enum Answer {
    Submit(Box<Result<Submitted>>),
    Heartbeat(Result<Heartbeat>),
    Complete(Vec<Result<Moved>>),
    Moved(Result<Moved>),
}

/// Where a failed group stands.
enum Failed {
    /// Before COMMIT: rolled back, nothing applied.
    Before(Fault),
    /// At COMMIT: the outcome is unknown.
    AtCommit(StoreError),
}

async fn run_group(db: &Db, group: Vec<Op>) {
    let outcome = async {
        let mut tx = Tx::begin(&db.pool).await.map_err(Failed::Before)?;
        match apply(&mut tx, &group).await {
            Ok(answers) => {
                tx.commit()
                    .await
                    .map_err(|f| Failed::AtCommit(StoreError::from(f)))?;
                Ok(answers)
            }
            Err(fault) => {
                tx.rollback().await;
                Err(Failed::Before(fault))
            }
        }
    }
    .await;
    match outcome {
        Ok(answers) => {
            for (op, answer) in group.into_iter().zip(answers) {
                reply(op, answer);
            }
        }
        Err(Failed::AtCommit(e)) => {
            for op in group {
                fail(op, e.clone());
            }
        }
        // The database cannot be reached or the store is closed: running the
        // operations one by one would only meet the same.
        Err(Failed::Before(Fault::Store(
            e @ (StoreError::Unavailable(_) | StoreError::Closed),
        ))) => {
            for op in group {
                fail(op, e.clone());
            }
        }
        Err(Failed::Before(fault)) => {
            if group.len() > 1 {
                tracing::debug!(
                    ?fault,
                    ops = group.len(),
                    "group failed; running its operations one by one"
                );
            }
            for op in group {
                alone(db, op).await;
            }
        }
    }
}

/// Runs every operation of a group in `tx`, one answer per operation, in order.
async fn apply(tx: &mut Tx, group: &[Op]) -> Res<Vec<Answer>> {
    let mut answers: Vec<Option<Answer>> = group.iter().map(|_| None).collect();
    lock_reported(tx, group).await?;
    let (mut submits, mut at) = (vec![], vec![]);
    for (i, op) in group.iter().enumerate() {
        if let Op::Submit { job, now, .. } = op {
            submits.push((NewJob::clone(job), *now));
            at.push(i);
        }
    }
    if !submits.is_empty() {
        for (i, answer) in at.drain(..).zip(jobs::submit_many(tx, submits).await?) {
            answers[i] = Some(Answer::Submit(Box::new(answer)));
        }
    }
    let mut beats = vec![];
    for (i, op) in group.iter().enumerate() {
        if let Op::Heartbeat { beat, .. } = op {
            if beat.progress.is_some() {
                // Progress is written by the single heartbeat's own statement.
                let alone = jobs::heartbeat(
                    tx,
                    &beat.tenant,
                    beat.id,
                    beat.token,
                    beat.progress.clone(),
                    beat.now,
                )
                .await;
                answers[i] = Some(Answer::Heartbeat(answer(alone)?));
                continue;
            }
            beats.push(beat.clone());
            at.push(i);
        }
    }
    if !beats.is_empty() {
        for (i, answer) in at.drain(..).zip(jobs::heartbeat_many(tx, beats).await?) {
            answers[i] = Some(Answer::Heartbeat(answer));
        }
    }
    // Every completion of the group in one batch, then split back per caller.
    let (mut done, mut sizes) = (vec![], vec![]);
    for (i, op) in group.iter().enumerate() {
        if let Op::Complete {
            tenant, items, now, ..
        } = op
        {
            done.extend(items.iter().map(|item| Done {
                tenant: tenant.clone(),
                item: item.clone(),
                now: *now,
            }));
            sizes.push(items.len());
            at.push(i);
        }
    }
    if !sizes.is_empty() {
        let results = if done.is_empty() {
            Vec::new()
        } else {
            jobs::complete_many(tx, done).await?
        };
        let mut results = results.into_iter();
        for (i, size) in at.drain(..).zip(sizes) {
            answers[i] = Some(Answer::Complete(results.by_ref().take(size).collect()));
        }
    }
    for (i, op) in group.iter().enumerate() {
        let moved = match op {
            Op::Fail {
                report,
                error,
                cause,
                ..
            } => {
                jobs::fail(
                    tx,
                    &report.tenant,
                    report.id,
                    report.token,
                    error.clone(),
                    *cause,
                    report.now,
                )
                .await
            }
            Op::Snooze { report, delay, .. } => {
                jobs::snooze(
                    tx,
                    &report.tenant,
                    report.id,
                    report.token,
                    *delay,
                    report.now,
                )
                .await
            }
            _ => continue,
        };
        answers[i] = Some(Answer::Moved(answer(moved)?));
    }
    answers
        .into_iter()
        .map(|a| {
            a.ok_or_else(|| {
                Fault::Store(StoreError::Backend("an operation went unanswered".into()))
            })
        })
        .collect()
}

/// Locks every running job the group reports on, in one statement and in id
/// order, when the group would otherwise lock them in several steps (a
/// heartbeat and a completion, or two fails): two groups then never hold
/// locks the other waits for.
async fn lock_reported(tx: &mut Tx, group: &[Op]) -> Res<()> {
    let (mut ids, mut steps) = (vec![], 0);
    let (mut beats, mut completes) = (false, false);
    for op in group {
        match op {
            Op::Submit { .. } => {}
            Op::Heartbeat { beat, .. } => {
                ids.push(beat.id.0);
                beats = true;
            }
            Op::Complete { items, .. } => {
                ids.extend(items.iter().map(|i| i.id.0));
                completes = true;
            }
            Op::Fail { report, .. } | Op::Snooze { report, .. } => {
                ids.push(report.id.0);
                steps += 1;
            }
        }
    }
    if steps + usize::from(beats) + usize::from(completes) > 1 {
        jobs::lock_running(tx, &ids).await?;
    }
    Ok(())
}

fn reply(op: Op, answer: Answer) {
    // A caller that went away no longer needs its answer.
    match (op, answer) {
        (Op::Submit { reply, .. }, Answer::Submit(a)) => drop(reply.send(*a)),
        (Op::Heartbeat { reply, .. }, Answer::Heartbeat(a)) => drop(reply.send(a)),
        (Op::Complete { reply, .. }, Answer::Complete(a)) => drop(reply.send(Ok(a))),
        (Op::Fail { reply, .. } | Op::Snooze { reply, .. }, Answer::Moved(a)) => {
            drop(reply.send(a))
        }
        (op, _) => fail(
            op,
            StoreError::Backend("an operation got another's answer".into()),
        ),
    }
}

fn fail(op: Op, e: StoreError) {
    match op {
        Op::Submit { reply, .. } => drop(reply.send(Err(e))),
        Op::Heartbeat { reply, .. } => drop(reply.send(Err(e))),
        Op::Complete { reply, .. } => drop(reply.send(Err(e))),
        Op::Fail { reply, .. } | Op::Snooze { reply, .. } => drop(reply.send(Err(e))),
    }
}

/// Runs one operation in its own transaction, with the usual retries.
async fn alone(db: &Db, op: Op) {
    match op {
        Op::Submit { job, now, reply } => {
            let _ = reply.send(transaction!(db, |tx| jobs::submit(
                tx,
                NewJob::clone(&job),
                now
            )));
        }
        Op::Heartbeat { beat, reply } => {
            let _ = reply.send(transaction!(db, |tx| jobs::heartbeat(
                tx,
                &beat.tenant,
                beat.id,
                beat.token,
                beat.progress.clone(),
                beat.now
            )));
        }
        Op::Complete {
            tenant,
            items,
            now,
            reply,
        } => {
            let _ = reply.send(transaction!(db, |tx| jobs::complete(
                tx,
                &tenant,
                items.clone(),
                now
            )));
        }
        Op::Fail {
            report,
            error,
            cause,
            reply,
        } => {
            let _ = reply.send(transaction!(db, |tx| jobs::fail(
                tx,
                &report.tenant,
                report.id,
                report.token,
                error.clone(),
                cause,
                report.now
            )));
        }
        Op::Snooze {
            report,
            delay,
            reply,
        } => {
            let _ = reply.send(transaction!(db, |tx| jobs::snooze(
                tx,
                &report.tenant,
                report.id,
                report.token,
                delay,
                report.now
            )));
        }
    }
}
