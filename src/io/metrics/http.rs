//! The `/metrics` endpoint: HTTP/1.1 on hyper, one request per connection, then close.
//!
//! hyper 1.x is already in the binary (etcd-client → tonic), so serving on it adds no crate and
//! leaves one HTTP stack in the tree instead of a second, hand-written one: request parsing is
//! the code every tonic channel already trusts. The server must still survive anything a port
//! scanner sends, so each limit of the old server is kept (docs/registry.md, section 5):
//!
//! - the request head is at most [`MAX_HEAD`] bytes, else hyper answers 431;
//! - the head arrives within [`Limits::header_read`] (5 s), else the connection is closed;
//! - a whole connection (head, answer, linger) ends within [`Limits::connection`] (15 s);
//! - one request per connection (`keep_alive(false)`), and the body is never read;
//! - [`MAX_CONNECTIONS`] are served at once: a permit is taken *before* `accept`, so the rest
//!   wait in the kernel's accept queue instead of costing a task each;
//! - bad method, target, header or version: hyper answers 400; [`route`] answers 404 and 405.
//!
//! HTTP/1 only: an HTTP/2 preface is closed without an answer. A head cut off by end of input
//! is closed without an answer too (the old server said 400): hyper counts it as a request
//! never made, not a bad one.
//!
//! Content negotiation: a scraper whose `Accept` names `application/openmetrics-text` (Prometheus
//! does) gets OpenMetrics; everyone else gets Prometheus text 0.0.4.

use super::{render_openmetrics, to_prometheus_text, MetricsError};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, ACCEPT, ALLOW, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::registry::Registry;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

/// Largest request head accepted; a scrape request is a few hundred bytes. Also hyper's read
/// buffer size (8192 is its minimum), so a connection never holds more than this unparsed.
const MAX_HEAD: usize = 8 * 1024;
/// After answering, how much unread input is drained, and for how long, before closing.
const LINGER_BYTES: usize = 256 * 1024;
const LINGER_TIME: Duration = Duration::from_secs(1);
/// Connections served at once; more wait in the kernel's accept queue.
const MAX_CONNECTIONS: usize = 16;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
const OPENMETRICS_TYPE: &[u8] = b"application/openmetrics-text";

/// The time limits of one connection; a value so tests can shorten them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// How long a client may take to send its request head.
    pub header_read: Duration,
    /// How long a whole connection may last: the head, writing the answer and the linger (the
    /// hand-written server allowed 5 s for the head, then 10 s for the rest).
    pub connection: Duration,
}

impl Limits {
    pub(crate) const DEFAULT: Limits = Limits {
        header_read: Duration::from_secs(5),
        connection: Duration::from_secs(15),
    };
}

/// A running metrics endpoint. Dropping it stops the server and closes the port.
#[derive(Debug)]
pub struct MetricsServer {
    local_addr: SocketAddr,
    task: JoinHandle<()>,
}

