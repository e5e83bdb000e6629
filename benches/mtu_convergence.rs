//! Path-MTU discovery on a 16-node lab mesh (root only; `cargo bench --bench mtu_convergence`):
//! the time from every daemon being started to a confirmed MTU towards every peer, and the probe
//! traffic discovery costs per peer per minute once settled. Not a timed test: it prints figures
//! for the README's performance section.

#[path = "common/root.rs"]
mod root;
use std::fmt::Write as _;
use std::time::{Duration, Instant};
use wiremesh::io::control_socket::{self, ControlRequest, DaemonStatus};
use wiremesh::lab::{Lab, LabOptions};

const NODES: usize = 16;
const STEADY: Duration = Duration::from_secs(30);

fn topology() -> String {
    let mut t = String::from("mode = \"full\"\ncluster-cidr = \"10.244.0.0/16\"\n");
    let regions = ["r1", "r2", "r3", "r4"];
    for i in 0..NODES {
        let key = wiremesh::io::keyfile::generate().public_key();
        let _ = write!(
            t,
            "[[node]]\nname = \"n{i}\"\ncloud = \"c\"\nregion = \"{}\"\npublic-key = \"{key}\"\n",
            regions[i % 4]
        );
    }
    // four regions whose links differ, so discovery has real work on most pairs
    t.push_str("[[lab.link]]\nregions = [\"r1\", \"r2\"]\nmtu = 1400\n");
    t.push_str("[[lab.link]]\nregions = [\"r3\", \"r4\"]\nblack-hole-above = 1360\n");
    t.push_str("[[lab.link]]\nregions = [\"r1\", \"r3\"]\nmtu = 1460\n");
    t
}

fn statuses(lab: &Lab, rt: &tokio::runtime::Runtime) -> Vec<DaemonStatus> {
    lab.nodes()
        .iter()
        .filter_map(|n| {
            let path = control_socket::socket_path(lab.ifname(n).ok()?);
            rt.block_on(control_socket::request(&path, &ControlRequest::Status))
                .ok()?
                .status
        })
        .collect()
}

fn main() {
    if !root::may_run("MTU convergence") {
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mesh16.toml");
    std::fs::write(&path, topology()).unwrap();
    let prefix = format!("bm{}", std::process::id() % 100_000);
    let mut lab = Lab::build(
        &path,
        LabOptions::new(prefix, env!("CARGO_BIN_EXE_wiremesh")),
    )
    .unwrap();
    let start = Instant::now();
    lab.start_daemons().unwrap();
    // traffic between every pair brings the sessions up, as a real mesh's traffic would
    let _ = lab.ping_matrix(Duration::from_secs(5)).unwrap();
    let converged = loop {
        let s = statuses(&lab, &rt);
        let total: usize = s.iter().map(|d| d.peers.len()).sum();
        let done: usize = s
            .iter()
            .map(|d| d.peers.iter().filter(|p| p.discovered).count())
            .sum();
        if s.len() == NODES && done == total {
            break start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "not converged: {done}/{total}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    // steady state: one pair carries traffic (n0 → n1, paced), every other path is idle
    let probe_bytes = |lab: &Lab, node: &str, peer: &str| -> u64 {
        statuses(lab, &rt)
            .into_iter()
            .find(|d| d.node == node)
            .and_then(|d| d.peers.into_iter().find(|p| p.name == peer))
            .map_or(0, |p| p.probe_bytes)
    };
    let total = |lab: &Lab| -> u64 {
        statuses(lab, &rt)
            .iter()
            .flat_map(|d| &d.peers)
            .map(|p| p.probe_bytes)
            .sum()
    };
    // let the start-up traffic age out, so the window sees steady state only
    std::thread::sleep(wiremesh::engine::IDLE_AFTER + Duration::from_secs(2));
    let (all_before, active_before, back_before) = (
        total(&lab),
        probe_bytes(&lab, "n0", "n1"),
        probe_bytes(&lab, "n1", "n0"),
    );
    let to = lab.overlay_addrs("n1").unwrap()[0];
    let (from_ns, to_ns) = (
        lab.node_ns("n0").unwrap().to_string(),
        lab.node_ns("n1").unwrap().to_string(),
    );
    let secs = STEADY.as_secs();
    let t = std::thread::spawn(move || {
        wiremesh::lab::tcp_transfer_paced(
            &from_ns,
            &to_ns,
            to,
            5203,
            secs * 1024 * 1024,
            Some(1024 * 1024),
            Duration::from_secs(120),
        )
    });
    let _ = t.join().unwrap().unwrap();
    let active = probe_bytes(&lab, "n0", "n1") - active_before;
    // the receiver's path back to the sender carries TCP ACKs: active too
    let back = probe_bytes(&lab, "n1", "n0") - back_before;
    let idle_all = total(&lab) - all_before - active - back;
    let paths = statuses(&lab, &rt)
        .iter()
        .map(|d| d.peers.len())
        .sum::<usize>() as f64;
    let per_min = |bytes: f64| bytes * 60.0 / STEADY.as_secs_f64() / 1024.0;
    println!(
        "mtu_convergence: {NODES} nodes, {} directed peer paths",
        paths as usize
    );
    println!(
        "  every path confirmed {:.2} s after the daemons were started",
        converged.as_secs_f64()
    );
    println!(
        "  probe traffic, path carrying data: {:.1} KiB per minute (outer bytes)",
        per_min(active as f64)
    );
    println!(
        "  probe traffic, idle paths: {:.2} KiB per peer per minute",
        per_min(idle_all as f64 / (paths - 1.0))
    );
    drop(lab);
}
