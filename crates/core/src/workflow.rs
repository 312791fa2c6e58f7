//! Dependencies between jobs and whole workflows: when a job with parents
//! (`depends_on`) may run, and how a submitted graph of named jobs is checked
//! (unknown names, cycles) and ordered so every parent is stored before its
//! children. Pure: the stores apply these verdicts in the transaction that
//! ends a parent.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::str::FromStr;

use jiff::Timestamp;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::error::FieldError;
use crate::job::{JobId, JobState, NewJob};
use crate::wire::{JobView, SubmitJob, validate_name};

/// The most jobs in one workflow, and the most parents of one job.
pub const MAX_WORKFLOW_JOBS: usize = 10_000;
pub const MAX_PARENTS: usize = 10_000;

/// A workflow's id: a UUIDv7.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WorkflowId(pub Uuid);

impl WorkflowId {
    pub fn new_v7(at: Timestamp) -> Self {
        Self(JobId::new_v7(at).0)
    }
}

impl fmt::Display for WorkflowId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for WorkflowId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self)
    }
}

/// What a job does when a parent ends `failed`, `cancelled` or `skipped`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParentFailure {
    /// Become `skipped` at once, without running (and so skip its own children).
    #[default]
    Skip,
    /// Run anyway once every parent has ended, whatever the outcome.
    Run,
}

impl ParentFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            ParentFailure::Skip => "skip",
            ParentFailure::Run => "run",
        }
    }
}

impl ParentFailure {
    /// The policy as a store keeps it: NULL (no parents) is the default.
    pub fn from_stored(stored: Option<&str>) -> Result<Self, String> {
        stored
            .map(str::parse)
            .transpose()
            .map(Option::unwrap_or_default)
    }
}

impl FromStr for ParentFailure {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "skip" => Ok(ParentFailure::Skip),
            "run" => Ok(ParentFailure::Run),
            other => Err(format!(
                "`{other}` is not a parent-failure policy (skip, run)"
            )),
        }
    }
}

/// Whether a job with parents may run, from how its parents stand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// Some parent has not ended yet.
    Blocked,
    /// A parent ended badly and the policy is `skip`.
    Skip,
    /// Every parent has ended, successfully or (policy `run`) not.
    Ready,
}

/// How a job's parents stand: how many have not ended, how many ended
/// `failed`, `cancelled` or `skipped`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Standing {
    pub unfinished: u32,
    pub unsuccessful: u32,
}

impl Standing {
    pub fn of(parents: impl IntoIterator<Item = JobState>) -> Self {
        let mut standing = Standing::default();
        for state in parents {
            if !state.is_final() {
                standing.unfinished += 1;
            } else if state.is_unsuccessful_end() {
                standing.unsuccessful += 1;
            }
        }
        standing
    }

    pub fn readiness(self, policy: ParentFailure) -> Readiness {
        if self.unsuccessful > 0 && policy == ParentFailure::Skip {
            Readiness::Skip
        } else if self.unfinished > 0 {
            Readiness::Blocked
        } else {
            Readiness::Ready
        }
    }

    /// The state a child enters from here: `blocked`, `skipped`, or (ready)
    /// `scheduled` until `run_at`, else `available`.
    pub fn state(self, policy: ParentFailure, run_at: Timestamp, now: Timestamp) -> JobState {
        match self.readiness(policy) {
            Readiness::Blocked => JobState::Blocked,
            Readiness::Skip => JobState::Skipped,
            Readiness::Ready if run_at > now => JobState::Scheduled,
            Readiness::Ready => JobState::Available,
        }
    }
}

/// Checks a `depends_on` list of ids: not too long, no repeats.
pub fn validate_parents(field: &str, parents: &[JobId]) -> Result<(), FieldError> {
    if parents.len() > MAX_PARENTS {
        return Err(FieldError::new(
            field,
            format!("at most {MAX_PARENTS} parents"),
        ));
    }
    let mut seen = HashMap::with_capacity(parents.len());
    for (i, id) in parents.iter().enumerate() {
        if let Some(first) = seen.insert(*id, i) {
            return Err(FieldError::new(
                format!("{field}[{i}]"),
                format!("job {id} is listed twice (also at [{first}])"),
            ));
        }
    }
    Ok(())
}

