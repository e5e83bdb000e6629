//! The UAPI socket: owns `<dir>/<ifname>.sock` for the daemon's lifetime and answers each
//! connection's requests in order, as wireguard-go's `IpcHandle` does.
//!
//! A request is read whole (up to its blank line) before anything is applied, so a malformed
//! `set` changes nothing and gets `errno=-22`; a line that is not an operation gets an errno
//! reply and the connection is closed, since there is no way to find the next request in it.
//! Either way the accept loop carries on.

use super::protocol::{self, ProtocolError, ProtocolErrorKind, Request};
use super::{UapiError, UapiHandler};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
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
    path: PathBuf,
    /// (device, inode) of the bound socket, so Drop never removes a successor's socket.
    identity: (u64, u64),
    task: JoinHandle<()>,
}

impl UapiServer {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for UapiServer {
    fn drop(&mut self) {
        self.task.abort();
        if let Ok(meta) = std::fs::symlink_metadata(&self.path) {
            if (meta.dev(), meta.ino()) == self.identity {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> UapiError + '_ {
    move |source| UapiError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Binds the UAPI socket at `path` (mode 0600, directory 0755 created if missing) and serves
/// `handler` on it until the returned [`UapiServer`] is dropped. A leftover socket from a dead
/// daemon is replaced; one that still answers is not, so two daemons never share an interface.
pub async fn serve(path: &Path, handler: Arc<dyn UapiHandler>) -> Result<UapiServer, UapiError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .map_err(io_err(dir))?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_socket() => {
            return Err(UapiError::NotASocket {
                path: path.to_path_buf(),
            });
        }
        Ok(_) => {
            if tokio::net::UnixStream::connect(path).await.is_ok() {
                return Err(UapiError::InUse {
                    path: path.to_path_buf(),
                });
            }
            std::fs::remove_file(path).map_err(io_err(path))?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(path)(e)),
    }
    let listener = UnixListener::bind(path).map_err(io_err(path))?;
    // chmod after bind: the default umask already denies others write (connect) permission,
    // and changing the process-wide umask would race with other threads creating files.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io_err(path))?;
    let meta = std::fs::symlink_metadata(path).map_err(io_err(path))?;
    let task = tokio::spawn(accept_loop(listener, handler));
    Ok(UapiServer {
        path: path.to_path_buf(),
        identity: (meta.dev(), meta.ino()),
        task,
    })
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
