//! The client end of the UAPI socket, for `wiremesh status` and tests: what `wg show` and
//! `wg set` do, returning typed values instead of printing.

use super::protocol::{self, ProtocolError, ProtocolErrorKind};
use super::{UapiDevice, UapiError, UapiSet};
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

/// How long a daemon may take to answer before the CLI gives up on it.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// Asks the daemon behind `path` for its device and peers (`get=1`).
pub async fn query(path: &Path) -> Result<UapiDevice, UapiError> {
    let body = exchange(path, "get=1\n\n").await?;
    protocol::parse_get(&body).map_err(|source| UapiError::Reply {
        path: path.to_path_buf(),
        source,
    })
}

/// Sends a `set=1` request and waits for the daemon to accept it.
pub async fn configure(path: &Path, set: &UapiSet) -> Result<(), UapiError> {
    exchange(path, &protocol::format_set(set)).await.map(drop)
}

/// Sends one request and returns the reply body without its `errno=0` line.
async fn exchange(path: &Path, request: &str) -> Result<String, UapiError> {
    let io_err = |source| UapiError::Io {
        path: path.to_path_buf(),
        source,
    };
    let timed_out = || io_err(std::io::ErrorKind::TimedOut.into());
    let mut stream = match UnixStream::connect(path).await {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Err(UapiError::NoSocket {
                path: path.to_path_buf(),
            });
        }
        Err(e) => return Err(io_err(e)),
    };
    stream.write_all(request.as_bytes()).await.map_err(io_err)?;
    let reply = tokio::time::timeout(REPLY_TIMEOUT, read_reply(&mut stream))
        .await
        .map_err(|_| timed_out())?
        .map_err(io_err)?;
    let reply_err = |line, kind| UapiError::Reply {
        path: path.to_path_buf(),
        source: ProtocolError { line, kind },
    };
    let Some(lines) = reply else {
        return Err(reply_err(1, ProtocolErrorKind::Truncated));
    };
    let (body, status) = match lines.trim_end_matches('\n').rsplit_once('\n') {
        Some((body, status)) => (format!("{body}\n"), status.to_string()),
        None => (String::new(), lines.trim_end_matches('\n').to_string()),
    };
    match protocol::parse_errno(&status) {
        Some(0) => Ok(body),
        Some(errno) => Err(UapiError::Refused {
            path: path.to_path_buf(),
            errno,
        }),
        None => Err(reply_err(
            lines.lines().count(),
            ProtocolErrorKind::NoEquals(status),
        )),
    }
}

/// Reads lines up to the blank line that ends a reply; `None` if the stream ends first.
async fn read_reply(stream: &mut UnixStream) -> std::io::Result<Option<String>> {
    let mut rd = BufReader::new(stream);
    let mut text = String::new();
    loop {
        let mut line = String::new();
        if rd.read_line(&mut line).await? == 0 || !line.ends_with('\n') {
            return Ok(None);
        }
        if line == "\n" {
            return Ok(Some(text));
        }
        text.push_str(&line);
    }
}
