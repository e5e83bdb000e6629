//! Rendering from in-memory devices (real handshakes, no sockets), `promtool`, and the HTTP
//! endpoint over loopback.

use super::http::{route, serve_with, Limits, Route};
use super::*;
use crate::core::plan::Plan;
use crate::core::topology::Topology;
use crate::engine::{Batch, Scratch};
use crate::testing::{cross_handshake, full_mesh, ipv4, promtool_check_metrics};
use std::path::Path;
use std::time::{Duration, Instant};
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
    let metrics = |openmetrics| Route::Metrics { openmetrics };
    let om: &[u8] = b"application/openmetrics-text;version=1.0.0";
    let cases: &[(&str, &str, &[&[u8]], Route)] = &[
        ("GET", "/metrics", &[], metrics(false)),
        ("HEAD", "/metrics", &[], metrics(false)),
        ("GET", "/metrics", &[b"text/plain"], metrics(false)),
        ("GET", "/metrics", &[om], metrics(true)),
        ("HEAD", "/metrics", &[b"text/plain", om], metrics(true)),
        (
            "GET",
            "/metrics",
            &[b"Application/OpenMetrics-Text"],
            metrics(true),
        ),
        ("GET", "/", &[], Route::NotFound),
        ("GET", "/metricsx", &[], Route::NotFound),
        ("POST", "/nope", &[], Route::NotFound),
        ("POST", "/metrics", &[], Route::MethodNotAllowed),
        ("get", "/metrics", &[], Route::MethodNotAllowed),
        ("GET", "", &[], Route::BadRequest),
        ("OPTIONS", "*", &[], Route::BadRequest),
    ];
    for (method, path, accepts, want) in cases {
        let got = route(method, path, accepts.iter().copied());
        assert_eq!(&got, want, "{method} {path:?} {accepts:?}");
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

    // One request per connection: a second one sent behind the first is not answered.
    let twice = exchange(
        addr,
        b"GET /metrics HTTP/1.1\r\n\r\nGET /metrics HTTP/1.1\r\n\r\n",
    )
    .await;
    assert_eq!(twice.matches("HTTP/1.1 200 OK").count(), 1);
    assert!(twice.contains("\r\nConnection: close\r\n"), "{twice}");

    let head = exchange(addr, b"HEAD /metrics HTTP/1.1\r\n\r\n").await;
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.contains("Content-Length: ") && head.ends_with("\r\n\r\n"),
        "{head}"
    );

    let query = exchange(addr, b"GET /metrics?x=1 HTTP/1.1\r\n\r\n").await;
    assert!(query.starts_with("HTTP/1.1 200 OK\r\n"), "{query}");
    assert!(exchange(addr, b"GET /nope HTTP/1.1\r\n\r\n")
        .await
        .starts_with("HTTP/1.1 404 "));
    let post = exchange(
        addr,
        b"POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
    )
    .await;
    assert!(post.starts_with("HTTP/1.1 405 "), "{post}");
    assert!(post.contains("Allow: GET, HEAD\r\n"), "{post}");
    // hyper's 400s: garbage (a TLS hello), no version, a foreign version, a bad method byte;
    // route()'s 400: a target that is not a path.
    for garbage in [
        &b"\x16\x03\x01\x00\xa5\x01\n\n"[..],
        b"GET /metrics\r\n\r\n",
        b"GET /metrics SPDY/3\r\n\r\n",
        b"\xff\xfe GET /metrics HTTP/1.1\r\n\r\n",
        b"GET metrics HTTP/1.1\r\n\r\n",
    ] {
        let reply = exchange(addr, garbage).await;
        let shown = String::from_utf8_lossy(garbage);
        assert!(reply.starts_with("HTTP/1.1 400 "), "{shown:?}: {reply}");
    }
    // A head cut off by end of input is closed without an answer: hyper (unlike the
    // hand-written server, which said 400) does not answer a request it never got.
    assert_eq!(exchange(addr, b"GET /metrics HTTP/1.1\r\n").await, "");
    // No HTTP/2 on this port: its preface is closed without an answer.
    assert_eq!(
        exchange(addr, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await,
        ""
    );
    let huge = vec![b'A'; 64 * 1024];
    assert!(exchange(addr, &huge).await.starts_with("HTTP/1.1 431 "));

    // Still serving after all of that. hyper answers an HTTP/1.0 request in HTTP/1.0 (the
    // hand-written server said HTTP/1.1 to everyone).
    let again = exchange(addr, b"GET /metrics HTTP/1.0\n\n").await;
    assert!(again.starts_with("HTTP/1.0 200 OK\r\n"), "{again}");
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

#[tokio::test]
async fn a_client_that_stops_halfway_through_its_head_is_closed_after_the_header_timeout() {
    let (_, b) = two_devices();
    let limits = Limits {
        header_read: Duration::from_millis(300),
        ..Limits::DEFAULT
    };
    let server = serve_with("127.0.0.1:0".parse().unwrap(), registry(b), limits)
        .await
        .unwrap();
    let mut s = tokio::net::TcpStream::connect(server.local_addr())
        .await
        .unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nAcc")
        .await
        .unwrap();
    let started = Instant::now();
    let mut reply = Vec::new();
    // The client keeps its side open: only the server's timeout can end this read.
    let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut reply)).await;
    let waited = started.elapsed();
    assert!(read.expect("still open after 5 s").is_ok());
    assert!(reply.is_empty(), "{}", String::from_utf8_lossy(&reply));
    // Not closed for another reason before the timeout (the timer starts at accept, a moment
    // before `started`).
    assert!(waited >= Duration::from_millis(200), "{waited:?}");
}

