//! The typed client of REST API v1: one method per endpoint, request and
//! response bodies from [`taskwheel_core::wire`], and [`ClientError`], which
//! keeps the server's stable error code apart from transport failures.
//!
//! One [`Client`] owns one `reqwest::Client`, so clones share a connection
//! pool; clone it freely instead of building new ones.

use std::time::Duration;

use reqwest::{Method, StatusCode, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;
use taskwheel_core::queue::{QueueList, QueuePatch, QueueView};
use taskwheel_core::recurring::{NextFires, ScheduleList, ScheduleRequest, ScheduleView};
use taskwheel_core::wire::{
    CompleteBatch, CompleteBatchResponse, CompleteRequest, ErrorBody, ErrorDetail, FailRequest,
    HeartbeatRequest, HeartbeatResponse, JobList, JobOutcome, JobView, LeaseRequest, LeaseResponse,
    ListJobsQuery, ProgressReport, SnoozeRequest, SubmitBatchResponse, SubmitJob,
};
use taskwheel_core::workflow::{SubmitWorkflow, WorkflowId, WorkflowView};
use taskwheel_core::{ErrorCode, JobId, LeaseToken};

/// How long any request but `lease` may take end to end. Generous, because a
/// busy server batching commits can be slow, but finite so a dead peer that
/// keeps the socket open cannot hang a worker forever.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Added to a lease request's long-poll `wait` for its own timeout: the server
/// answers after `wait` at the latest, and the answer still has to travel.
const LEASE_TIMEOUT_SLACK: Duration = Duration::from_secs(15);
/// How much of a body that is not a taskwheel error is quoted in an error message.
const QUOTED_BODY_LIMIT: usize = 512;

/// What can go wrong talking to a taskwheel server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server answered with a taskwheel error body.
    #[error("{}", describe(error))]
    Api { status: u16, error: ErrorDetail },
    /// The request did not get an answer: connection refused, timeout, reset.
    /// The message already includes the causes (which is what logs need), so
    /// the reqwest error is not also exposed as `source()`, or reports that
    /// walk the chain would print it twice.
    #[error("request failed: {}", error_chain(.0))]
    Http(reqwest::Error),
    /// The server answered, but not with the JSON this client expects
    /// (wrong URL, a proxy's error page, or a server of another version).
    #[error("unexpected answer from {url} (HTTP {status}): {message}")]
    Decode {
        url: String,
        status: u16,
        message: String,
    },
    #[error("invalid server URL `{url}`: {reason}")]
    InvalidUrl { url: String, reason: String },
    /// A schedule key that cannot be put in a URL path; refused before sending.
    #[error("schedule key `{key}`: {reason}")]
    InvalidKey { key: String, reason: String },
}

impl From<reqwest::Error> for ClientError {
    fn from(e: reqwest::Error) -> Self {
        ClientError::Http(e)
    }
}

impl ClientError {
    /// The server's error code, when the server answered with one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Api { error, .. } => Some(error.code),
            _ => None,
        }
    }

    /// The lease token is no longer the job's lease: another worker may hold it now.
    pub fn is_lease_mismatch(&self) -> bool {
        self.code() == Some(ErrorCode::LeaseMismatch)
    }

    pub fn is_not_found(&self) -> bool {
        self.code() == Some(ErrorCode::NotFound)
    }

    pub fn is_invalid_state(&self) -> bool {
        self.code() == Some(ErrorCode::InvalidState)
    }

    pub fn is_invalid_request(&self) -> bool {
        self.code() == Some(ErrorCode::InvalidRequest)
    }

    /// Worth retrying the same request later: no answer, or the server said it
    /// is unavailable or failed internally. A 4xx answer will not change by waiting.
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Http(_) => true,
            ClientError::Api { status, .. } | ClientError::Decode { status, .. } => *status >= 500,
            ClientError::InvalidUrl { .. } | ClientError::InvalidKey { .. } => false,
        }
    }
}

/// `invalid_request: queue must be ... (field: queue)`: how the CLI prints API errors.
fn describe(e: &ErrorDetail) -> String {
    let mut text = format!("{}: {}", code_str(e.code), e.message);
    if let Some(field) = &e.field {
        text.push_str(&format!(" (field: {field})"));
    }
    text
}

