//! `classify serve`: a model behind HTTP (axum on tokio), with a page for people.
//!
//! - `POST /predict`: the image as the raw body (`image/jpeg`, `image/png` or
//!   `application/octet-stream`) or as `multipart/form-data` file fields (one answer per
//!   file, in order). Answers JSON with the class, its probability, every class's probability
//!   and the model's name and digest.
//! - `GET /`: a page (no external assets) where a photo is picked or dropped and shown with
//!   the predicted class and one bar per class.
//! - `GET /model`: the model's metadata ([`ModelInfo`]); `GET /healthz`.
//!
//! Requests that arrive together are classified as one batch: a worker thread owns the
//! forward pass, takes the first waiting image, gathers whatever else arrives within
//! `batch_wait` (up to `max_batch` images) and runs them in one pass, while decoding runs on
//! the blocking pool (at most as many decodes at once as the machine has cores), so the next
//! batch is decoded while this one computes.
//!
//! Bad input is a JSON error with a 4xx status naming the problem: an empty body (400), a
//! wrong content type or a file that is not a JPEG or PNG (415), a body over `max_body`
//! (413), an image whose header claims more pixels than the decoding limits (413, refused
//! before any pixel is decoded), a truncated or corrupt image (422). The server keeps
//! serving. A stop signal (SIGTERM, Ctrl-C) stops accepting, lets the requests in flight
//! finish, and returns.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use image::RgbImage;
use imagedata::DataError;
use serde::Serialize;
use tokio::sync::{Semaphore, oneshot};

use crate::classifier::{Classifier, ModelInfo, Scores};
use crate::error::ClassifyError;

/// The page served at `GET /`.
const PAGE: &str = include_str!("page.html");

/// How to serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeOptions {
    /// The largest request body accepted, in bytes.
    pub max_body: usize,
    /// The most images one forward pass takes.
    pub max_batch: usize,
    /// How long the worker waits, after the first image of a batch, for more to arrive.
    pub batch_wait: Duration,
    /// The most images decoded at once (0: one per core).
    pub decoders: usize,
}

impl Default for ServeOptions {
    /// 20 MiB bodies, batches of up to 32 gathered for 2 ms, one decode per core.
    fn default() -> Self {
        Self {
            max_body: 20 << 20,
            max_batch: 32,
            batch_wait: Duration::from_millis(2),
            decoders: 0,
        }
    }
}

/// One image waiting for the forward pass.
struct Job {
    image: RgbImage,
    reply: oneshot::Sender<Result<Scores, String>>,
}

/// What the handlers share.
struct AppState {
    classifier: Arc<Classifier>,
    info: ModelInfo,
    model: ModelRef,
    jobs: std_mpsc::Sender<Job>,
    decoders: Semaphore,
}

/// The model as each answer names it.
#[derive(Debug, Clone, Serialize)]
struct ModelRef {
    name: String,
    sha256: String,
}

/// An error answer: `{"error": message, "kind": kind}` with a status.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    kind: &'static str,
    message: String,
    /// The request body was not read to its end: the connection cannot carry another request,
    /// and the answer says so (`Connection: close`) so that the client opens a new one.
    close: bool,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            message: message.into(),
            close: false,
        }
    }

    /// The answer to an image that could not be read.
    fn from_decode(e: &ClassifyError) -> Self {
        let (status, kind) = match e {
            ClassifyError::Data(d) => match d.as_ref() {
                DataError::Empty { .. } => (StatusCode::BAD_REQUEST, "empty"),
                DataError::Unsupported { .. } => {
                    (StatusCode::UNSUPPORTED_MEDIA_TYPE, "not_an_image")
                }
                DataError::Truncated { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "truncated"),
                DataError::TooLarge { .. } | DataError::OverLimit { .. } => {
                    (StatusCode::PAYLOAD_TOO_LARGE, "too_many_pixels")
                }
                _ => (StatusCode::UNPROCESSABLE_ENTITY, "corrupt"),
            },
            _ => (StatusCode::UNPROCESSABLE_ENTITY, "unreadable"),
        };
        Self::new(status, kind, e.to_string())
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    kind: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: &self.message,
            kind: self.kind,
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if self.close {
            response.headers_mut().insert(
                header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
        }
        response
    }
}

/// The answer for one image.
#[derive(Debug, Serialize)]
struct Answer {
    #[serde(skip_serializing_if = "Option::is_none")]
    file: Option<String>,
    class: String,
    probability: f32,
    probabilities: serde_json::Map<String, serde_json::Value>,
    model: ModelRef,
}

/// One entry of a multipart answer: the image's answer, or its error.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Entry {
    Ok(Answer),
    Err {
        file: String,
        error: String,
        kind: &'static str,
        status: u16,
    },
}

