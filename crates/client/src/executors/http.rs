//! The `http` executor: calls a URL and succeeds on a 2xx answer.
//!
//! Payload: `{"method": "POST", "url": "https://…", "headers": {"k": "v"},
//! "body": "text" | <any JSON>}`; only `url` is required, `method` defaults to
//! GET, and a JSON `body` is sent with `content-type: application/json`
//! unless the headers say otherwise.
//!
//! Result: `{"status": 200, "body": …, "truncated": false}`. `body` is the
//! answer's JSON when it declared a JSON content type and parsed, its text
//! otherwise; at most [`BODY_LIMIT`] bytes are kept and `truncated` says
//! whether more came. Any other status fails the attempt (the retry policy
//! decides what next) with the status and the start of the body.

use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, Url};
use serde_json::{Value, json};

use super::{HTTP_KIND, PayloadError, PayloadFields, head};
use crate::client::error_chain;
use crate::worker::{Handler, JobContext, Outcome};

/// How much of an answer's body is kept in the result.
pub const BODY_LIMIT: usize = 64 * 1024;
/// How much of a failed answer's body goes into the error message.
const ERROR_BODY_LIMIT: usize = 1024;
/// The longest a call may take when the job has no `timeout` of its own; a
/// call that hangs would otherwise hold a worker slot for ever.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

const FIELDS: [&str; 4] = ["method", "url", "headers", "body"];

/// Runs `http` jobs.
#[derive(Debug, Clone)]
pub struct HttpExecutor {
    /// Separate from the taskwheel API client on purpose: that one may carry
    /// credentials in default headers, which must never reach job URLs.
    http: reqwest::Client,
}

impl HttpExecutor {
    pub fn new() -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("taskwheel/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { http })
    }
}

#[async_trait]
impl Handler for HttpExecutor {
    async fn handle(&self, job: JobContext) -> Outcome {
        let call = match HttpCall::from_payload(job.payload()) {
            Ok(call) => call,
            Err(e) => return Outcome::fail_permanently(e.to_string()),
        };
        let timeout = job.timeout().unwrap_or(DEFAULT_CALL_TIMEOUT);
        let target = format!("{} {}", call.method, call.url);
        tokio::select! {
            () = job.cancelled() => Outcome::cancel(format!("cancel requested; abandoned {target}")),
            outcome = call.send(&self.http, timeout) => outcome,
        }
    }
}

/// A validated `http` payload.
#[derive(Debug, Clone, PartialEq)]
struct HttpCall {
    method: Method,
    url: Url,
    headers: HeaderMap,
    body: Option<Vec<u8>>,
}

impl HttpCall {
    fn from_payload(payload: &Value) -> Result<Self, PayloadError> {
        let fields = PayloadFields::new(HTTP_KIND, payload, &FIELDS)?;
        let method = match fields.optional_str("method")? {
            None => Method::GET,
            Some(m) => Method::from_bytes(m.to_ascii_uppercase().as_bytes())
                .map_err(|_| fields.error("method", format!("`{m}` is not an HTTP method")))?,
        };
        let url_text = fields.required_str("url")?;
        let url = Url::parse(url_text)
            .map_err(|e| fields.error("url", format!("`{url_text}` is not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(fields.error("url", "must be an http:// or https:// URL"));
        }
        let mut headers = HeaderMap::new();
        for (name, value) in fields.string_map("headers")? {
            let field = format!("headers.{name}");
            let header_name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| fields.error(&field, "is not a valid header name"))?;
            let header_value = HeaderValue::from_str(&value)
                .map_err(|_| fields.error(&field, "is not a valid header value"))?;
            headers.append(header_name, header_value);
        }
        let body = match fields.get("body") {
            None => None,
            Some(Value::String(text)) => Some(text.clone().into_bytes()),
            Some(json) => {
                if !headers.contains_key(CONTENT_TYPE) {
                    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                }
                Some(json.to_string().into_bytes())
            }
        };
        Ok(Self {
            method,
            url,
            headers,
            body,
        })
    }

    async fn send(self, http: &reqwest::Client, timeout: Duration) -> Outcome {
        let target = format!("{} {}", self.method, self.url);
        let mut request = http
            .request(self.method, self.url)
            .headers(self.headers)
            .timeout(timeout);
        if let Some(body) = self.body {
            request = request.body(body);
        }
        let mut response = match request.send().await {
            Ok(response) => response,
            Err(e) => return Outcome::retry(format!("{target}: {}", error_chain(&e))),
        };
        let status = response.status();
        let is_json = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("json"));
        let (bytes, truncated) = match read_bounded(&mut response, BODY_LIMIT).await {
            Ok(read) => read,
            Err(e) => {
                return Outcome::retry(format!(
                    "{target}: HTTP {status}, then reading the body failed: {}",
                    error_chain(&e)
                ));
            }
        };
        if !status.is_success() {
            let (start, cut) = head(&bytes, ERROR_BODY_LIMIT);
            let ellipsis = if cut || truncated { "…" } else { "" };
            return Outcome::retry(format!(
                "{target} answered HTTP {status}: {start}{ellipsis}"
            ));
        }
        let body = match is_json && !truncated {
            true => serde_json::from_slice(&bytes).ok(),
            false => None,
        }
        .unwrap_or_else(|| Value::String(head(&bytes, BODY_LIMIT).0));
        Outcome::complete_with(json!({
            "status": status.as_u16(),
            "body": body,
            "truncated": truncated,
        }))
    }
}

