//! The HTTPS server: TLS termination, HTTP/1.1 and HTTP/2, injected failures, routing to the
//! resource handlers, and the request record.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::SystemTime;

use axum::body::Body;
use axum::http::{HeaderMap, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::watch as signal;
use tokio_rustls::TlsAcceptor;

use super::admission::AdmissionConfig;
use super::error::ApiError;
use super::faults::Faults;
use super::handlers::{self, Req};
use super::http::{Query, Route, error_response, parse_route, target_of};
use super::record::{RecordedRequest, Recorder};
use super::store::Store;

/// The largest request body read (the benchmark's Secrets are 50 KiB).
const MAX_BODY: usize = 16 * 1024 * 1024;

/// Shared state of the server.
pub struct Ctx {
    pub store: Arc<Store>,
    pub faults: Faults,
    pub recorder: Recorder,
    pub admission: AdmissionConfig,
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
    let content_type = headers.content_type.clone();
    let accept = headers.accept.clone();
    let body = match axum::body::to_bytes(Body::new(req.into_body()), MAX_BODY).await {
        Ok(b) => b.to_vec(),
        Err(_) => {
            let resp = error_response(&ApiError::new(
                413,
                "RequestEntityTooLarge",
                "the request body is too large or could not be read",
            ));
            return record(
                ctx,
                time,
                &method,
                &path,
                &raw_query,
                headers,
                Vec::new(),
                None,
                resp,
                false,
            )
            .await;
        }
    };
    let query = Query::parse(&raw_query);
    let route = parse_route(&path, &ctx.store.lock().registry);
    let target = match &route {
        Route::Resource(rp) => Some(target_of(&method, rp, &query)),
        _ => None,
    };
    let is_watch = target.as_ref().is_some_and(|t| t.verb == "watch");

    let resp = if let Some(err) = ctx.faults.take_failure(&method, &path, target.as_ref()) {
        error_response(&err)
    } else if let Route::Resource(rp) = &route {
        handlers::handle(
            ctx,
            Req {
                method: &method,
                path: rp,
                query: &query,
                content_type: content_type.as_deref(),
                accept: accept.as_deref(),
                body: &body,
            },
        )
        .await
    } else {
        not_found_page()
    };
    record(
        ctx, time, &method, &path, &raw_query, headers, body, target, resp, is_watch,
    )
    .await
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

#[allow(clippy::too_many_arguments)]
async fn record(
    ctx: &Ctx,
    time: SystemTime,
    method: &str,
    path: &str,
    query: &str,
    headers: Headers,
    body: Vec<u8>,
    target: Option<super::record::Target>,
    resp: Response<Body>,
    streaming: bool,
) -> Response<Body> {
    let status = resp.status().as_u16();
    // Buffer non-streaming responses so the record holds their bodies too.
    let (resp, response_body) = if streaming || !ctx.recorder.keeps_bodies() {
        (resp, Vec::new())
    } else {
        let (parts, b) = resp.into_parts();
        let bytes = axum::body::to_bytes(b, usize::MAX).await.unwrap_or_default();
        (Response::from_parts(parts, Body::from(bytes.clone())), bytes.to_vec())
    };
    ctx.recorder.push(RecordedRequest {
        method: method.to_owned(),
        path: path.to_owned(),
        query: query.to_owned(),
        content_type: headers.content_type,
        accept: headers.accept,
        user_agent: headers.user_agent,
        user: None,
        body,
        status,
        response_body,
        time,
        target,
    });
    resp
}
