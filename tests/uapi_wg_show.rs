//! The stock `wg` tool (wireguard-tools) against our UAPI server: the proof that `wg show` and
//! `wg set` work on a wiremesh interface exactly as on wireguard-go.
//!
//! `wg` only looks in /var/run/wireguard, so these tests need root. Without root they print
//! "skipped: this test needs root" and pass, except under CI=true where they must run.

mod common;

use common::{require_root, wiremesh};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};
use wiremesh::core::key::{PrivateKey, PublicKey};
use wiremesh::io::uapi::{self, UapiDevice, UapiPeer, UapiPeerSet};
use wiremesh::testing::FakeUapi;

/// The handshake the first peer reports, fixed so that `wg show dump` output is exact.
const HANDSHAKE_SECS: u64 = 1_700_000_000;

/// Removes the socket even when an assertion fails first (the server's own Drop covers the
/// normal path; this covers a panic before the server value exists or after it moved).
struct SocketGuard(PathBuf);

impl Drop for SocketGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn two_peers() -> Arc<FakeUapi> {
    let mut a = UapiPeer::new(PublicKey::from_bytes([0xa1; 32]));
    a.preshared_key = Some([0x55; 32]);
    a.endpoint = Some("192.0.2.1:51820".parse().unwrap());
    a.last_handshake = Some(UNIX_EPOCH + Duration::new(HANDSHAKE_SECS, 5));
    a.rx_bytes = 1_234_567;
    a.tx_bytes = 3_072;
    a.persistent_keepalive = Some(25);
    a.allowed_ips = vec![
        "10.0.1.0/24".parse().unwrap(),
        "fd00:1::/64".parse().unwrap(),
    ];
    let mut b = UapiPeer::new(PublicKey::from_bytes([0xb2; 32]));
    b.endpoint = Some("[2001:db8::2]:443".parse().unwrap());
    b.allowed_ips = vec!["10.0.2.0/24".parse().unwrap()];
    let dev = UapiDevice {
        private_key: Some(PrivateKey::from_bytes([0x11; 32])),
        listen_port: 51820,
        fwmark: Some(0x57),
        peers: vec![a, b],
    };
    Arc::new(FakeUapi::new(dev))
}

/// An interface name no other test or daemon uses, within IFNAMSIZ.
fn ifname(suffix: &str) -> String {
    format!("wmt{}{suffix}", std::process::id())
}

