//! Rendering from in-memory devices (real handshakes, no sockets), `promtool`, and the HTTP
//! endpoint over loopback.

use super::http::{route, Route};
use super::*;
use crate::core::plan::Plan;
use crate::core::topology::Topology;
use crate::engine::{Batch, Scratch};
use crate::testing::{cross_handshake, full_mesh, ipv4, promtool_check_metrics};
use std::path::Path;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Two devices, `hub-a.eu` and `b-1`, after one packet from a to b: b has a session with a,
/// has received one packet, and saw one garbage datagram.
fn two_devices() -> (Arc<Device>, Arc<Device>) {
    let mut mesh = full_mesh(&["hub-a.eu", "b-1"]).into_iter();
    let ((a, a_addr), (b, b_addr)) = (mesh.next().unwrap(), mesh.next().unwrap());
    let (a, b) = (Arc::new(a), Arc::new(b));
    // init → response → (queued packet) → b
    let ping = ipv4([10, 244, 1, 1], [10, 244, 2, 1], b"ping");
    cross_handshake((&a, a_addr), (&b, b_addr), &ping, 3);
    let mut scratch = Scratch::new();
    b.handle_datagram(
        std::time::Instant::now(),
        a_addr,
        b"garbage",
        &mut scratch,
        &mut Batch::new(),
    );
    (a, b)
}

fn sample<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    text.lines()
        .find(|l| l.starts_with(prefix))?
        .rsplit(' ')
        .next()
}

#[test]
fn a_scrape_reports_each_peers_counters_handshake_age_mtu_and_drops() {
    let (a, b) = two_devices();
    let text = render_openmetrics(&registry(b.clone()));
    let key = a.public_key().to_string();
    let peer = format!("{{peer=\"hub-a.eu\",public_key=\"{key}\"}}");
    assert_eq!(
        sample(&text, &format!("wiremesh_peer_rx_packets_total{peer}")),
        Some("1")
    );
    let rx_bytes = sample(&text, &format!("wiremesh_peer_rx_bytes_total{peer}")).unwrap();
    assert!(rx_bytes.parse::<u64>().unwrap() > 0, "{text}");
    let age: f64 = sample(
        &text,
        &format!("wiremesh_peer_last_handshake_age_seconds{peer}"),
    )
    .unwrap()
    .parse()
    .unwrap();
    assert!((0.0..5.0).contains(&age), "{age}");
    assert_eq!(
        sample(&text, &format!("wiremesh_peer_mtu_bytes{peer}")),
        Some("1440")
    );
    assert_eq!(
        sample(
            &text,
            &format!("wiremesh_peer_handshake_failures_total{peer}")
        ),
        Some("0")
    );
    assert_eq!(
        sample(
            &text,
            "wiremesh_dropped_packets_total{reason=\"decrypt_failure\"}"
        ),
        Some("1")
    );
    for reason in DropReason::ALL {
        assert!(text.contains(&format!("reason=\"{}\"", reason.label())));
    }
    assert_eq!(sample(&text, "wiremesh_forwarded_packets_total"), Some("0"));
    assert_eq!(sample(&text, "wiremesh_key_rotations_total"), Some("0"));
    assert!(text.contains("wiremesh_build_info{version=\""));
    assert!(text.ends_with("# EOF\n"));
}

#[test]
fn a_peer_without_a_handshake_has_no_age_sample_but_every_other_series() {
    let (a, _) = two_devices();
    let text = render_openmetrics(&registry(a));
    // a initiated and completed: it has an age. A fresh device has none.
    assert!(text.contains("wiremesh_peer_last_handshake_age_seconds{"));
    let keys = [
        crate::io::keyfile::generate(),
        crate::io::keyfile::generate(),
    ];
    let topo = format!(
        "mode = \"full\"\ncluster-cidr = \"10.244.0.0/16\"\n[[node]]\nname = \"x\"\ncloud = \"c\"\nregion = \"r\"\npublic-key = \"{}\"\n[[node]]\nname = \"y\"\ncloud = \"c\"\nregion = \"r\"\npublic-key = \"{}\"\n",
        keys[0].public_key(),
        keys[1].public_key()
    );
    let topo = Topology::parse(&topo, Path::new("t.toml")).unwrap();
    let fresh = Arc::new(Device::new(
        keys[0].clone(),
        &Plan::compute(&topo, "x").unwrap(),
        std::time::Instant::now(),
    ));
    let text = render_openmetrics(&registry(fresh));
    assert!(
        !text.contains("wiremesh_peer_last_handshake_age_seconds{"),
        "{text}"
    );
    assert!(text.contains("# TYPE wiremesh_peer_last_handshake_age_seconds gauge"));
    assert!(text.contains("wiremesh_peer_tx_bytes_total{peer=\"y\""));
}