impl MetricsServer {
    /// The bound address (useful when the port was 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Binds `addr` and serves `registry` on it until the returned server is dropped.
pub async fn serve(addr: SocketAddr, registry: Registry) -> Result<MetricsServer, MetricsError> {
    serve_with(addr, registry, Limits::DEFAULT).await
}

/// [`serve`] with the given time limits.
pub(crate) async fn serve_with(
    addr: SocketAddr,
    registry: Registry,
    limits: Limits,
) -> Result<MetricsServer, MetricsError> {
    let bind_err = |source| MetricsError::Bind { addr, source };
    let listener = TcpListener::bind(addr).await.map_err(bind_err)?;
    let local_addr = listener.local_addr().map_err(bind_err)?;
    let task = tokio::spawn(accept_loop(listener, Arc::new(registry), limits));
    tracing::info!(%local_addr, "metrics on http://{local_addr}/metrics");
    Ok(MetricsServer { local_addr, task })
}

async fn accept_loop(listener: TcpListener, registry: Arc<Registry>, limits: Limits) {
    let mut http = http1::Builder::new();
    // Title case: the same bytes on the wire as the hand-written server, for whoever greps them.
    http.keep_alive(false)
        .title_case_headers(true)
        .max_header_size(MAX_HEAD)
        .max_buf_size(MAX_HEAD)
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning on the error.
                tracing::warn!(error = %e, "metrics accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (http, registry) = (http.clone(), registry.clone());
        tokio::spawn(async move {
            let served = handle(stream, &http, &registry);
            if tokio::time::timeout(limits.connection, served)
                .await
                .is_err()
            {
                tracing::debug!("metrics connection cut off after {:?}", limits.connection);
            }
            drop(permit);
        });
    }
}

/// Serves one request, then closes. hyper gets the socket only by reference: on a parse error
/// (400, 431) it returns an error instead of the socket, and the linger is needed then too.
async fn handle(mut stream: TcpStream, http: &http1::Builder, registry: &Registry) {
    let service = service_fn(|req| std::future::ready(Ok::<_, Infallible>(respond(req, registry))));
    if let Err(e) = http
        .serve_connection(TokioIo::new(&mut stream), service)
        .await
    {
        tracing::debug!(error = %e, "metrics connection ended with an error");
    }
    // hyper shuts the write side down after an answer, not when it gives up without one
    // (header timeout, a head cut off, an HTTP/2 preface).
    let _ = stream.shutdown().await;
    linger(&mut stream).await;
}

/// Reads and discards what the client still sends (bounded), so closing a socket with unread
/// input does not reset the connection before the client has read our answer.
async fn linger(stream: &mut TcpStream) {
    let mut chunk = [0u8; 4096];
    let mut left = LINGER_BYTES;
    let drain = async {
        while left > 0 {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    };
    let _ = tokio::time::timeout(LINGER_TIME, drain).await;
}

/// The answer to one request. The request, body unread, is dropped here.
fn respond(req: Request<Incoming>, registry: &Registry) -> Response<Full<Bytes>> {
    let accepts = req
        .headers()
        .get_all(ACCEPT)
        .iter()
        .map(HeaderValue::as_bytes);
    match route(req.method().as_str(), req.uri().path(), accepts) {
        // For HEAD, hyper sends the head with this body's Content-Length and leaves the body out.
        Route::Metrics { openmetrics } => {
            let om = render_openmetrics(registry);
            let (body, ctype) = if openmetrics {
                (om, OPENMETRICS)
            } else {
                (to_prometheus_text(&om), PROMETHEUS_TEXT)
            };
            answer(StatusCode::OK, ctype, body)
        }
        Route::NotFound => status(StatusCode::NOT_FOUND),
        Route::MethodNotAllowed => {
            let mut res = status(StatusCode::METHOD_NOT_ALLOWED);
            res.headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            res
        }
        Route::BadRequest => status(StatusCode::BAD_REQUEST),
    }
}

fn answer(code: StatusCode, ctype: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::from(body)));
    *res.status_mut() = code;
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(ctype));
    res
}

fn status(code: StatusCode) -> Response<Full<Bytes>> {
    let reason = code.canonical_reason().unwrap_or("");
    let body = format!("{} {reason}\n", code.as_u16());
    answer(code, "text/plain; charset=utf-8", body)
}

/// What a request asks for; pure, so every odd request can be tested without a socket.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Route {
    Metrics {
        openmetrics: bool,
    },
    NotFound,
    MethodNotAllowed,
    /// A target that is not a path (`GET metrics`, `OPTIONS *`): hyper lets these through.
    BadRequest,
}

/// Routes by method, the target's path (query already split off) and the `Accept` values.
pub(crate) fn route<'a>(
    method: &str,
    path: &str,
    accepts: impl IntoIterator<Item = &'a [u8]>,
) -> Route {
    if !path.starts_with('/') {
        return Route::BadRequest;
    }
    if path != "/metrics" {
        return Route::NotFound;
    }
    if method != "GET" && method != "HEAD" {
        return Route::MethodNotAllowed;
    }
    // Media types are case-insensitive; a substring is enough to tell Prometheus from curl.
    let openmetrics = accepts.into_iter().any(|v| {
        v.windows(OPENMETRICS_TYPE.len())
            .any(|w| w.eq_ignore_ascii_case(OPENMETRICS_TYPE))
    });
    Route::Metrics { openmetrics }
}