/// `POST /api/v1/workflows`: a graph of named jobs stored in one transaction.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitWorkflow {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Submitting the same key again answers the workflow stored the first time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    #[serde(default)]
    pub jobs: Vec<WorkflowJob>,
}

/// One job of a workflow: a name local to the workflow, the names of its
/// parents, and the usual job fields (`kind`, `payload`, `queue`, ...).
#[derive(Debug, Clone, Serialize)]
pub struct WorkflowJob {
    pub name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    #[serde(flatten)]
    pub job: SubmitJob,
}

impl<'de> Deserialize<'de> for WorkflowJob {
    /// `name` and `depends_on` (names here, not ids) are taken out; the rest
    /// must be a valid job request, unknown fields refused as on `POST /jobs`.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut fields = serde_json::Map::<String, Value>::deserialize(d)?;
        let name = match fields.remove("name") {
            Some(Value::String(name)) => name,
            Some(_) => return Err(D::Error::custom("`name` must be a string")),
            None => String::new(),
        };
        let depends_on = match fields.remove("depends_on") {
            Some(v) => Vec::<String>::deserialize(v)
                .map_err(|e| D::Error::custom(format!("`depends_on` must list job names: {e}")))?,
            None => Vec::new(),
        };
        let job = SubmitJob::deserialize(Value::Object(fields)).map_err(D::Error::custom)?;
        Ok(Self {
            name,
            depends_on,
            job,
        })
    }
}

/// A checked workflow, its jobs in an order where parents come first.
#[derive(Debug, Clone, PartialEq)]
pub struct NewWorkflow {
    pub id: WorkflowId,
    pub tenant: String,
    pub name: Option<String>,
    pub idempotency_key: Option<String>,
    pub created_at: Timestamp,
    pub jobs: Vec<NewJob>,
}

impl NewWorkflow {
    /// The workflow row to store.
    pub fn record(&self) -> WorkflowRecord {
        WorkflowRecord {
            id: self.id,
            tenant: self.tenant.clone(),
            name: self.name.clone(),
            idempotency_key: self.idempotency_key.clone(),
            created_at: self.created_at,
        }
    }
}

impl SubmitWorkflow {
    /// Checks names, parents and every job; refuses unknown names and cycles
    /// with the field and the names involved.
    pub fn validate(self, tenant: &str, now: Timestamp) -> Result<NewWorkflow, FieldError> {
        if let Some(name) = &self.name {
            validate_name("name", name)?;
        }
        if let Some(key) = &self.idempotency_key {
            crate::wire::validate_key("idempotency_key", key)?;
        }
        if self.jobs.is_empty() {
            return Err(FieldError::new("jobs", "a workflow needs at least one job"));
        }
        if self.jobs.len() > MAX_WORKFLOW_JOBS {
            return Err(FieldError::new(
                "jobs",
                format!("at most {MAX_WORKFLOW_JOBS} jobs"),
            ));
        }
        let edges = self.edges()?;
        let order = topological_order(&edges, &self.jobs)?;
        let id = WorkflowId::new_v7(now);
        let mut ids = vec![None; self.jobs.len()];
        let mut slots: Vec<Option<WorkflowJob>> = self.jobs.into_iter().map(Some).collect();
        let mut jobs = Vec::with_capacity(slots.len());
        for i in order {
            let node = slots[i].take().expect("each job is ordered once");
            if node.job.idempotency_key.is_some() {
                return Err(FieldError::new(
                    format!("jobs[{i}].idempotency_key"),
                    "not allowed inside a workflow: give the workflow an idempotency_key",
                ));
            }
            if node.job.unique.is_some() {
                return Err(FieldError::new(
                    format!("jobs[{i}].unique"),
                    "not allowed inside a workflow: its jobs are created together, once",
                ));
            }
            let mut job = node
                .job
                .validate(tenant, now)
                .map_err(|e| FieldError::new(format!("jobs[{i}].{}", e.field), e.message))?;
            job.depends_on = edges[i]
                .iter()
                .map(|&p| ids[p].expect("parents are ordered first"))
                .collect();
            job.workflow = Some((id, node.name));
            ids[i] = Some(job.id);
            jobs.push(job);
        }
        Ok(NewWorkflow {
            id,
            tenant: tenant.to_string(),
            name: self.name,
            idempotency_key: self.idempotency_key,
            created_at: now,
            jobs,
        })
    }

