//! A real server on a loopback port with a fresh store, for the API tests.

use std::sync::Arc;

use jiff::Timestamp;
use serde_json::Value;
use taskwheel_core::{Clock, ManualClock, SystemClock};
use taskwheel_server::Engine;
use taskwheel_store::SqliteStore;
use tokio::sync::oneshot;

pub(crate) struct TestServer {
    pub(crate) url: String,
    pub(crate) engine: Arc<Engine>,
    pub(crate) http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    _dir: tempfile::TempDir,
}

impl TestServer {
    pub(crate) async fn start() -> Self {
        Self::with_clock(Arc::new(SystemClock)).await
    }

    /// A server whose time only moves when the test says; its timer loop still
    /// runs, so tests call `engine.tick()` after advancing the clock.
    pub(crate) async fn with_manual_clock(start: Timestamp) -> (Self, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new(start));
        (Self::with_clock(clock.clone()).await, clock)
    }

    async fn with_clock(clock: Arc<dyn Clock>) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(dir.path()).expect("open store");
        Self::serve(Engine::new(Arc::new(store), clock), dir).await
    }

    async fn serve(engine: Arc<Engine>, dir: tempfile::TempDir) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(taskwheel_server::serve(
            listener,
            engine.clone(),
            async move {
                let _ = stopped.await;
            },
        ));
        Self {
            url,
            engine,
            http: reqwest::Client::new(),
            stop: Some(stop),
            task: Some(task),
            _dir: dir,
        }
    }

    pub(crate) async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let resp = self
            .http
            .post(format!("{}{path}", self.url))
            .json(&body)
            .send()
            .await
            .expect("request");
        decode(resp).await
    }

    pub(crate) async fn post_raw(&self, path: &str, body: &'static str) -> (u16, Value) {
        let resp = self
            .http
            .post(format!("{}{path}", self.url))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request");
        decode(resp).await
    }

    pub(crate) async fn get(&self, path: &str) -> (u16, Value) {
        decode(
            self.http
                .get(format!("{}{path}", self.url))
                .send()
                .await
                .expect("request"),
        )
        .await
    }

    pub(crate) async fn patch(&self, path: &str, body: Value) -> (u16, Value) {
        let resp = self
            .http
            .patch(format!("{}{path}", self.url))
            .json(&body)
            .send()
            .await
            .expect("request");
        decode(resp).await
    }

    pub(crate) async fn delete(&self, path: &str) -> (u16, Value) {
        decode(
            self.http
                .delete(format!("{}{path}", self.url))
                .send()
                .await
                .expect("request"),
        )
        .await
    }

    /// Stops the server and waits for it to finish.
    pub(crate) async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task").expect("server result");
        }
    }
}

async fn decode(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).expect("JSON body")
    };
    (status, body)
}

impl TestServer {
    /// A node on a shared store, woken by the other nodes through `remote`.
    pub(crate) async fn on_store(
        store: Arc<dyn taskwheel_store::Store>,
        remote: tokio::sync::broadcast::Receiver<taskwheel_store::QueueRef>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self::on_store_with(
            store,
            remote,
            clock,
            taskwheel_server::EngineOptions::default(),
        )
        .await
    }

    /// Like [`TestServer::on_store`], with engine options (cluster membership).
    pub(crate) async fn on_store_with(
        store: Arc<dyn taskwheel_store::Store>,
        remote: tokio::sync::broadcast::Receiver<taskwheel_store::QueueRef>,
        clock: Arc<dyn Clock>,
        options: taskwheel_server::EngineOptions,
    ) -> Self {
        let engine = Engine::with_options(store, clock, options);
        tokio::spawn(engine.clone().follow_remote_wakeups(remote));
        Self::serve(engine, tempfile::tempdir().expect("tempdir")).await
    }
}
