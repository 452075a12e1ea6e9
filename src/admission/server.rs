//! The webhook's HTTPS server: TLS from the [`CertStore`](super::CertStore), then the same HTTP
//! stack as the health server (an axum `Router`), HTTP/1.1 and HTTP/2.

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
use std::time::Duration;
use tokio::net::TcpListener;

/// The largest review body accepted (two objects of at most ~1.5 MiB each, plus the envelope).
pub const MAX_BODY: usize = 8 * 1024 * 1024;
/// The path the API server posts reviews to.
pub const VALIDATE_PATH: &str = "/validate";

const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Why a request body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the AdmissionReview is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("cannot read the request body: {0}")]
    Read(#[source] axum::Error),
}

impl BodyError {
    fn status(&self) -> StatusCode {
        match self {
            BodyError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::Read(_) => StatusCode::BAD_REQUEST,
        }
    }
}

/// Reads a body of at most `limit` bytes; a larger one is refused as soon as it is known to be
/// larger (by its `Content-Length`, or once that many bytes arrived), without buffering the rest.
async fn read_body(body: Body, limit: usize) -> Result<Bytes, BodyError> {
    use axum::body::HttpBody as _;
    if body.size_hint().lower() > limit as u64 {
        return Err(BodyError::TooLarge { limit });
    }
    let mut stream = body.into_data_stream();
    let mut buffer = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(BodyError::Read)?;
        if buffer.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge { limit });
        }
        buffer.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(buffer))
}

fn text(status: StatusCode, body: impl Into<String>) -> Response {
    let mut body = body.into();
    body.push('\n');
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

/// The webhook's routes: `POST /validate`, and `GET /readyz` for convenience.
pub fn router(webhook: Arc<Webhook>) -> Router {
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
        .with_state(webhook)
}

async fn validate(State(webhook): State<Arc<Webhook>>, body: Body) -> Response {
    let body = match read_body(body, MAX_BODY).await {
        Ok(body) => body,
        Err(error) => return text(error.status(), error.to_string()),
    };
    match webhook.review_body(&body) {
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

async fn readyz(State(webhook): State<Arc<Webhook>>) -> Response {
    if webhook.is_ready() {
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
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let builder = Arc::new(builder);
    let service = TowerToHyperService::new(router(webhook));
    tokio::pin!(shutdown);
    loop {
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
        let watcher = graceful.watcher();
        tokio::spawn(async move {
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
            let connection = builder.serve_connection(TokioIo::new(tls), service);
            if let Err(error) = watcher.watch(connection.into_owned()).await {
                tracing::debug!(%peer, %error, "webhook connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await.is_err() {
        tracing::warn!("webhook connections still open after the shutdown grace period");
    }
    Ok(())
}