async fn wg(args: &[&str]) -> String {
    let out = tokio::process::Command::new("wg")
        .args(args)
        .output()
        .await
        .expect("run wg");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "wg {args:?} failed: {}{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

async fn start(ifname: &str, handler: Arc<FakeUapi>) -> (uapi::UapiServer, SocketGuard) {
    let path = uapi::socket_path(ifname);
    let guard = SocketGuard(path.clone());
    let server = uapi::serve(&path, handler).await.expect("serve");
    (server, guard)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wg_show_prints_the_peers_our_handler_reports() {
    if !require_root() {
        return;
    }
    let name = ifname("s");
    let handler = two_peers();
    let (server, _guard) = start(&name, handler.clone()).await;
    let b64 = |p: &UapiPeer| p.public_key.to_string();
    let [a, b] = [&handler.dev.peers[0], &handler.dev.peers[1]];

    let show = wg(&["show", &name]).await;
    println!("$ wg show {name}\n{show}");
    let own = handler.dev.private_key.as_ref().unwrap();
    for want in [
        format!("interface: {name}"),
        format!("public key: {}", own.public_key()),
        "listening port: 51820".into(),
        "fwmark: 0x57".into(),
        format!("peer: {}", b64(a)),
        "endpoint: 192.0.2.1:51820".into(),
        "allowed ips: 10.0.1.0/24, fd00:1::/64".into(),
        "transfer: 1.18 MiB received, 3.00 KiB sent".into(),
        "persistent keepalive: every 25 seconds".into(),
        format!("peer: {}", b64(b)),
        "endpoint: [2001:db8::2]:443".into(),
        "allowed ips: 10.0.2.0/24".into(),
    ] {
        assert!(show.contains(&want), "`wg show` lacks {want:?}");
    }

    let dump = wg(&["show", &name, "dump"]).await;
    println!("$ wg show {name} dump\n{dump}");
    let psk = PublicKey::from_bytes([0x55; 32]).to_string();
    let lines: Vec<&str> = dump.lines().collect();
    assert_eq!(lines.len(), 3, "{dump}");
    assert_eq!(
        lines[0],
        format!("{}\t{}\t51820\t0x57", own.to_base64(), own.public_key())
    );
    let peer_a = format!(
        "{}\t{psk}\t192.0.2.1:51820\t10.0.1.0/24,fd00:1::/64\t{HANDSHAKE_SECS}\t1234567\t3072\t25",
        b64(a)
    );
    let peer_b = format!(
        "{}\t(none)\t[2001:db8::2]:443\t10.0.2.0/24\t0\t0\t0\toff",
        b64(b)
    );
    assert!(lines.contains(&peer_a.as_str()), "{dump}");
    assert!(lines.contains(&peer_b.as_str()), "{dump}");

    let path = server.path().to_path_buf();
    drop(server);
    assert!(!path.exists(), "the socket must go with the server");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wg_set_reaches_the_handler_as_a_typed_request() {
    if !require_root() {
        return;
    }
    let name = ifname("w");
    let handler = two_peers();
    let (_server, _guard) = start(&name, handler.clone()).await;
    let key = PublicKey::from_bytes([0xc3; 32]);
    let key_b64 = key.to_string();
    wg(&[
        "set",
        &name,
        "peer",
        &key_b64,
        "endpoint",
        "1.2.3.4:5",
        "allowed-ips",
        "10.0.0.0/24",
    ])
    .await;

    let sets = handler.sets.lock().unwrap();
    assert_eq!(sets.len(), 1);
    let set = &sets[0];
    assert!(set.private_key.is_none() && set.listen_port.is_none() && set.fwmark.is_none());
    assert!(!set.replace_peers);
    let mut want = UapiPeerSet::new(key);
    want.endpoint = Some(SocketAddr::from(([1, 2, 3, 4], 5)));
    want.replace_allowed_ips = true;
    want.allowed_ips = vec!["10.0.0.0/24".parse().unwrap()];
    assert_eq!(set.peers, vec![want]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_client_reads_back_what_wg_would_show() {
    if !require_root() {
        return;
    }
    let name = ifname("q");
    let handler = two_peers();
    let (server, _guard) = start(&name, handler.clone()).await;
    let dev = uapi::query(server.path()).await.unwrap();
    assert_eq!(dev.peers, handler.dev.peers);
    assert_eq!(dev.listen_port, 51820);
    assert_eq!(dev.fwmark, Some(0x57));
    assert_eq!(server.path(), uapi::socket_path(&name));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wiremesh_status_shows_the_same_peers_as_wg() {
    if !require_root() {
        return;
    }
    let name = ifname("c");
    let handler = two_peers();
    let (_server, _guard) = start(&name, handler.clone()).await;
    let out = tokio::task::spawn_blocking({
        let name = name.clone();
        move || {
            (
                wiremesh(&["status", "--interface", &name]),
                wiremesh(&["status", "-i", &name, "--json"]),
            )
        }
    })
    .await
    .unwrap();
    let (table, json) = (
        String::from_utf8_lossy(&out.0.stdout),
        String::from_utf8_lossy(&out.1.stdout),
    );
    println!("$ wiremesh status --interface {name}\n{table}");
    assert!(out.0.status.success() && out.1.status.success());
    let a = &handler.dev.peers[0];
    for want in [
        a.public_key.short().as_str(),
        "192.0.2.1:51820",
        "1.2 MiB",
        "3.0 KiB",
        "10.0.1.0/24, fd00:1::/64",
        "never",
    ] {
        assert!(table.contains(want), "status lacks {want:?}");
    }
    let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(parsed[0]["interface"], name.as_str());
    assert_eq!(
        parsed[0]["peers"][0]["public_key"],
        a.public_key.to_string()
    );
    assert_eq!(parsed[0]["peers"][0]["latest_handshake"], HANDSHAKE_SECS);
    assert_eq!(parsed[0]["peers"][1]["endpoint"], "[2001:db8::2]:443");
}

#[test]
fn wiremesh_status_without_a_daemon_fails_with_a_clear_message() {
    let out = wiremesh(&["status", "--interface", &ifname("none")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("is the daemon running? no socket at /var/run/wireguard/wmt"),
        "{stderr}"
    );
}