#[test]
fn the_mtu_and_rotation_hooks_replace_the_plan_values() {
    #[derive(Debug)]
    struct Discovered;
    impl MetricHooks for Discovered {
        fn peer_mtu(&self, _: &Device, _: &PeerSnapshot) -> u16 {
            1380
        }
        fn rotations(&self, _: &Device) -> u64 {
            2
        }
    }
    let (_, b) = two_devices();
    let mut reg = Registry::default();
    reg.register_collector(Box::new(DeviceCollector::new(b, Arc::new(Discovered))));
    let text = render_openmetrics(&reg);
    assert!(text.contains(" 1380\n") && text.contains("wiremesh_key_rotations_total 2\n"));
}

/// promtool lints the 0.0.4 text (its parser predates OpenMetrics). Skipped only where it is
/// not installed and this is not CI; CI installs it through scripts/install-deps.
#[test]
fn promtool_accepts_the_prometheus_text() {
    let (_, b) = two_devices();
    let text = to_prometheus_text(&render_openmetrics(&registry(b)));
    let Some(out) = promtool_check_metrics(&text) else {
        return;
    };
    let said =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool: {said}\n{text}"
    );
}

#[test]
fn requests_are_routed_by_method_path_and_accept_header() {
    let metrics = |openmetrics, head_only| Route::Metrics {
        openmetrics,
        head_only,
    };
    let cases: &[(&[u8], Route)] = &[
        (b"GET /metrics HTTP/1.1\r\nHost: x", metrics(false, false)),
        (b"GET /metrics?x=1 HTTP/1.0", metrics(false, false)),
        (b"HEAD /metrics HTTP/1.1", metrics(false, true)),
        (
            b"GET /metrics HTTP/1.1\r\naccept: application/openmetrics-text;version=1.0.0",
            metrics(true, false),
        ),
        (b"GET / HTTP/1.1", Route::NotFound),
        (b"GET /metricsx HTTP/1.1", Route::NotFound),
        (b"POST /metrics HTTP/1.1", Route::MethodNotAllowed),
        (b"GET /metrics", Route::BadRequest),
        (b"GET metrics HTTP/1.1", Route::BadRequest),
        (b"GET /metrics SPDY/3", Route::BadRequest),
        (b"", Route::BadRequest),
        (b"\xff\xfe GET", Route::BadRequest),
    ];
    for (head, want) in cases {
        assert_eq!(&route(head), want, "{}", String::from_utf8_lossy(head));
    }
}

async fn exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    // The server may answer and close before a long request is fully written.
    let _ = s.write_all(request).await;
    let _ = s.shutdown().await;
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply).await;
    String::from_utf8_lossy(&reply).into_owned()
}

#[tokio::test]
async fn the_endpoint_answers_scrapes_unknown_paths_and_garbage_over_loopback() {
    let (_, b) = two_devices();
    let server = serve("127.0.0.1:0".parse().unwrap(), registry(b))
        .await
        .unwrap();
    let addr = server.local_addr();

    let plain = exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(plain.starts_with("HTTP/1.1 200 OK\r\n"), "{plain}");
    assert!(plain.contains("Content-Type: text/plain; version=0.0.4"));
    assert!(plain.contains("# TYPE wiremesh_peer_rx_bytes_total counter"));
    let (head, body) = plain.split_once("\r\n\r\n").unwrap();
    assert!(head.contains(&format!("Content-Length: {}", body.len())));

    let om = exchange(
        addr,
        b"GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text\r\n\r\n",
    )
    .await;
    assert!(
        om.contains("Content-Type: application/openmetrics-text; version=1.0.0")
            && om.ends_with("# EOF\n")
    );

    assert!(exchange(addr, b"GET /nope HTTP/1.1\r\n\r\n")
        .await
        .starts_with("HTTP/1.1 404 "));
    assert!(exchange(addr, b"\x16\x03\x01\x00\xa5\x01\n\n")
        .await
        .starts_with("HTTP/1.1 400 "));
    assert!(exchange(addr, b"GET /metrics HTTP/1.1\r\n")
        .await
        .starts_with("HTTP/1.1 400 "));
    let huge = vec![b'A'; 64 * 1024];
    assert!(exchange(addr, &huge).await.starts_with("HTTP/1.1 431 "));

    // Still serving after all of that.
    let again = exchange(addr, b"GET /metrics HTTP/1.0\n\n").await;
    assert!(again.starts_with("HTTP/1.1 200 OK\r\n"), "{again}");
}

#[tokio::test]
async fn dropping_the_server_closes_the_port() {
    let (_, b) = two_devices();
    let server = serve("127.0.0.1:0".parse().unwrap(), registry(b))
        .await
        .unwrap();
    let addr = server.local_addr();
    drop(server);
    tokio::task::yield_now().await;
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
