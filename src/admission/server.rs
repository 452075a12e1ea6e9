//! The webhook's HTTPS server: TLS from the [`CertStore`](super::CertStore), then the same HTTP
//! stack as the health server (an axum `Router`), HTTP/1.1 and HTTP/2.
//!
//! Bounded against slow and greedy clients: at most [`MAX_CONNECTIONS`] connections (further
//! ones wait in the listen backlog); a TLS handshake, the request headers and a whole body must
//! each arrive within 10 s; a connection with no request in progress is closed after
//! [`IDLE_TIMEOUT`] (HTTP/1.1 and HTTP/2 alike, also before its first request); a body is at most
//! [`MAX_BODY`] bytes, and all bodies being read at once share [`BODY_BUDGET`] bytes, so what the
//! server buffers never exceeds that budget whatever the number of clients.

use super::decision::Rejection;
use super::webhook::Webhook;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::StreamExt as _;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The largest review body accepted. A review carries the object and, for an UPDATE, the stored
/// object. The API server sends it after the object passed schema and metadata validation and
/// before storing it, and etcd stores at most 1.5 MiB per object (its default
/// `--max-request-bytes`), in the same JSON encoding: an object larger than that cannot be stored
/// whatever the webhook answers. Two such objects plus the envelope (`userInfo`, options:
/// kilobytes) fit in 3 MiB + 256 KiB; a larger review is refused with HTTP 413.
pub const MAX_BODY: usize = 3 * 1024 * 1024 + 256 * 1024;
/// Bytes all request bodies being read at once may hold together (a few of the largest reviews,
/// thousands of ordinary ones); a body that cannot get its share within the read deadline is
/// answered with HTTP 503.
pub const BODY_BUDGET: usize = 4 * MAX_BODY;
/// Connections served at once; more wait in the listen backlog until one closes.
pub const MAX_CONNECTIONS: usize = 256;
/// A connection with no request in progress for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// The whole body must have arrived this long after the request started (the API server's own
/// time-out for a webhook call is 10 s by default, 30 s at most).
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The path the API server posts reviews to.
pub const VALIDATE_PATH: &str = "/validate";

const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How long a connection closed for idleness may take to say goodbye before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Why a request body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the AdmissionReview is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("the request body did not arrive within {0:?}")]
    Deadline(Duration),
    #[error("the webhook is reading too many request bodies at once; retry")]
    Busy,
    #[error("cannot read the request body")]
    Read(#[source] axum::Error),
}

impl BodyError {
    fn status(&self) -> StatusCode {
        match self {
            BodyError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::Deadline(_) => StatusCode::REQUEST_TIMEOUT,
            BodyError::Busy => StatusCode::SERVICE_UNAVAILABLE,
            BodyError::Read(_) => StatusCode::BAD_REQUEST,
        }
    }
}

/// The bytes of [`BODY_BUDGET`], in KiB permits.
#[derive(Clone)]
pub(crate) struct BodyBudget(Arc<Semaphore>);

impl BodyBudget {
    pub(crate) fn new(bytes: usize) -> BodyBudget {
        BodyBudget(Arc::new(Semaphore::new(bytes.div_ceil(1024))))
    }
}

/// Reads a body of at most `limit` bytes within `deadline`, holding its share of `budget` in the
/// returned permit. A body is refused as soon as it is known to be too large (by its
/// `Content-Length`, or once that many bytes arrived), without buffering the rest.
pub(crate) async fn read_body(
    body: Body,
    limit: usize,
    budget: &BodyBudget,
    deadline: Duration,
) -> Result<(Bytes, OwnedSemaphorePermit), BodyError> {
    use axum::body::HttpBody as _;
    if body.size_hint().lower() > limit as u64 {
        return Err(BodyError::TooLarge { limit });
    }
    let read = async {
        let mut permit = budget
            .0
            .clone()
            .acquire_many_owned(0)
            .await
            .map_err(|_| BodyError::Busy)?;
        let mut stream = body.into_data_stream();
        let mut buffer = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(BodyError::Read)?;
            if buffer.len() + chunk.len() > limit {
                return Err(BodyError::TooLarge { limit });
            }
            buffer.extend_from_slice(&chunk);
            let needed = buffer.len().div_ceil(1024) as u32;
            let held = permit.num_permits() as u32;
            if needed > held {
                let more = budget
                    .0
                    .clone()
                    .acquire_many_owned(needed - held)
                    .await
                    .map_err(|_| BodyError::Busy)?;
                permit.merge(more);
            }
        }
        Ok((Bytes::from(buffer), permit))
    };
    match tokio::time::timeout(deadline, read).await {
        Ok(result) => result,
        // a body still waiting for its share of the budget when time ran out: the server is busy
        Err(_) if budget.0.available_permits() == 0 => Err(BodyError::Busy),
        Err(_) => Err(BodyError::Deadline(deadline)),
    }
}

