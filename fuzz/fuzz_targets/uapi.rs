//! The `wg`-compatible UAPI socket. The input is what a client writes to the socket: it goes
//! through the server's own connection loop (line reading, limits, one reply per request), and
//! as text through the request parser and the reply parser `wiremesh status` uses. Nothing may
//! panic; a `set` that parses must format back to a request that parses to the same changes;
//! every reply the server writes ends with its `errno` line and the blank line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, UNIX_EPOCH};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use wiremesh::core::key::{PrivateKey, PublicKey};
use wiremesh::io::uapi::protocol::{self, Request};
use wiremesh::io::uapi::server::handle_connection;
use wiremesh::io::uapi::{UapiDevice, UapiPeer, UapiSet};
use wiremesh::testing::FakeUapi;

/// The shared fake handler with a fixed device that has every kind of field, so `get` replies
/// are worth parsing back; a `set` of port 1 fails as a port in use, of port 2 as invalid.
fn handler() -> Arc<FakeUapi> {
    let mut a = UapiPeer::new(PublicKey::from_bytes([1; 32]));
    a.preshared_key = Some([2; 32]);
    a.endpoint = Some("192.0.2.1:51820".parse().unwrap());
    a.last_handshake = Some(UNIX_EPOCH + Duration::new(1_700_000_000, 5));
    a.rx_bytes = 42;
    a.tx_bytes = 7;
    a.persistent_keepalive = Some(25);
    a.allowed_ips = vec![
        "10.244.1.0/24".parse().unwrap(),
        "fd10::/64".parse().unwrap(),
    ];
    let mut b = UapiPeer::new(PublicKey::from_bytes([3; 32]));
    b.endpoint = Some("[2001:db8::1]:51821".parse().unwrap());
    Arc::new(FakeUapi {
        refuse_port: Some(1),
        invalid_port: Some(2),
        ..FakeUapi::new(UapiDevice {
            private_key: Some(PrivateKey::from_bytes([4; 32])),
            listen_port: 51820,
            fwmark: Some(0x51820),
            peers: vec![a, b],
        })
    })
}

/// A connection whose client wrote `input` and then closed its side; replies are collected.
struct Conn<'a> {
    input: &'a [u8],
    output: Vec<u8>,
}

impl AsyncRead for Conn<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let n = buf.remaining().min(self.input.len());
        buf.put_slice(&self.input[..n]);
        self.input = &self.input[n..];
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Conn<'_> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.output.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

fn serve(input: &[u8]) -> Vec<u8> {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    let rt = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a current-thread runtime")
    });
    let mut conn = Conn {
        input,
        output: Vec::new(),
    };
    rt.block_on(handle_connection(&mut conn, handler()));
    conn.output
}

/// The server answers each request it reads with one reply, each ended by `errno=N` and a
/// blank line; it never writes anything else.
fn check_replies(output: &[u8]) {
    let text = std::str::from_utf8(output).expect("replies are text");
    if text.is_empty() {
        return;
    }
    assert!(
        text.ends_with("\n\n"),
        "a reply ends with a blank line: {text:?}"
    );
    for reply in text[..text.len() - 2].split("\n\n") {
        let status = reply.lines().last().unwrap_or("");
        assert!(
            protocol::parse_errno(status).is_some(),
            "a reply ends with its errno: {reply:?}"
        );
    }
}

fn check_set_round_trip(set: &UapiSet) {
    let text = protocol::format_set(set);
    let Ok(Request::Set(again)) = protocol::parse_request(&text) else {
        panic!("a formatted request parses: {text:?}");
    };
    assert_eq!(again.peers, set.peers);
    assert_eq!(again.listen_port, set.listen_port);
    assert_eq!(again.fwmark, set.fwmark);
    assert_eq!(again.replace_peers, set.replace_peers);
    assert_eq!(protocol::format_set(&again), text);
}

fn check_get_round_trip(dev: &UapiDevice) {
    let text = protocol::format_get(dev);
    let again = protocol::parse_get(&text).expect("a formatted reply parses");
    assert_eq!(again.peers, dev.peers);
    assert_eq!(again.listen_port, dev.listen_port);
    assert_eq!(protocol::format_get(&again), text);
}

fuzz_target!(|data: &[u8]| {
    check_replies(&serve(data));
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match protocol::parse_request(text) {
        Ok(Request::Set(set)) => check_set_round_trip(&set),
        Ok(Request::Get) => {}
        Err(e) => {
            let _ = (e.to_string(), e.errno());
        }
    }
    // the same text as a reply, the way `wiremesh status` reads one
    if let Ok(dev) = protocol::parse_get(text) {
        check_get_round_trip(&dev);
    }
    for line in text.lines() {
        let _ = protocol::parse_errno(line);
    }
});
