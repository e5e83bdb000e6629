//! Metrics from a running lab node: scraped over the node's own loopback after a transfer,
//! accepted by `promtool check metrics`, with non-zero traffic counters for the peer.
//! (Its own test binary: it sets `WIREMESH_METRICS_LISTEN` for every daemon it starts.)

mod common;

use common::{require_root, running_lab};
use wiremesh::testing::promtool_check_metrics;

/// Every lab namespace has its own loopback, so all daemons can listen on the same address.
const LISTEN: &str = "127.0.0.1:9586";

fn sample(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[test]
fn a_running_nodes_metrics_pass_promtool_and_count_a_transfer() {
    if !require_root() {
        return;
    }
    std::env::set_var("WIREMESH_METRICS_LISTEN", LISTEN);
    let lab = running_lab("three-regions.toml");
    let b = lab.overlay_addrs("b").unwrap()[0];
    let t = lab.transfer("a", "b", b, 8 * 1024 * 1024).unwrap();
    assert!(t.intact());
    let response = common::scrape_metrics(lab.node_ns("a").unwrap(), LISTEN);
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let tx = sample(body, "wiremesh_peer_tx_bytes_total{peer=\"b\"").unwrap();
    let rx = sample(body, "wiremesh_peer_rx_bytes_total{peer=\"b\"").unwrap();
    println!("a → b: tx {tx} bytes, rx {rx} bytes");
    assert!(tx >= 8.0 * 1024.0 * 1024.0, "tx {tx}");
    assert!(rx > 0.0);
    assert!(sample(body, "wiremesh_peer_mtu_bytes{peer=\"b\"").is_some());

    let Some(out) = promtool_check_metrics(body) else {
        return;
    };
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
