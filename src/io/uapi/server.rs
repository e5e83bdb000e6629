//! The UAPI socket: owns `<dir>/<ifname>.sock` for the daemon's lifetime and answers each
//! connection's requests in order, as wireguard-go's `IpcHandle` does.
//!
//! A request is read whole (up to its blank line) before anything is applied, so a malformed
//! `set` changes nothing and gets `errno=-22`; a line that is not an operation gets an errno
//! reply and the connection is closed, since there is no way to find the next request in it.
//! Either way the accept loop carries on.

use super::protocol::{self, ProtocolError, ProtocolErrorKind, Request};
use super::{UapiError, UapiHandler};
use crate::io::private_socket::{self, PrivateSocket};
use std::path::Path;
use std::sync::Arc;
use tokio::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader,
};
use tokio::net::UnixListener;
use tokio::task::{JoinHandle, JoinSet};

/// Longest line accepted: a key line is under 80 bytes, so this only stops a runaway client.
const MAX_LINE: u64 = 4096;

/// Most lines in one request: generous for a `setconf` of a large mesh, bounded so a client
/// cannot make the daemon buffer without end.
const MAX_LINES: usize = 1 << 20;

/// A running UAPI server. Dropping it stops the accept loop and every connection, and removes
/// the socket file if it is still the one this server bound.
#[derive(Debug)]
pub struct UapiServer {
    socket: PrivateSocket,
    task: JoinHandle<()>,
}

impl UapiServer {
    pub fn path(&self) -> &Path {
        self.socket.path()
    }
}

impl Drop for UapiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Binds the UAPI socket at `path` (mode 0600, directory 0755 created if missing) and serves
/// `handler` on it until the returned [`UapiServer`] is dropped. A leftover socket from a dead
/// daemon is replaced; one that still answers is not, so two daemons never share an interface.
pub async fn serve(path: &Path, handler: Arc<dyn UapiHandler>) -> Result<UapiServer, UapiError> {
    let (listener, socket) = private_socket::bind(path).await?;
    let task = tokio::spawn(accept_loop(listener, handler));
    Ok(UapiServer { socket, task })
}

async fn accept_loop(listener: UnixListener, handler: Arc<dyn UapiHandler>) {
    // Connections live in this set, so aborting this task drops (and aborts) all of them.
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    conns.spawn(handle_connection(stream, Arc::clone(&handler)));
                }
                Err(e) => {
                    tracing::warn!("uapi: accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            },
            Some(_) = conns.join_next() => {}
        }
    }
}

/// Answers requests on one connection until the client closes it or sends garbage.
pub async fn handle_connection<S>(stream: S, handler: Arc<dyn UapiHandler>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (rd, mut wr) = tokio::io::split(stream);
    let mut rd = BufReader::new(rd);
    loop {
        let (reply, keep_open) = match read_request(&mut rd).await {
            Ok(None) => return,
            Ok(Some(text)) => (answer(&text, handler.as_ref()), true),
            Err(e) => {
                tracing::debug!("uapi: refusing request: {e}");
                (format!("errno={}\n\n", e.errno()), false)
            }
        };
        if wr.write_all(reply.as_bytes()).await.is_err() || wr.flush().await.is_err() || !keep_open
        {
            return;
        }
    }
}

fn answer(text: &str, handler: &dyn UapiHandler) -> String {
    let result = protocol::parse_request(text)
        .map_err(UapiError::from)
        .and_then(|req| match req {
            Request::Get => Ok(protocol::format_get(&handler.get())),
            Request::Set(set) => handler.set(set).map(|()| String::new()),
        });
    match result {
        Ok(body) => format!("{body}errno=0\n\n"),
        Err(e) => {
            tracing::debug!("uapi: request failed: {e}");
            format!("errno={}\n\n", e.errno())
        }
    }
}

/// Reads one request up to its blank line. `Ok(None)` is a clean close between requests; an
/// error means the stream cannot be trusted to hold another request.
async fn read_request<R: AsyncBufRead + Unpin>(
    rd: &mut R,
) -> Result<Option<String>, ProtocolError> {
    let mut text = String::new();
    for n in 1..=MAX_LINES {
        let Some(line) = read_line(rd, n).await? else {
            return if n == 1 {
                Ok(None)
            } else {
                Err(ProtocolError {
                    line: n,
                    kind: ProtocolErrorKind::Truncated,
                })
            };
        };
        if n == 1 && line != "get=1" && line != "set=1" {
            return Err(ProtocolError {
                line: 1,
                kind: ProtocolErrorKind::UnknownOperation(line),
            });
        }
        if line.is_empty() {
            return Ok(Some(text));
        }
        text.push_str(&line);
        text.push('\n');
    }
    Err(ProtocolError {
        line: MAX_LINES,
        kind: ProtocolErrorKind::TooLong,
    })
}

/// One line without its newline; `None` at end of stream.
async fn read_line<R: AsyncBufRead + Unpin>(
    rd: &mut R,
    n: usize,
) -> Result<Option<String>, ProtocolError> {
    let mut buf = Vec::new();
    let got = (&mut *rd).take(MAX_LINE).read_until(b'\n', &mut buf).await;
    let fail = |kind| ProtocolError { line: n, kind };
    match got {
        Ok(0) => Ok(None),
        Ok(_) if buf.last() != Some(&b'\n') => Err(fail(if buf.len() as u64 >= MAX_LINE {
            ProtocolErrorKind::TooLong
        } else {
            ProtocolErrorKind::Truncated
        })),
        Ok(_) => {
            buf.pop();
            String::from_utf8(buf).map(Some).map_err(|e| {
                fail(ProtocolErrorKind::NoEquals(
                    String::from_utf8_lossy(e.as_bytes()).into(),
                ))
            })
        }
        Err(_) => Err(fail(ProtocolErrorKind::Truncated)),
    }
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;