    /// Each job's parents, as indexes into `jobs`.
    fn edges(&self) -> Result<Vec<Vec<usize>>, FieldError> {
        let mut index = HashMap::with_capacity(self.jobs.len());
        for (i, job) in self.jobs.iter().enumerate() {
            let field = format!("jobs[{i}].name");
            if job.name.is_empty() {
                return Err(FieldError::new(field, "is required"));
            }
            validate_name(&field, &job.name)?;
            if let Some(first) = index.insert(job.name.as_str(), i) {
                return Err(FieldError::new(
                    field,
                    format!("`{}` is also the name of jobs[{first}]", job.name),
                ));
            }
        }
        self.jobs
            .iter()
            .enumerate()
            .map(|(i, job)| {
                if job.depends_on.len() > MAX_PARENTS {
                    return Err(FieldError::new(
                        format!("jobs[{i}].depends_on"),
                        format!("at most {MAX_PARENTS} parents"),
                    ));
                }
                let mut parents = Vec::with_capacity(job.depends_on.len());
                for (j, name) in job.depends_on.iter().enumerate() {
                    let field = format!("jobs[{i}].depends_on[{j}]");
                    let &p = index.get(name.as_str()).ok_or_else(|| {
                        FieldError::new(&field, format!("no job named `{name}` in this workflow"))
                    })?;
                    if parents.contains(&p) {
                        return Err(FieldError::new(field, format!("`{name}` is listed twice")));
                    }
                    parents.push(p);
                }
                Ok(parents)
            })
            .collect()
    }
}

/// Parents before children (Kahn's algorithm, stable in submission order);
/// a cycle is refused naming its jobs in order.
fn topological_order(edges: &[Vec<usize>], jobs: &[WorkflowJob]) -> Result<Vec<usize>, FieldError> {
    let (order, waiting) = kahn(edges);
    if order.len() == edges.len() {
        return Ok(order);
    }
    let cycle = find_cycle(edges, &waiting);
    let names: Vec<&str> = cycle.iter().map(|&i| jobs[i].name.as_str()).collect();
    Err(FieldError::new(
        format!("jobs[{}].depends_on", cycle[0]),
        format!("the dependencies form a cycle: {}", names.join(" → ")),
    ))
}

/// The nodes in an order where parents come first, and for each node the
/// number of its parents left unordered (non-zero only on or behind a cycle).
fn kahn(edges: &[Vec<usize>]) -> (Vec<usize>, Vec<usize>) {
    let n = edges.len();
    let mut children = vec![Vec::new(); n];
    let mut waiting: Vec<usize> = edges.iter().map(Vec::len).collect();
    for (child, parents) in edges.iter().enumerate() {
        for &p in parents {
            children[p].push(child);
        }
    }
    let mut ready: VecDeque<usize> = (0..n).filter(|&i| waiting[i] == 0).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(i) = ready.pop_front() {
        order.push(i);
        for &c in &children[i] {
            waiting[c] -= 1;
            if waiting[c] == 0 {
                ready.push_back(c);
            }
        }
    }
    (order, waiting)
}