/// The wire spelling of a code (`lease_mismatch`), which is what users grep logs for.
pub fn code_str(code: ErrorCode) -> String {
    match serde_json::to_value(code) {
        Ok(serde_json::Value::String(s)) => s,
        // Unreachable for a unit enum; the Debug form is still recognisable.
        _ => format!("{code:?}"),
    }
}

/// reqwest's top-level message ("error sending request") hides the cause
/// ("connection refused"); users need both.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// A client of one taskwheel server.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    /// Always ends with `/`, so endpoint paths join under it even when the
    /// server sits behind a path prefix (`https://host/taskwheel/`).
    base: Url,
}

impl Client {
    /// A client of the server at `base_url`, such as `http://127.0.0.1:7070`.
    pub fn new(base_url: &str) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .build()?;
        Self::with_http_client(base_url, http)
    }

    /// Like [`Client::new`] with a caller-configured `reqwest::Client`
    /// (proxies, TLS roots, default headers such as an API key).
    pub fn with_http_client(base_url: &str, http: reqwest::Client) -> Result<Self, ClientError> {
        let invalid = |reason: &str| ClientError::InvalidUrl {
            url: base_url.to_string(),
            reason: reason.to_string(),
        };
        let mut base = Url::parse(base_url).map_err(|e| invalid(&e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(invalid("use an http:// or https:// URL"));
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(invalid("must not have a query or fragment"));
        }
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        Ok(Self { http, base })
    }

    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// `POST /api/v1/jobs`. `deduplicated` is `Some(true)` on the answer when an
    /// earlier job with the same idempotency key was returned.
    pub async fn submit(&self, job: &SubmitJob) -> Result<JobView, ClientError> {
        self.send(Method::POST, "api/v1/jobs", Some(job), None)
            .await
    }

    /// `POST /api/v1/jobs/batch`: up to 10,000 jobs in one request and one
    /// transaction; one result per job, in order. With `atomic`, an invalid
    /// job rejects the whole batch (an error naming `jobs[i].field`).
    pub async fn submit_batch(
        &self,
        jobs: &[SubmitJob],
        atomic: bool,
    ) -> Result<SubmitBatchResponse, ClientError> {
        #[derive(serde::Serialize)]
        struct Body<'a> {
            jobs: &'a [SubmitJob],
            atomic: bool,
        }
        let body = Body { jobs, atomic };
        self.send(Method::POST, "api/v1/jobs/batch", Some(&body), None)
            .await
    }

    /// `GET /api/v1/jobs/{id}`, with the job's finished attempts.
    pub async fn get_job(&self, id: JobId) -> Result<JobView, ClientError> {
        self.send::<(), _>(Method::GET, &format!("api/v1/jobs/{id}"), None, None)
            .await
    }

    /// `GET /api/v1/jobs`: one page, newest first.
    pub async fn list_jobs(&self, query: &ListJobsQuery) -> Result<JobList, ClientError> {
        let mut url = self.url("api/v1/jobs")?;
        {
            let mut pairs = url.query_pairs_mut();
            if let Some(q) = &query.queue {
                pairs.append_pair("queue", q);
            }
            if let Some(s) = query.state {
                pairs.append_pair("state", s.as_str());
            }
            if let Some(k) = &query.kind {
                pairs.append_pair("kind", k);
            }
            if let Some(l) = query.limit {
                pairs.append_pair("limit", &l.to_string());
            }
            if let Some(c) = &query.cursor {
                pairs.append_pair("cursor", c);
            }
        }
        // `query_pairs_mut` leaves a bare `?` behind when nothing was appended.
        if url.query() == Some("") {
            url.set_query(None);
        }
        self.send_url::<(), _>(Method::GET, url, None, None).await
    }

    /// `DELETE /api/v1/jobs/{id}`: cancels a pending job; a running one gets
    /// `cancel_requested: true` and its worker learns of it at its next heartbeat.
    pub async fn cancel(&self, id: JobId) -> Result<JobView, ClientError> {
        self.send::<(), _>(Method::DELETE, &format!("api/v1/jobs/{id}"), None, None)
            .await
    }

    /// `POST /api/v1/workflows`: a graph of named jobs in one transaction.
    pub async fn submit_workflow(
        &self,
        workflow: &SubmitWorkflow,
    ) -> Result<WorkflowView, ClientError> {
        self.send(Method::POST, "api/v1/workflows", Some(workflow), None)
            .await
    }

    /// `GET /api/v1/workflows/{id}`: every job's state and the overall state.
    pub async fn get_workflow(&self, id: WorkflowId) -> Result<WorkflowView, ClientError> {
        self.send::<(), _>(Method::GET, &format!("api/v1/workflows/{id}"), None, None)
            .await
    }

    /// `DELETE /api/v1/workflows/{id}`: cancels what has not ended.
    pub async fn cancel_workflow(&self, id: WorkflowId) -> Result<WorkflowView, ClientError> {
        self.send::<(), _>(
            Method::DELETE,
            &format!("api/v1/workflows/{id}"),
            None,
            None,
        )
        .await
    }

    /// `POST /api/v1/jobs/{id}/retry`: runs a failed or cancelled job again.
    pub async fn retry(&self, id: JobId) -> Result<JobView, ClientError> {
        self.send::<(), _>(Method::POST, &format!("api/v1/jobs/{id}/retry"), None, None)
            .await
    }

    /// `POST /api/v1/lease`. Waits up to `request.wait` for work; the request's
    /// own timeout is longer than that, so a long poll is not cut short.
    pub async fn lease(&self, request: &LeaseRequest) -> Result<LeaseResponse, ClientError> {
        let wait = request.wait.map(|w| w.0).unwrap_or_default();
        let timeout = wait.saturating_add(LEASE_TIMEOUT_SLACK);
        self.send(Method::POST, "api/v1/lease", Some(request), Some(timeout))
            .await
    }

    /// `POST /api/v1/jobs/{id}/heartbeat`: extends the lease.
    pub async fn heartbeat(
        &self,
        id: JobId,
        lease_token: LeaseToken,
    ) -> Result<HeartbeatResponse, ClientError> {
        self.heartbeat_with_progress(id, lease_token, None).await
    }

    /// `POST /api/v1/jobs/{id}/heartbeat` with the job's progress, which the
    /// server stores on the job (shown by `GET /api/v1/jobs/{id}`).
    pub async fn heartbeat_with_progress(
        &self,
        id: JobId,
        lease_token: LeaseToken,
        progress: Option<ProgressReport>,
    ) -> Result<HeartbeatResponse, ClientError> {
        let body = HeartbeatRequest {
            lease_token,
            progress,
        };
        self.send(
            Method::POST,
            &format!("api/v1/jobs/{id}/heartbeat"),
            Some(&body),
            None,
        )
        .await
    }

    /// `POST /api/v1/jobs/{id}/complete`.
    pub async fn complete(
        &self,
        id: JobId,
        request: &CompleteRequest,
    ) -> Result<JobOutcome, ClientError> {
        self.send(
            Method::POST,
            &format!("api/v1/jobs/{id}/complete"),
            Some(request),
            None,
        )
        .await
    }

    /// `POST /api/v1/jobs/{id}/fail`.
    pub async fn fail(&self, id: JobId, request: &FailRequest) -> Result<JobOutcome, ClientError> {
        self.send(
            Method::POST,
            &format!("api/v1/jobs/{id}/fail"),
            Some(request),
            None,
        )
        .await
    }

    /// `POST /api/v1/jobs/{id}/snooze`: puts a running job back, due after
    /// `delay`, without counting the attempt. A zero delay releases it.
    pub async fn snooze(
        &self,
        id: JobId,
        request: &SnoozeRequest,
    ) -> Result<JobOutcome, ClientError> {
        self.send(
            Method::POST,
            &format!("api/v1/jobs/{id}/snooze"),
            Some(request),
            None,
        )
        .await
    }

    /// `POST /api/v1/jobs/complete`: many completions in one request. Errors of
    /// single items are in the answer, not in the `Result`.
    pub async fn complete_batch(
        &self,
        batch: &CompleteBatch,
    ) -> Result<CompleteBatchResponse, ClientError> {
        self.send(Method::POST, "api/v1/jobs/complete", Some(batch), None)
            .await
    }

    /// `POST /api/v1/schedules`: a new schedule (`name`, a timing and `job` are required).
    pub async fn create_schedule(
        &self,
        request: &ScheduleRequest,
    ) -> Result<ScheduleView, ClientError> {
        self.send(Method::POST, "api/v1/schedules", Some(request), None)
            .await
    }

    /// `GET /api/v1/schedules`: every schedule of the tenant.
    pub async fn list_schedules(&self) -> Result<ScheduleList, ClientError> {
        self.send::<(), _>(Method::GET, "api/v1/schedules", None, None)
            .await
    }

    /// `GET /api/v1/schedules/{key}`; `key` is the schedule's id or its name.
    pub async fn get_schedule(&self, key: &str) -> Result<ScheduleView, ClientError> {
        let url = self.schedule_url(key, None)?;
        self.send_url::<(), _>(Method::GET, url, None, None).await
    }

    /// `PATCH /api/v1/schedules/{key}`: the fields given in `request` replace
    /// the stored ones (any of `cron`, `every`, `at` replaces the whole timing).
    pub async fn update_schedule(
        &self,
        key: &str,
        request: &ScheduleRequest,
    ) -> Result<ScheduleView, ClientError> {
        let url = self.schedule_url(key, None)?;
        self.send_url(Method::PATCH, url, Some(request), None).await
    }

    /// `DELETE /api/v1/schedules/{key}`. Jobs it already created are kept.
    pub async fn delete_schedule(&self, key: &str) -> Result<(), ClientError> {
        let url = self.schedule_url(key, None)?;
        self.send_url::<(), _>(Method::DELETE, url, None, None)
            .await
    }

    /// `POST /api/v1/schedules/{key}/pause`: no ticks fire until it is resumed.
    pub async fn pause_schedule(&self, key: &str) -> Result<ScheduleView, ClientError> {
        let url = self.schedule_url(key, Some("pause"))?;
        self.send_url::<(), _>(Method::POST, url, None, None).await
    }

    /// `POST /api/v1/schedules/{key}/resume`: ticks missed while paused follow
    /// the schedule's misfire policy.
    pub async fn resume_schedule(&self, key: &str) -> Result<ScheduleView, ClientError> {
        let url = self.schedule_url(key, Some("resume"))?;
        self.send_url::<(), _>(Method::POST, url, None, None).await
    }

    /// `POST /api/v1/schedules/{key}/trigger`: creates one job from the
    /// schedule's template now, outside its timing.
    pub async fn trigger_schedule(&self, key: &str) -> Result<JobView, ClientError> {
        let url = self.schedule_url(key, Some("trigger"))?;
        self.send_url::<(), _>(Method::POST, url, None, None).await
    }

    /// `GET /api/v1/schedules/{key}/next?count=N`: the next `count` ticks.
    pub async fn next_fires(&self, key: &str, count: usize) -> Result<NextFires, ClientError> {
        let mut url = self.schedule_url(key, Some("next"))?;
        url.query_pairs_mut()
            .append_pair("count", &count.to_string());
        self.send_url::<(), _>(Method::GET, url, None, None).await
    }

    /// `GET /api/v1/queues`: every queue with jobs or settings, with its depth and settings.
    pub async fn list_queues(&self) -> Result<QueueList, ClientError> {
        self.send::<(), _>(Method::GET, "api/v1/queues", None, None)
            .await
    }

    /// `GET /api/v1/queues/{name}`.
    pub async fn get_queue(&self, name: &str) -> Result<QueueView, ClientError> {
        let url = self.queue_url(name)?;
        self.send_url::<(), _>(Method::GET, url, None, None).await
    }

    /// `PATCH /api/v1/queues/{name}`: pause or resume, set or lift limits
    /// (fields left `None` stay as they are).
    pub async fn update_queue(
        &self,
        name: &str,
        patch: &QueuePatch,
    ) -> Result<QueueView, ClientError> {
        let url = self.queue_url(name)?;
        self.send_url(Method::PATCH, url, Some(patch), None).await
    }

    /// `GET /api/v1/stats`: server figures, such as `lateness` (`count`,
    /// `p50_ms`, `p99_ms`, `max_ms`: how late due work was made available).
    /// Untyped, so figures a newer server adds reach the caller as they are.
    pub async fn stats(&self) -> Result<serde_json::Value, ClientError> {
        self.send::<(), _>(Method::GET, "api/v1/stats", None, None)
            .await
    }

    /// `GET /healthz`: `Ok` when the server answers `{"status":"ok"}`.
    pub async fn health(&self) -> Result<(), ClientError> {
        #[derive(serde::Deserialize)]
        struct Health {
            status: String,
        }
        let url = self.url("healthz")?;
        let health: Health = self
            .send_url::<(), _>(Method::GET, url.clone(), None, None)
            .await?;
        if health.status == "ok" {
            Ok(())
        } else {
            Err(ClientError::Decode {
                url: url.to_string(),
                status: 200,
                message: format!("status is `{}`, not `ok`", health.status),
            })
        }
    }

    fn url(&self, path: &str) -> Result<Url, ClientError> {
        self.base.join(path).map_err(|e| ClientError::InvalidUrl {
            url: format!("{}{path}", self.base),
            reason: e.to_string(),
        })
    }

    /// `api/v1/queues/{name}`; queue names are plain (`A-Z a-z 0-9 _ - . :`),
    /// so one that is not is refused before sending.
    fn queue_url(&self, name: &str) -> Result<Url, ClientError> {
        taskwheel_core::wire::validate_name("queue", name).map_err(|e| {
            ClientError::InvalidUrl {
                url: format!("{}api/v1/queues/{name}", self.base),
                reason: e.to_string(),
            }
        })?;
        self.url(&format!("api/v1/queues/{name}"))
    }

    /// `api/v1/schedules/{key}[/{action}]` with `key` percent-encoded as one
    /// path segment, so a name can hold any character without escaping the path.
    fn schedule_url(&self, key: &str, action: Option<&str>) -> Result<Url, ClientError> {
        let invalid = |reason: &str| ClientError::InvalidKey {
            key: key.to_string(),
            reason: reason.to_string(),
        };
        // URLs resolve `.` and `..` segments (even spelled `%2e`), so such a
        // key would address another endpoint.
        match key {
            "" => return Err(invalid("must not be empty")),
            "." | ".." => {
                return Err(invalid(
                    "a URL path cannot hold it; address the schedule by its id",
                ));
            }
            _ => {}
        }
        let mut url = self.url("api/v1/schedules/")?;
        url.path_segments_mut()
            .map_err(|()| ClientError::InvalidUrl {
                url: self.base.to_string(),
                reason: "cannot have a path".to_string(),
            })?
            .pop_if_empty()
            .push(key)
            .extend(action);
        Ok(url)
    }

    async fn send<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        timeout: Option<Duration>,
    ) -> Result<T, ClientError> {
        let url = self.url(path)?;
        self.send_url(method, url, body, timeout).await
    }

    async fn send_url<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        url: Url,
        body: Option<&B>,
        timeout: Option<Duration>,
    ) -> Result<T, ClientError> {
        let mut request = self.http.request(method, url.clone());
        if let Some(body) = body {
            request = request.json(body);
        }
        if let Some(timeout) = timeout {
            request = request.timeout(timeout);
        }
        let response = request.send().await?;
        let status = response.status();
        let bytes = response.bytes().await?;
        decode_answer(&url, status, &bytes)
    }
}