impl AppState {
    fn answer(&self, file: Option<String>, scores: Scores) -> Answer {
        let probabilities = self
            .info
            .classes
            .iter()
            .zip(&scores.probabilities)
            .map(|(c, &p)| (c.clone(), serde_json::json!(p)))
            .collect();
        Answer {
            file,
            class: scores.class,
            probability: scores.probability,
            probabilities,
            model: self.model.clone(),
        }
    }

    /// Decodes `bytes` on the blocking pool (at most `decoders` at once), then waits for the
    /// batch worker's answer.
    async fn classify(&self, bytes: Bytes, name: String) -> Result<Scores, ApiError> {
        let image = {
            let _permit = self.decoders.acquire().await.map_err(|_| shutting_down())?;
            let classifier = Arc::clone(&self.classifier);
            tokio::task::spawn_blocking(move || classifier.decode(&bytes, Path::new(&name)))
                .await
                .map_err(|e| {
                    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
                })?
                .map_err(|e| ApiError::from_decode(&e))?
        };
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job { image, reply })
            .map_err(|_| shutting_down())?;
        answer
            .await
            .map_err(|_| shutting_down())?
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "model", e))
    }
}

fn shutting_down() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "shutting_down",
        "the server is shutting down",
    )
}

/// The batch worker: one forward pass per gathered batch, until every sender is gone.
fn batch_worker(
    classifier: Arc<Classifier>,
    jobs: std_mpsc::Receiver<Job>,
    max_batch: usize,
    wait: Duration,
) {
    let max_batch = max_batch.max(1);
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        let deadline = Instant::now() + wait;
        while batch.len() < max_batch {
            // What is already queued joins at once; then wait out the rest of the window.
            match jobs.try_recv() {
                Ok(job) => {
                    batch.push(job);
                    continue;
                }
                Err(std_mpsc::TryRecvError::Disconnected) => break,
                Err(std_mpsc::TryRecvError::Empty) => {}
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match jobs.recv_timeout(left) {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let (images, replies): (Vec<RgbImage>, Vec<_>) =
            batch.into_iter().map(|j| (j.image, j.reply)).unzip();
        tracing::debug!(batch = images.len(), "forward pass");
        match classifier.predict_prepared(&images) {
            Ok(scores) => {
                for (reply, s) in replies.into_iter().zip(scores) {
                    let _ = reply.send(Ok(s));
                }
            }
            Err(e) => {
                let message = e.to_string();
                for reply in replies {
                    let _ = reply.send(Err(message.clone()));
                }
            }
        }
    }
}

/// The media type of a request, lower case, without parameters.
fn media_type(headers: &HeaderMap) -> Option<String> {
    let raw = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    Some(
        raw.split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase(),
    )
}

/// Media types accepted as a raw image body.
const RAW_TYPES: &[&str] = &[
    "image/jpeg",
    "image/jpg",
    "image/png",
    "application/octet-stream",
];

async fn predict(State(state): State<Arc<AppState>>, request: Request) -> Response {
    match predict_inner(&state, request).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn predict_inner(state: &Arc<AppState>, request: Request) -> Result<Response, ApiError> {
    let media = media_type(request.headers());
    match media.as_deref() {
        Some("multipart/form-data") => {
            let multipart = Multipart::from_request(request, &())
                .await
                .map_err(|e| ApiError::new(e.status(), "bad_multipart", e.body_text()))?;
            predict_multipart(state, multipart).await
        }
        Some(t) if !RAW_TYPES.contains(&t) => {
            let error = ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "wrong_content_type",
                format!(
                    "content type `{t}` is not accepted: send the image as image/jpeg, image/png \
                     or application/octet-stream, or as multipart/form-data file fields"
                ),
            );
            // Read the body (within the limit) so that the connection can carry the next
            // request; a body over the limit is refused as such.
            Bytes::from_request(request, &())
                .await
                .map_err(|e| body_error(e.status(), e.body_text()))?;
            Err(error)
        }
        _ => {
            let bytes = Bytes::from_request(request, &())
                .await
                .map_err(|e| body_error(e.status(), e.body_text()))?;
            if bytes.is_empty() {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "empty",
                    "the request body is empty: send the image as the body",
                ));
            }
            let scores = state.classify(bytes, "request body".into()).await?;
            Ok(axum::Json(state.answer(None, scores)).into_response())
        }
    }
}

/// The answer to a body that could not be read (over the limit, or broken off).
fn body_error(status: StatusCode, text: String) -> ApiError {
    let mut error = if status == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            status,
            "body_too_large",
            format!("the request body is too large: {text}"),
        )
    } else {
        ApiError::new(status, "bad_body", text)
    };
    error.close = true;
    error
}