/// A cycle among the jobs Kahn's algorithm could not order (`waiting > 0`):
/// walk parent links from one of them until a job repeats.
fn find_cycle(edges: &[Vec<usize>], waiting: &[usize]) -> Vec<usize> {
    let start = waiting
        .iter()
        .position(|&w| w > 0)
        .expect("an unordered job exists");
    let mut seen = BTreeMap::new();
    let mut path = Vec::new();
    let mut at = start;
    loop {
        if let Some(&pos) = seen.get(&at) {
            // `path[pos..]` runs child → parent; show it parent → child, closed.
            let mut cycle: Vec<usize> = path[pos..].to_vec();
            cycle.reverse();
            cycle.push(cycle[0]);
            return cycle;
        }
        seen.insert(at, path.len());
        path.push(at);
        // Every unordered job has an unordered parent.
        at = *edges[at]
            .iter()
            .find(|&&p| waiting[p] > 0)
            .expect("an unordered job has an unordered parent");
    }
}

/// Sorts a workflow's jobs so parents come before children (ties by id).
pub fn parents_first(mut jobs: Vec<crate::job::Job>) -> Vec<crate::job::Job> {
    jobs.sort_by_key(|j| j.id);
    let index: HashMap<JobId, usize> = jobs.iter().enumerate().map(|(i, j)| (j.id, i)).collect();
    // Parents outside the workflow do not constrain the order.
    let edges: Vec<Vec<usize>> = jobs
        .iter()
        .map(|j| {
            j.depends_on
                .iter()
                .filter_map(|p| index.get(p).copied())
                .collect()
        })
        .collect();
    let order = kahn(&edges).0;
    if order.len() < jobs.len() {
        // Stored edges never form a cycle; keep the id order rather than drop jobs.
        return jobs;
    }
    let mut slots: Vec<Option<crate::job::Job>> = jobs.into_iter().map(Some).collect();
    order.into_iter().filter_map(|i| slots[i].take()).collect()
}

/// A workflow as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkflowRecord {
    pub id: WorkflowId,
    pub tenant: String,
    pub name: Option<String>,
    pub idempotency_key: Option<String>,
    pub created_at: Timestamp,
}

/// A workflow's state, from its jobs' states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkflowState {
    /// Some job has not ended yet.
    Running,
    /// Every job succeeded.
    Succeeded,
    /// Every job ended, and one failed (or was skipped because of a failure).
    Failed,
    /// Every job ended, none failed, and one was cancelled.
    Cancelled,
}

impl WorkflowState {
    pub fn of(states: impl IntoIterator<Item = JobState>) -> Self {
        let (mut failed, mut cancelled) = (false, false);
        for state in states {
            match state {
                JobState::Succeeded => {}
                JobState::Failed | JobState::Skipped => failed = true,
                JobState::Cancelled => cancelled = true,
                _ => return WorkflowState::Running,
            }
        }
        match (failed, cancelled) {
            (true, _) => WorkflowState::Failed,
            (false, true) => WorkflowState::Cancelled,
            (false, false) => WorkflowState::Succeeded,
        }
    }
}

/// `GET /api/v1/workflows/{id}` and the answer to `POST /api/v1/workflows`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowView {
    pub id: WorkflowId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub state: WorkflowState,
    pub created_at: Timestamp,
    /// Job ids by their names in the workflow.
    pub job_ids: BTreeMap<String, JobId>,
    /// Every job, parents before children.
    pub jobs: Vec<JobView>,
    /// Present on submit: true when the idempotency key named an earlier workflow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deduplicated: Option<bool>,
}

impl WorkflowView {
    pub fn new(record: WorkflowRecord, jobs: Vec<crate::job::Job>) -> Self {
        Self {
            id: record.id,
            name: record.name,
            state: WorkflowState::of(jobs.iter().map(|j| j.state)),
            created_at: record.created_at,
            job_ids: jobs
                .iter()
                .filter_map(|j| j.workflow.as_ref().map(|(_, name)| (name.clone(), j.id)))
                .collect(),
            jobs: jobs.into_iter().map(JobView::from).collect(),
            deduplicated: None,
        }
    }
}