/// Turns a status and body into the expected value or the matching error.
fn decode_answer<T: DeserializeOwned>(
    url: &Url,
    status: StatusCode,
    bytes: &[u8],
) -> Result<T, ClientError> {
    let decode_error = |message: String| ClientError::Decode {
        url: url.to_string(),
        status: status.as_u16(),
        message,
    };
    if status.is_success() {
        // `204 No Content` (a delete) has no body: read it as `null`, which is
        // what `()` and `Option<_>` decode from.
        if bytes.is_empty() {
            return serde_json::from_slice(b"null")
                .map_err(|_| decode_error("empty body where a JSON value was expected".into()));
        }
        return serde_json::from_slice(bytes).map_err(|e| decode_error(e.to_string()));
    }
    match serde_json::from_slice::<ErrorBody>(bytes) {
        Ok(body) => Err(ClientError::Api {
            status: status.as_u16(),
            error: body.error,
        }),
        Err(_) => Err(decode_error(format!(
            "not a taskwheel error body (is this a taskwheel server?): {}",
            quote_body(bytes)
        ))),
    }
}

fn quote_body(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "empty body".to_string();
    }
    let head = &bytes[..bytes.len().min(QUOTED_BODY_LIMIT)];
    let mut text = String::from_utf8_lossy(head).into_owned();
    if bytes.len() > QUOTED_BODY_LIMIT {
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url() -> Url {
        Url::parse("http://127.0.0.1:7070/api/v1/jobs").unwrap()
    }

    #[test]
    fn base_url_gets_a_trailing_slash_and_endpoints_join_under_it() {
        let c = Client::new("http://127.0.0.1:7070").unwrap();
        assert_eq!(
            c.url("api/v1/jobs").unwrap().as_str(),
            "http://127.0.0.1:7070/api/v1/jobs"
        );
        let c = Client::new("https://example.com/taskwheel").unwrap();
        assert_eq!(
            c.url("api/v1/lease").unwrap().as_str(),
            "https://example.com/taskwheel/api/v1/lease"
        );
    }

    #[test]
    fn bad_base_urls_are_refused() {
        for bad in ["127.0.0.1:7070", "ftp://host", "not a url", "http://h/?x=1"] {
            let err = Client::new(bad).unwrap_err();
            assert!(
                matches!(err, ClientError::InvalidUrl { .. }),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn error_bodies_become_api_errors() {
        let body = br#"{"error":{"code":"lease_mismatch","message":"the lease is gone"}}"#;
        let err = decode_answer::<JobOutcome>(&url(), StatusCode::CONFLICT, body).unwrap_err();
        assert!(err.is_lease_mismatch());
        assert!(!err.is_transient());
        assert_eq!(err.to_string(), "lease_mismatch: the lease is gone");

        let body =
            br#"{"error":{"code":"invalid_request","message":"is required","field":"kind"}}"#;
        let err = decode_answer::<JobView>(&url(), StatusCode::BAD_REQUEST, body).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid_request: is required (field: kind)"
        );
    }

    #[test]
    fn schedule_keys_are_one_encoded_path_segment() {
        let c = Client::new("https://example.com/taskwheel").unwrap();
        let cases = [
            ("nightly", None, "/taskwheel/api/v1/schedules/nightly"),
            (
                "a.b:c-d_e",
                Some("pause"),
                "/taskwheel/api/v1/schedules/a.b:c-d_e/pause",
            ),
            (
                "a/b",
                Some("next"),
                "/taskwheel/api/v1/schedules/a%2Fb/next",
            ),
            (
                "x y?z#w%",
                None,
                "/taskwheel/api/v1/schedules/x%20y%3Fz%23w%25",
            ),
            (
                "é",
                Some("trigger"),
                "/taskwheel/api/v1/schedules/%C3%A9/trigger",
            ),
            ("...", None, "/taskwheel/api/v1/schedules/..."),
        ];
        for (key, action, path) in cases {
            let url = c.schedule_url(key, action).unwrap();
            assert_eq!(url.path(), path, "{key:?} {action:?}");
            assert_eq!(url.query(), None);
            assert_eq!(url.fragment(), None);
        }
    }

    #[test]
    fn dot_keys_are_refused_rather_than_resolved() {
        let c = Client::new("http://127.0.0.1:7070").unwrap();
        for key in ["", ".", ".."] {
            let err = c.schedule_url(key, Some("pause")).unwrap_err();
            assert!(
                matches!(err, ClientError::InvalidKey { .. }),
                "{key:?}: {err}"
            );
            assert!(!err.is_transient());
        }
    }

    #[test]
    fn empty_success_bodies_decode_as_unit() {
        decode_answer::<()>(&url(), StatusCode::NO_CONTENT, b"").unwrap();
        let err = decode_answer::<JobView>(&url(), StatusCode::NO_CONTENT, b"").unwrap_err();
        assert!(
            matches!(err, ClientError::Decode { status: 204, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("empty body"), "{err}");
    }

    #[test]
    fn foreign_answers_are_decode_errors() {
        let err =
            decode_answer::<JobView>(&url(), StatusCode::BAD_GATEWAY, b"<html>bad gateway</html>")
                .unwrap_err();
        assert!(
            matches!(err, ClientError::Decode { status: 502, .. }),
            "{err}"
        );
        assert!(err.is_transient());
        let err = decode_answer::<JobView>(&url(), StatusCode::OK, b"{}").unwrap_err();
        assert!(
            matches!(err, ClientError::Decode { status: 200, .. }),
            "{err}"
        );
    }
}