fn text(status: StatusCode, body: impl Into<String>) -> Response {
    let mut body = body.into();
    body.push('\n');
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

#[derive(Clone)]
struct ServerState {
    webhook: Arc<Webhook>,
    budget: BodyBudget,
}

/// The webhook's routes: `POST /validate`, and `GET /readyz` for convenience.
pub fn router(webhook: Arc<Webhook>) -> Router {
    router_with_budget(webhook, BodyBudget::new(BODY_BUDGET))
}

fn router_with_budget(webhook: Arc<Webhook>, budget: BodyBudget) -> Router {
    Router::new()
        .route(
            VALIDATE_PATH,
            post(validate).fallback(|| async {
                text(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "POST an admission.k8s.io/v1 AdmissionReview to /validate",
                )
            }),
        )
        .route("/readyz", get(readyz))
        .fallback(|uri: axum::http::Uri| async move {
            text(
                StatusCode::NOT_FOUND,
                format!("no such path {:?}; the webhook serves POST {VALIDATE_PATH}", uri.path()),
            )
        })
        .with_state(ServerState { webhook, budget })
}

async fn validate(State(state): State<ServerState>, body: Body) -> Response {
    // the permit keeps the body's share of the budget until the review is answered
    let (body, _permit) = match read_body(body, MAX_BODY, &state.budget, BODY_READ_TIMEOUT).await {
        Ok(read) => read,
        Err(error) => return text(error.status(), error.to_string()),
    };
    match state.webhook.review_body(&body).await {
        Ok(review) => match serde_json::to_vec(&review) {
            Ok(bytes) => ([(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
            Err(error) => text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot encode the AdmissionReview: {error}"),
            ),
        },
        Err(Rejection::BadRequest(message)) => text(StatusCode::BAD_REQUEST, message),
        Err(Rejection::NotReady(message)) => text(StatusCode::SERVICE_UNAVAILABLE, message),
    }
}

async fn readyz(State(state): State<ServerState>) -> Response {
    if state.webhook.is_ready() {
        text(StatusCode::OK, "ok")
    } else {
        text(StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}

/// Serves the webhook over HTTPS (HTTP/1.1 and HTTP/2, keep-alive) on `listener` until
/// `shutdown` completes, then lets open connections finish their requests (up to 5 s).
/// The certificate comes from `webhook.certs()` at each handshake.
pub async fn serve<F>(listener: TcpListener, webhook: Arc<Webhook>, shutdown: F) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send,
{
    let config = webhook
        .certs()
        .server_config()
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let builder = Arc::new(builder);
    let service = TowerToHyperService::new(router(webhook));
    let connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let (closing_tx, closing) = tokio::sync::watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = connections.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let (tcp, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // out of file descriptors and the like: back off instead of spinning
                    tracing::warn!(%error, "webhook cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let builder = builder.clone();
        let service = service.clone();
        let closing = closing.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let tls = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(error)) => {
                    tracing::debug!(%peer, %error, "webhook TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "webhook TLS handshake timed out");
                    return;
                }
            };
            serve_connection(&builder, tls, service, closing, peer).await;
        });
    }
    drop(listener);
    let _ = closing_tx.send(true);
    // every connection gives its permit back when it ends
    let all = u32::try_from(MAX_CONNECTIONS).unwrap_or(u32::MAX);
    if tokio::time::timeout(SHUTDOWN_GRACE + CLOSE_GRACE, connections.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!("webhook connections still open after the shutdown grace period");
    }
    Ok(())
}

/// When the last request of a connection ended, and how many are in progress.
#[derive(Default)]
struct Activity {
    in_progress: AtomicUsize,
    last_end: std::sync::Mutex<Option<Instant>>,
}

/// Counts a request in progress until dropped.
struct InProgress(Arc<Activity>);

impl InProgress {
    fn start(activity: &Arc<Activity>) -> InProgress {
        activity.in_progress.fetch_add(1, Ordering::SeqCst);
        InProgress(activity.clone())
    }
}

impl Drop for InProgress {
    fn drop(&mut self) {
        *self.0.last_end.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        self.0.in_progress.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Serves one connection until it ends, it has been idle for [`IDLE_TIMEOUT`], or the server
/// closes; the last two end it gracefully (GOAWAY, or `Connection: close`), bounded in time.
async fn serve_connection<I>(
    builder: &auto::Builder<TokioExecutor>,
    io: I,
    service: TowerToHyperService<Router>,
    mut closing: tokio::sync::watch::Receiver<bool>,
    peer: std::net::SocketAddr,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::default());
    let counted = {
        let activity = activity.clone();
        hyper::service::service_fn(move |request| {
            let in_progress = InProgress::start(&activity);
            let response = hyper::service::Service::call(&service, request);
            async move {
                let response = response.await;
                drop(in_progress);
                response
            }
        })
    };
    let connection = builder.serve_connection(TokioIo::new(io), counted);
    tokio::pin!(connection);
    let opened = Instant::now();
    let idle_since = || {
        let last = *activity.last_end.lock().unwrap_or_else(|p| p.into_inner());
        last.unwrap_or(opened)
    };
    let grace = loop {
        let deadline = idle_since() + IDLE_TIMEOUT;
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%peer, %error, "webhook connection ended with an error");
                }
                return;
            }
            _ = closing.wait_for(|c| *c) => break SHUTDOWN_GRACE,
            () = tokio::time::sleep_until(deadline.into()) => {
                if activity.in_progress.load(Ordering::SeqCst) == 0 && idle_since() + IDLE_TIMEOUT <= Instant::now() {
                    tracing::debug!(%peer, "closing an idle webhook connection");
                    break CLOSE_GRACE;
                }
                if activity.in_progress.load(Ordering::SeqCst) > 0 {
                    // a request in progress is bounded by its own deadlines; look again later
                    *activity.last_end.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
                }
            }
        }
    };
    connection.as_mut().graceful_shutdown();
    if tokio::time::timeout(grace, connection.as_mut()).await.is_err() {
        tracing::debug!(%peer, "dropping a webhook connection that did not close in time");
    }
}