/// Sorts a job's parents into the order its `depends_on` lists them.
pub fn in_listed_order(depends_on: &[JobId], parents: &mut [ParentResult]) {
    parents.sort_by_key(|p| depends_on.iter().position(|id| *id == p.id));
}

/// A parent of a leased job, so the child can read what its parents produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParentResult {
    pub id: JobId,
    /// The parent's name in its workflow, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub state: JobState,
    /// The result of its successful attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn workflow(jobs: Value) -> Result<NewWorkflow, FieldError> {
        let request: SubmitWorkflow = serde_json::from_value(json!({ "jobs": jobs })).unwrap();
        request.validate("default", Timestamp::UNIX_EPOCH)
    }

    fn names(w: &NewWorkflow) -> Vec<&str> {
        w.jobs
            .iter()
            .map(|j| j.workflow.as_ref().unwrap().1.as_str())
            .collect()
    }

    #[test]
    fn parents_are_ordered_first_and_linked_by_id() {
        let w = workflow(json!([
            {"name": "report", "kind": "k", "depends_on": ["a", "b"]},
            {"name": "b", "kind": "k", "depends_on": ["a"]},
            {"name": "a", "kind": "k"},
        ]))
        .unwrap();
        assert_eq!(names(&w), ["a", "b", "report"]);
        assert!(w.jobs[0].depends_on.is_empty());
        assert_eq!(w.jobs[1].depends_on, [w.jobs[0].id]);
        assert_eq!(w.jobs[2].depends_on, [w.jobs[0].id, w.jobs[1].id]);
        assert!(
            w.jobs
                .iter()
                .all(|j| j.workflow.as_ref().unwrap().0 == w.id)
        );
    }

    #[test]
    fn diamond_and_wide_fan_in_are_accepted() {
        let mut jobs = vec![json!({"name": "sink", "kind": "k",
            "depends_on": (0..100).map(|i| format!("p{i}")).collect::<Vec<_>>()})];
        jobs.extend(
            (0..100).map(|i| json!({"name": format!("p{i}"), "kind": "k", "depends_on": ["root"]})),
        );
        jobs.push(json!({"name": "root", "kind": "k"}));
        let w = workflow(Value::Array(jobs)).unwrap();
        assert_eq!(names(&w)[0], "root");
        assert_eq!(names(&w)[101], "sink");
        assert_eq!(w.jobs[101].depends_on.len(), 100);
    }

    #[test]
    fn errors_name_the_field_and_the_jobs() {
        let cases = [
            (
                json!([{"name": "a", "kind": "k", "depends_on": ["nope"]}]),
                "jobs[0].depends_on[0]",
                "`nope`",
            ),
            (
                json!([{"name": "a", "kind": "k"}, {"name": "a", "kind": "k"}]),
                "jobs[1].name",
                "jobs[0]",
            ),
            (json!([{"kind": "k"}]), "jobs[0].name", "required"),
            (
                json!([{"name": "a", "kind": "k", "depends_on": ["a"]}]),
                "jobs[0].depends_on",
                "a → a",
            ),
            (
                json!([
                    {"name": "x", "kind": "k"},
                    {"name": "a", "kind": "k", "depends_on": ["c", "x"]},
                    {"name": "b", "kind": "k", "depends_on": ["a"]},
                    {"name": "c", "kind": "k", "depends_on": ["b"]},
                ]),
                "depends_on",
                "cycle",
            ),
            (
                json!([{"name": "a", "kind": ""}]),
                "jobs[0].kind",
                "required",
            ),
            (
                json!([{"name": "a", "kind": "k", "idempotency_key": "x"}]),
                "jobs[0].idempotency_key",
                "workflow",
            ),
            (
                json!([{"name": "a", "kind": "k", "unique": {"key": "x"}}]),
                "jobs[0].unique",
                "workflow",
            ),
            (
                json!([{"name": "a", "kind": "k", "depends_on": ["b", "b"]}, {"name": "b", "kind": "k"}]),
                "jobs[0].depends_on[1]",
                "twice",
            ),
            (json!([]), "jobs", "at least one"),
        ];
        for (jobs, field, message) in cases {
            let e = workflow(jobs.clone()).unwrap_err();
            assert!(
                e.field.contains(field),
                "{jobs}: field {} (want {field})",
                e.field
            );
            assert!(e.message.contains(message), "{jobs}: {}", e.message);
        }
    }

    #[test]
    fn a_cycle_is_shown_in_dependency_order() {
        let e = workflow(json!([
            {"name": "a", "kind": "k", "depends_on": ["c"]},
            {"name": "b", "kind": "k", "depends_on": ["a"]},
            {"name": "c", "kind": "k", "depends_on": ["b"]},
        ]))
        .unwrap_err();
        // Each name is a parent of the next.
        let cycle = e.message.rsplit(": ").next().unwrap();
        let names: Vec<&str> = cycle.split(" → ").collect();
        assert_eq!(names.len(), 4);
        assert_eq!(names[0], names[3]);
        let parent_of = |p: &str, c: &str| matches!((p, c), ("c", "a") | ("a", "b") | ("b", "c"));
        assert!(names.windows(2).all(|w| parent_of(w[0], w[1])), "{cycle}");
    }

    #[test]
    fn unknown_fields_are_refused() {
        let e = serde_json::from_value::<SubmitWorkflow>(
            json!({"jobs": [{"name": "a", "kind": "k", "bogus": 1}]}),
        )
        .unwrap_err();
        assert!(e.to_string().contains("bogus"), "{e}");
    }

    #[test]
    fn readiness_follows_the_policy() {
        use JobState::*;
        use ParentFailure::*;
        let (t0, t1) = (Timestamp::UNIX_EPOCH, Timestamp::from_second(60).unwrap());
        let cases = [
            (vec![Running, Blocked], Skip, t0, JobState::Blocked),
            (vec![Succeeded, Succeeded], Skip, t0, JobState::Available),
            (vec![Succeeded], Skip, t1, JobState::Scheduled),
            (vec![Failed, Running], Skip, t0, JobState::Skipped),
            (vec![Skipped], Skip, t0, JobState::Skipped),
            (vec![Cancelled, Running], Run, t0, JobState::Blocked),
            (
                vec![Cancelled, Failed, Succeeded],
                Run,
                t0,
                JobState::Available,
            ),
            (vec![], Skip, t0, JobState::Available),
        ];
        for (parents, policy, run_at, want) in cases {
            let got = Standing::of(parents.clone()).state(policy, run_at, t0);
            assert_eq!(got, want, "{parents:?} {policy:?}");
        }
    }

    #[test]
    fn workflow_state_from_job_states() {
        use JobState::*;
        assert_eq!(
            WorkflowState::of([Succeeded, Running]),
            WorkflowState::Running
        );
        assert_eq!(
            WorkflowState::of([Succeeded, Blocked]),
            WorkflowState::Running
        );
        assert_eq!(
            WorkflowState::of([Succeeded, Succeeded]),
            WorkflowState::Succeeded
        );
        assert_eq!(WorkflowState::of([Failed, Skipped]), WorkflowState::Failed);
        assert_eq!(
            WorkflowState::of([Cancelled, Succeeded]),
            WorkflowState::Cancelled
        );
        assert_eq!(
            WorkflowState::of([Cancelled, Failed]),
            WorkflowState::Failed
        );
    }

    #[test]
    fn parent_id_lists_refuse_repeats() {
        let id = JobId::new_v7(Timestamp::UNIX_EPOCH);
        let e = validate_parents("depends_on", &[id, id]).unwrap_err();
        assert_eq!(e.field, "depends_on[1]");
    }
}