async fn predict_multipart(
    state: &Arc<AppState>,
    mut multipart: Multipart,
) -> Result<Response, ApiError> {
    let mut files = Vec::new();
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(e) => return Err(body_error(e.status(), e.body_text())),
        };
        let name = field
            .file_name()
            .map(str::to_string)
            .or_else(|| field.name().map(str::to_string))
            .unwrap_or_else(|| format!("part {}", files.len() + 1));
        let bytes = field
            .bytes()
            .await
            .map_err(|e| body_error(e.status(), e.body_text()))?;
        files.push((name, bytes));
    }
    if files.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "empty",
            "the multipart body holds no file field",
        ));
    }
    let answers = classify_all(state, files).await;
    let first_error = answers.iter().find_map(|a| match a {
        Entry::Err { status, .. } => Some(*status),
        Entry::Ok(_) => None,
    });
    let all_failed = answers.iter().all(|a| matches!(a, Entry::Err { .. }));
    let status = match (all_failed, first_error) {
        (true, Some(code)) => StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST),
        _ => StatusCode::OK,
    };
    let body = serde_json::json!({ "model": state.model, "predictions": answers });
    Ok((status, axum::Json(body)).into_response())
}

/// Classifies every `(name, bytes)` concurrently (so they share batches); answers in order.
async fn classify_all(state: &Arc<AppState>, files: Vec<(String, Bytes)>) -> Vec<Entry> {
    let tasks: Vec<_> = files
        .into_iter()
        .map(|(name, bytes)| {
            let state = Arc::clone(state);
            tokio::spawn(async move {
                let result = if bytes.is_empty() {
                    Err(ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "empty",
                        format!("{name}: empty file (0 bytes)"),
                    ))
                } else {
                    state.classify(bytes, name.clone()).await
                };
                match result {
                    Ok(scores) => Entry::Ok(state.answer(Some(name), scores)),
                    Err(e) => Entry::Err {
                        file: name,
                        error: e.message,
                        kind: e.kind,
                        status: e.status.as_u16(),
                    },
                }
            })
        })
        .collect();
    let mut out = Vec::with_capacity(tasks.len());
    for task in tasks {
        out.push(task.await.unwrap_or_else(|e| Entry::Err {
            file: String::new(),
            error: e.to_string(),
            kind: "internal",
            status: 500,
        }));
    }
    out
}

async fn model_info(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    axum::Json(state.info.clone())
}

async fn healthz(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    axum::Json(serde_json::json!({ "status": "ok", "model": state.model }))
}

async fn page() -> impl IntoResponse {
    Html(PAGE)
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such endpoint: GET /, GET /model, GET /healthz, POST /predict",
    )
}

/// The application: its routes over `classifier`, and the batch worker's thread (which ends
/// once the router and every request holding it are gone). Fails only when the thread cannot
/// be started.
pub fn router(
    classifier: Classifier,
    options: &ServeOptions,
) -> std::io::Result<(Router, std::thread::JoinHandle<()>)> {
    let classifier = Arc::new(classifier);
    let info = classifier.info();
    let model = ModelRef {
        name: info.name.clone(),
        sha256: info.sha256.clone(),
    };
    let (jobs, receiver) = std_mpsc::channel();
    let worker = {
        let classifier = Arc::clone(&classifier);
        let (max_batch, wait) = (options.max_batch, options.batch_wait);
        std::thread::Builder::new()
            .name("batch-worker".into())
            .spawn(move || batch_worker(classifier, receiver, max_batch, wait))?
    };
    let decoders = match options.decoders {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n,
    };
    let state = Arc::new(AppState {
        classifier,
        info,
        model,
        jobs,
        decoders: Semaphore::new(decoders),
    });
    let router = Router::new()
        .route("/", get(page))
        .route("/model", get(model_info))
        .route("/healthz", get(healthz))
        .route("/predict", post(predict))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(options.max_body))
        .with_state(state);
    Ok((router, worker))
}

/// Serves `classifier` on `listener` until `shutdown` completes, then lets the requests in
/// flight finish and returns.
pub async fn serve(
    classifier: Classifier,
    options: &ServeOptions,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (router, worker) = router(classifier, options)?;
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await?;
    // Every handler (and so every sender) is gone: the worker ends after its last batch. The
    // wait is bounded so that a stuck forward pass cannot keep the process from exiting.
    let joined = tokio::task::spawn_blocking(move || worker.join());
    if tokio::time::timeout(Duration::from_secs(60), joined)
        .await
        .is_err()
    {
        tracing::warn!("the batch worker did not finish within 60 s of the last request");
    }
    Ok(())
}

/// Completes on SIGTERM or Ctrl-C (SIGINT).
pub async fn stop_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

/// Binds `addr`, calls `on_listening` with the bound address, and serves `classifier` until
/// SIGTERM or Ctrl-C, on a multi-threaded tokio runtime.
pub fn run(
    classifier: Classifier,
    addr: SocketAddr,
    options: &ServeOptions,
    on_listening: impl FnOnce(SocketAddr),
) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("serve")
        .build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        on_listening(listener.local_addr()?);
        serve(classifier, options, listener, stop_signal()).await
    })
}