/// Reads at most `limit` bytes of the body; the flag says whether more came.
/// Stops reading there, so a huge answer costs no more than the limit.
async fn read_bounded(
    response: &mut reqwest::Response,
    limit: usize,
) -> Result<(Vec<u8>, bool), reqwest::Error> {
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = limit - bytes.len();
        if chunk.len() > room {
            bytes.extend_from_slice(&chunk[..room]);
            return Ok((bytes, true));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok((bytes, false))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executors::testing::context;
    use axum::Router;
    use axum::http::{HeaderMap as AxumHeaders, StatusCode};
    use axum::routing::{get, post};

    #[test]
    fn payloads_parse_with_defaults() {
        let call = HttpCall::from_payload(&json!({"url": "http://example.com/x"})).unwrap();
        assert_eq!(call.method, Method::GET);
        assert!(call.body.is_none());

        let call = HttpCall::from_payload(&json!({
            "method": "post", "url": "https://example.com", "headers": {"x-a": "1"},
            "body": {"n": 1}
        }))
        .unwrap();
        assert_eq!(call.method, Method::POST);
        assert_eq!(call.headers["x-a"], "1");
        assert_eq!(call.headers[CONTENT_TYPE], "application/json");
        assert_eq!(call.body.as_deref(), Some(br#"{"n":1}"#.as_slice()));

        let call = HttpCall::from_payload(&json!({
            "url": "https://example.com", "headers": {"Content-Type": "text/csv"}, "body": "a,b"
        }))
        .unwrap();
        assert_eq!(call.headers[CONTENT_TYPE], "text/csv");
        assert_eq!(call.body.as_deref(), Some(b"a,b".as_slice()));
    }

    #[test]
    fn bad_payloads_name_the_field() {
        let cases = [
            (json!(null), "payload"),
            (json!({}), "url"),
            (json!({"url": "not a url"}), "url"),
            (json!({"url": "ftp://example.com"}), "url"),
            (json!({"url": "http://h", "method": "GE T"}), "method"),
            (
                json!({"url": "http://h", "headers": {"bad name": "v"}}),
                "headers.bad name",
            ),
            (
                json!({"url": "http://h", "headers": {"x": "a\nb"}}),
                "headers.x",
            ),
            (json!({"url": "http://h", "headers": {"x": 1}}), "headers.x"),
            (json!({"url": "http://h", "header": {}}), "header"),
        ];
        for (payload, field) in cases {
            let err = HttpCall::from_payload(&payload).unwrap_err();
            assert_eq!(err.field, field, "{payload}: {err}");
        }
    }

    /// A real server on 127.0.0.1:0 with the answers the tests need.
    async fn serve() -> String {
        let app = Router::new()
            .route("/ok", get(|| async { "hello" }))
            .route(
                "/json",
                get(|| async { axum::Json(json!({"greeting": "hi"})) }),
            )
            .route(
                "/echo",
                post(|headers: AxumHeaders, body: String| async move {
                    let ct = headers
                        .get("content-type")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    format!("{ct}|{body}")
                }),
            )
            .route("/big", get(|| async { "x".repeat(BODY_LIMIT + 10) }))
            .route(
                "/down",
                get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "try later") }),
            )
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    "late"
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{addr}")
    }

    async fn run(payload: Value, timeout: Option<Duration>) -> Outcome {
        let (ctx, _cancel) = context(HTTP_KIND, payload, timeout);
        HttpExecutor::new().unwrap().handle(ctx).await
    }

    #[tokio::test]
    async fn calls_a_real_server() {
        let base = serve().await;

        let out = run(json!({"url": format!("{base}/ok")}), None).await;
        assert_eq!(
            out,
            Outcome::complete_with(json!({"status": 200, "body": "hello", "truncated": false}))
        );

        let out = run(json!({"url": format!("{base}/json")}), None).await;
        assert_eq!(
            out,
            Outcome::complete_with(
                json!({"status": 200, "body": {"greeting": "hi"}, "truncated": false})
            )
        );

        let out = run(
            json!({"method": "POST", "url": format!("{base}/echo"), "body": {"a": 1}}),
            None,
        )
        .await;
        let Outcome::Complete(Some(result)) = out else {
            panic!("{out:?}")
        };
        assert_eq!(result["body"], r#"application/json|{"a":1}"#);
    }

    #[tokio::test]
    async fn large_bodies_are_cut_and_marked() {
        let base = serve().await;
        let out = run(json!({"url": format!("{base}/big")}), None).await;
        let Outcome::Complete(Some(result)) = out else {
            panic!("{out:?}")
        };
        assert_eq!(result["truncated"], true);
        assert_eq!(result["body"].as_str().unwrap().len(), BODY_LIMIT);
    }

    #[tokio::test]
    async fn failures_fail_the_attempt() {
        let base = serve().await;
        let out = run(json!({"url": format!("{base}/down")}), None).await;
        let Outcome::Fail { error, retry: true } = out else {
            panic!("{out:?}")
        };
        assert!(
            error.contains("503") && error.contains("try later"),
            "{error}"
        );

        let out = run(
            json!({"url": format!("{base}/slow")}),
            Some(Duration::from_millis(200)),
        )
        .await;
        assert!(matches!(out, Outcome::Fail { retry: true, .. }), "{out:?}");

        let out = run(json!({"url": 42}), None).await;
        let Outcome::Fail {
            error,
            retry: false,
        } = out
        else {
            panic!("{out:?}")
        };
        assert!(error.contains("url"), "{error}");
    }

    #[tokio::test]
    async fn cancel_abandons_the_call() {
        let base = serve().await;
        let (ctx, cancel) = context(HTTP_KIND, json!({"url": format!("{base}/slow")}), None);
        let running = tokio::spawn(async move { HttpExecutor::new().unwrap().handle(ctx).await });
        cancel.send_replace(true);
        let out = tokio::time::timeout(Duration::from_secs(5), running)
            .await
            .expect("cancel ends the call quickly")
            .unwrap();
        assert!(matches!(out, Outcome::Cancel { .. }), "{out:?}");
    }
}
