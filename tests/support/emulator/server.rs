//! The HTTPS server: TLS termination, HTTP/1.1 and HTTP/2, routing to the resource handlers,
//! and the request record.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use axum::body::Body;
use axum::http::{HeaderMap, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::watch as signal;
use tokio_rustls::TlsAcceptor;

use super::error::ApiError;
use super::handlers::{self, Req};
use super::http::{Query, Route, error_response, parse_route, target_of};
use super::record::RecordedRequest;
use super::store::Store;

/// The largest request body read (the benchmark's Secrets are 50 KiB).
const MAX_BODY: usize = 16 * 1024 * 1024;

/// Shared state of the server.
pub struct Ctx {
    pub store: Arc<Store>,
    pub recorder: Recorder,
}

/// The request record, without bodies (the benchmark sends 10,000s of requests; it counts
/// them by target, status and time).
#[derive(Default)]
pub struct Recorder {
    requests: Mutex<Vec<RecordedRequest>>,
}

impl Recorder {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<RecordedRequest>> {
        self.requests.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, request: RecordedRequest) {
        self.lock().push(request);
    }

    /// Every request answered so far, oldest first.
    pub fn all(&self) -> Vec<RecordedRequest> {
        self.lock().clone()
    }

    /// How many records from index `from` on satisfy `pred`, and how many records there are:
    /// for counting as the record grows without going over it all again (`from` = the
    /// previous length; the record only grows).
    pub fn count_since(&self, from: usize, pred: impl Fn(&RecordedRequest) -> bool) -> (usize, usize) {
        let all = self.lock();
        let matching = all.get(from..).map_or(0, |new| new.iter().filter(|r| pred(r)).count());
        (matching, all.len())
    }
}

/// Accepts connections until `shutdown` flips; each connection ends with it too.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    ctx: Arc<Ctx>,
    shutdown: signal::Receiver<bool>,
) {
    let acceptor = TlsAcceptor::from(tls);
    loop {
        let mut stop = shutdown.clone();
        let (tcp, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(_) => continue, // e.g. too many open files: keep serving the others
            },
            _ = stop.changed() => return,
        };
        let acceptor = acceptor.clone();
        let ctx = ctx.clone();
        let mut stop = shutdown.clone();
        tokio::spawn(async move {
            let Ok(tls_stream) = acceptor.accept(tcp).await else {
                return;
            };
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let ctx = ctx.clone();
                async move { Ok::<_, Infallible>(handle(&ctx, req).await) }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection(TokioIo::new(tls_stream), svc);
            tokio::select! {
                _ = conn => {}
                _ = stop.changed() => {}
            }
        });
    }
}

fn header_str(h: &HeaderMap, name: header::HeaderName) -> Option<String> {
    h.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// What the server and the record need of a request's headers (rather than a copy of them).
struct Headers {
    content_type: Option<String>,
    accept: Option<String>,
    user_agent: Option<String>,
}

impl Headers {
    fn of(h: &HeaderMap) -> Self {
        Self {
            content_type: header_str(h, header::CONTENT_TYPE),
            accept: header_str(h, header::ACCEPT),
            user_agent: header_str(h, header::USER_AGENT),
        }
    }
}

async fn handle(ctx: &Ctx, req: Request<Incoming>) -> Response<Body> {
    let time = SystemTime::now();
    let method = req.method().as_str().to_owned();
    let path = req.uri().path().to_owned();
    let raw_query = req.uri().query().unwrap_or("").to_owned();
    let headers = Headers::of(req.headers());
    let (resp, target) = match axum::body::to_bytes(Body::new(req.into_body()), MAX_BODY).await {
        Ok(body) => {
            let query = Query::parse(&raw_query);
            let route = parse_route(&path, &ctx.store.lock().registry);
            match &route {
                Route::Resource(rp) => {
                    let req = Req {
                        method: &method,
                        path: rp,
                        query: &query,
                        content_type: headers.content_type.as_deref(),
                        accept: headers.accept.as_deref(),
                        body: &body,
                    };
                    (handlers::handle(ctx, req), Some(target_of(&method, rp, &query)))
                }
                Route::Unknown => (not_found_page(), None),
            }
        }
        Err(_) => (
            error_response(&ApiError::new(
                413,
                "RequestEntityTooLarge",
                "the request body is too large or could not be read",
            )),
            None,
        ),
    };
    ctx.recorder.push(RecordedRequest {
        method,
        path,
        query: raw_query,
        content_type: headers.content_type,
        accept: headers.accept,
        user_agent: headers.user_agent,
        user: None,
        body: Vec::new(),
        status: resp.status().as_u16(),
        response_body: Vec::new(),
        time,
        target,
    });
    resp
}

/// What the apiserver's mux answers for paths it does not serve at all.
pub fn not_found_page() -> Response<Body> {
    let mut r = Response::new(Body::from("404 page not found\n"));
    *r.status_mut() = StatusCode::NOT_FOUND;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}
