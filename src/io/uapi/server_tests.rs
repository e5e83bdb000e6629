use super::*;
use crate::core::key::PublicKey;
use crate::io::uapi::{query, UapiDevice, UapiPeer, UapiPeerSet};
use crate::testing::FakeUapi;
use std::os::unix::fs::PermissionsExt;
use tokio::net::UnixStream;

/// A device on port 7 with one peer; a `set` of port 1 fails as a port in use, of port 2 as
/// invalid.
fn fake() -> Arc<FakeUapi> {
    let mut peer = UapiPeer::new(PublicKey::from_bytes([9; 32]));
    peer.rx_bytes = 42;
    Arc::new(FakeUapi {
        refuse_port: Some(1),
        invalid_port: Some(2),
        ..FakeUapi::new(UapiDevice {
            listen_port: 7,
            peers: vec![peer],
            ..Default::default()
        })
    })
}

/// Writes `request` and reads everything up to the reply's blank line.
async fn ask(stream: &mut UnixStream, request: &str) -> String {
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut rd = BufReader::new(stream);
    let mut out = String::new();
    loop {
        let mut line = String::new();
        if rd.read_line(&mut line).await.unwrap() == 0 || line == "\n" {
            return out;
        }
        out.push_str(&line);
    }
}

#[tokio::test]
async fn a_query_returns_the_handlers_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run/wm0.sock");
    let _server = serve(&path, fake()).await.unwrap();
    let dev = query(&path).await.unwrap();
    assert_eq!(dev.listen_port, 7);
    assert_eq!(dev.peers, fake().dev.peers);
}

#[tokio::test]
async fn one_connection_carries_several_requests_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wm0.sock");
    let handler = fake();
    let _server = serve(&path, handler.clone()).await.unwrap();
    let mut s = UnixStream::connect(&path).await.unwrap();
    let got = ask(&mut s, "get=1\n\n").await;
    assert!(
        got.starts_with("listen_port=7\npublic_key=") && got.ends_with("errno=0\n"),
        "{got}"
    );
    let pk = "09".repeat(32);
    assert_eq!(
        ask(&mut s, &format!("set=1\npublic_key={pk}\nremove=true\n\n")).await,
        "errno=0\n"
    );
    assert_eq!(
        ask(&mut s, "set=1\nlisten_port=1\n\n").await,
        format!("errno={}\n", -libc::EADDRINUSE)
    );
    assert_eq!(
        ask(&mut s, "set=1\nlisten_port=2\n\n").await,
        format!("errno={}\n", -libc::EINVAL)
    );
    assert_eq!(ask(&mut s, "get=1\n\n").await, got);
    let sets = handler.sets.lock().unwrap();
    let mut want = UapiPeerSet::new(PublicKey::from_bytes([9; 32]));
    want.remove = true;
    assert_eq!(sets.len(), 1);
    assert_eq!(sets[0].peers, vec![want]);
}

#[tokio::test]
async fn a_malformed_set_changes_nothing_and_the_connection_stays_usable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wm0.sock");
    let handler = fake();
    let _server = serve(&path, handler.clone()).await.unwrap();
    let mut s = UnixStream::connect(&path).await.unwrap();
    let reply = ask(&mut s, "set=1\nlisten_port=9\nallowed_ip=10.0.0.0/8\n\n").await;
    assert_eq!(reply, "errno=-22\n");
    assert!(handler.sets.lock().unwrap().is_empty());
    assert!(ask(&mut s, "get=1\n\n").await.ends_with("errno=0\n"));
}

#[tokio::test]
async fn garbage_gets_an_errno_reply_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wm0.sock");
    let _server = serve(&path, fake()).await.unwrap();
    for junk in ["hello\n", "\u{0}\u{ff}\n\n", "get=2\n", &"x".repeat(10_000)] {
        let mut s = UnixStream::connect(&path).await.unwrap();
        let reply = ask(&mut s, junk).await;
        assert!(reply.starts_with("errno=-"), "{junk:?} got {reply:?}");
    }
    let mut s = UnixStream::connect(&path).await.unwrap();
    s.write_all(b"set=1\nlisten_port=3\n").await.unwrap();
    drop(s); // a client that hangs up mid-request
    assert_eq!(query(&path).await.unwrap().listen_port, 7);
}

#[tokio::test]
async fn the_socket_is_private_and_removed_on_drop() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("wireguard");
    let path = sub.join("wm0.sock");
    let server = serve(&path, fake()).await.unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&sub), 0o755);
    assert_eq!(server.path(), path);
    drop(server);
    assert!(!path.exists());
    assert!(matches!(
        query(&path).await,
        Err(UapiError::NoSocket { .. })
    ));
}

#[tokio::test]
async fn a_stale_socket_is_replaced_but_a_live_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wm0.sock");
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists(), "a dead listener leaves its file behind");
    let first = serve(&path, fake()).await.unwrap();
    let err = serve(&path, fake()).await.unwrap_err();
    assert!(matches!(err, UapiError::InUse { .. }));
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
    assert_eq!(
        query(&path).await.unwrap().listen_port,
        7,
        "the refused server must not unlink the live one"
    );
    drop(first);
}

#[tokio::test]
async fn a_regular_file_in_the_way_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wm0.sock");
    std::fs::write(&path, "mine").unwrap();
    assert!(matches!(
        serve(&path, fake()).await,
        Err(UapiError::NotASocket { .. })
    ));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "mine");
}

#[tokio::test]
async fn a_missing_socket_asks_whether_the_daemon_is_running() {
    let dir = tempfile::tempdir().unwrap();
    let err = query(&dir.path().join("nope.sock")).await.unwrap_err();
    assert!(
        err.to_string()
            .starts_with("is the daemon running? no socket at "),
        "{err}"
    );
}