#[tokio::test]
async fn a_17th_connection_is_not_served_until_one_of_the_first_16_ends() {
    let (_, b) = two_devices();
    let server = serve("127.0.0.1:0".parse().unwrap(), registry(b))
        .await
        .unwrap();
    let addr = server.local_addr();
    // 16 clients send half a head and wait (well inside the 5 s header timeout). Connections
    // are accepted in the order they were made, so these hold the 16 slots.
    let mut held = Vec::new();
    for _ in 0..16 {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\n").await.unwrap();
        held.push(s);
    }
    let mut late = tokio::net::TcpStream::connect(addr).await.unwrap();
    late.write_all(b"GET /metrics HTTP/1.1\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 1];
    let early = tokio::time::timeout(Duration::from_millis(500), late.read(&mut first)).await;
    assert!(early.is_err(), "the 17th was answered while 16 were served");

    // The 16th is being served: finishing its head gets it an answer, and ends it.
    let mut last = held.pop().unwrap();
    last.write_all(b"\r\n").await.unwrap();
    let mut reply = Vec::new();
    last.read_to_end(&mut reply).await.unwrap();
    assert!(reply.starts_with(b"HTTP/1.1 200 OK\r\n"));
    drop(last); // its linger ends at once, and its slot is free

    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(3), late.read_to_end(&mut reply))
        .await
        .expect("the 17th is served once a slot is free")
        .unwrap();
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
    drop(held);
}

#[test]
fn a_scrape_reports_each_policy_rules_hits_the_policy_drops_and_the_connection_table() {
    let mut mesh = full_mesh(&["a", "b"]).into_iter();
    let ((a, a_addr), (b, b_addr)) = (mesh.next().unwrap(), mesh.next().unwrap());
    let (a, b) = (Arc::new(a), Arc::new(b));
    let text = "mode = \"full\"\ncluster-cidr = \"10.244.0.0/16\"\n\
        [[node]]\nname = \"a\"\ncloud = \"c\"\nregion = \"r\"\npod-cidr = \"10.244.1.0/24\"\n\
        public-key = \"ph4KbGWaf9ahUeIZ2be2oGpo2ocu3uP7q6RH179u1i4=\"\n\
        [[node]]\nname = \"b\"\ncloud = \"c\"\nregion = \"r\"\npod-cidr = \"10.244.2.0/24\"\n\
        public-key = \"XKeuRMj+IxqPUMIYJ36ZzkIiiVJansHzYD7GSYaWu/o=\"\n\
        [[policy]]\nname = \"no-pings-from-a\"\norder = 1\naction = \"deny\"\n\
        from = { name = \"a\" }\nprotocol = \"icmp\"\n";
    let doc = Topology::parse_with_policy(text, Path::new("mesh.toml")).unwrap();
    b.set_policy(Arc::new(crate::core::policy::compile(&doc, None).unwrap()));
    // the handshake completes; the ping it carried is denied at b
    let ping = crate::core::policy::testing::ping([10, 244, 1, 1], [10, 244, 2, 1], 7);
    cross_handshake((&a, a_addr), (&b, b_addr), &ping, 3);
    let text = render_openmetrics(&registry(b.clone()));
    assert_eq!(
        sample(
            &text,
            "wiremesh_policy_rule_hits_total{policy=\"no-pings-from-a\",action=\"deny\"}"
        ),
        Some("1"),
        "{text}"
    );
    assert_eq!(
        sample(&text, "wiremesh_dropped_packets_total{reason=\"policy\"}"),
        Some("1")
    );
    assert_eq!(sample(&text, "wiremesh_policy_generation"), Some("1"));
    assert_eq!(
        sample(&text, "wiremesh_conntrack_capacity"),
        Some(crate::constants::CONNTRACK_CAPACITY.to_string().as_str())
    );
    assert_eq!(
        sample(&text, "wiremesh_policy_events_total{event=\"overflow\"}"),
        Some("0")
    );
    if let Some(out) = promtool_check_metrics(&to_prometheus_text(&text)) {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}
