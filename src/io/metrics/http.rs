//! A minimal HTTP/1.1 server for `GET /metrics`: one request per connection, then close.
//!
//! A scrape endpoint needs one route, so a small hand-rolled server beats pulling in an HTTP
//! stack. It is written to survive anything a port scanner sends: the request head is bounded
//! in size and time, every parse failure is an answer (400, 404, 405, 431) rather than a panic,
//! and the number of connections served at once is capped.
//!
//! Content negotiation: a scraper whose `Accept` names `application/openmetrics-text` (Prometheus
//! does) gets OpenMetrics; everyone else gets Prometheus text 0.0.4.

use super::{render_openmetrics, to_prometheus_text, MetricsError};
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

/// Largest request head accepted; a scrape request is a few hundred bytes.
const MAX_HEAD: usize = 8 * 1024;
/// How long a client may take to send its request head.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long writing the answer may take before the connection is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// After answering, how much unread input is drained, and for how long, before closing.
const LINGER_BYTES: usize = 256 * 1024;
const LINGER_TIME: Duration = Duration::from_secs(1);
/// Connections served at once; more wait in the kernel's accept queue.
const MAX_CONNECTIONS: usize = 16;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

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
    let bind_err = |source| MetricsError::Bind { addr, source };
    let listener = TcpListener::bind(addr).await.map_err(bind_err)?;
    let local_addr = listener.local_addr().map_err(bind_err)?;
    let registry = Arc::new(registry);
    let task = tokio::spawn(accept_loop(listener, registry));
    tracing::info!(%local_addr, "metrics on http://{local_addr}/metrics");
    Ok(MetricsServer { local_addr, task })
}

async fn accept_loop(listener: TcpListener, registry: Arc<Registry>) {
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
        let registry = registry.clone();
        tokio::spawn(async move {
            if let Err(e) = handle(stream, &registry).await {
                tracing::debug!(error = %e, "metrics connection ended with an error");
            }
            drop(permit);
        });
    }
}

async fn handle(mut stream: TcpStream, registry: &Registry) -> std::io::Result<()> {
    let head = match tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream)).await {
        Ok(head) => head?,
        Err(_) => return Ok(()),
    };
    let reply = match head {
        Head::Complete(bytes) => answer(&bytes, registry),
        Head::TooLarge => status(431, "Request Header Fields Too Large"),
        Head::Truncated => status(400, "Bad Request"),
    };
    tokio::time::timeout(WRITE_TIMEOUT, async {
        stream.write_all(&reply).await?;
        stream.shutdown().await?;
        linger(&mut stream).await
    })
    .await
    .unwrap_or(Ok(()))
}

/// Reads and discards what the client still sends (bounded), so closing a socket with unread
/// input does not reset the connection before the client has read our answer.
async fn linger(stream: &mut TcpStream) -> std::io::Result<()> {
    let mut chunk = [0u8; 4096];
    let mut left = LINGER_BYTES;
    let drain = async {
        while left > 0 {
            match stream.read(&mut chunk).await? {
                0 => break,
                n => left = left.saturating_sub(n),
            }
        }
        Ok(())
    };
    tokio::time::timeout(LINGER_TIME, drain)
        .await
        .unwrap_or(Ok(()))
}

enum Head {
    Complete(Vec<u8>),
    TooLarge,
    Truncated,
}

/// Reads up to the blank line that ends the request head.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Head> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(Head::Truncated);
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = head_end(&buf) {
            buf.truncate(end);
            return Ok(Head::Complete(buf));
        }
        if buf.len() > MAX_HEAD {
            return Ok(Head::TooLarge);
        }
    }
}

fn head_end(buf: &[u8]) -> Option<usize> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n");
    let lf = buf.windows(2).position(|w| w == b"\n\n");
    crlf.into_iter().chain(lf).min()
}

/// What a request head asks for; pure, so every odd request can be tested without a socket.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Route {
    Metrics { openmetrics: bool, head_only: bool },
    NotFound,
    MethodNotAllowed,
    BadRequest,
}

pub(crate) fn route(head: &[u8]) -> Route {
    let Ok(text) = std::str::from_utf8(head) else {
        return Route::BadRequest;
    };
    let mut lines = text.lines();
    let mut parts = lines.next().unwrap_or("").split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Route::BadRequest;
    };
    if !version.starts_with("HTTP/1.") || !target.starts_with('/') {
        return Route::BadRequest;
    }
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    if path != "/metrics" {
        return Route::NotFound;
    }
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return Route::MethodNotAllowed,
    };
    let openmetrics = lines.any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("accept") && v.contains("application/openmetrics-text")
        })
    });
    Route::Metrics {
        openmetrics,
        head_only,
    }
}

fn answer(head: &[u8], registry: &Registry) -> Vec<u8> {
    match route(head) {
        Route::Metrics {
            openmetrics,
            head_only,
        } => {
            let om = render_openmetrics(registry);
            let (body, ctype) = if openmetrics {
                (om, OPENMETRICS)
            } else {
                (to_prometheus_text(&om), PROMETHEUS_TEXT)
            };
            let mut out = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )
            .into_bytes();
            if !head_only {
                out.extend_from_slice(body.as_bytes());
            }
            out
        }
        Route::NotFound => status(404, "Not Found"),
        Route::MethodNotAllowed => status(405, "Method Not Allowed"),
        Route::BadRequest => status(400, "Bad Request"),
    }
}

fn status(code: u16, reason: &str) -> Vec<u8> {
    let body = format!("{code} {reason}\n");
    let allow = if code == 405 {
        "Allow: GET, HEAD\r\n"
    } else {
        ""
    };
    format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n{allow}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}
