//! The Ansible role against lab hosts reached over SSH (see `common/ssh_bed.rs` for the bed):
//! `site.yml` deploys a four-host, two-region mesh that passes `wiremesh check` everywhere, a
//! second run changes nothing, and a fifth host joins with a reload of the others, never a
//! restart. Every host gets the CNI conflist and plugin (`wiremesh cni install`).

mod common;
#[path = "common/ssh_bed.rs"]
mod ssh_bed;

use common::{check_args, exe, new_lab, require_root, text, wait_for};
use ssh_bed::SshBed;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;
use wiremesh::lab::Lab;

const FIRST: [&str; 4] = ["eu-a", "eu-b", "us-a", "us-b"];
const FIFTH: &str = "eu-c";

fn ansible_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("ansible")
}

/// The PLAY RECAP lines and the sum of their `changed=` counts; panics on failed/unreachable.
fn recap(out: &Output) -> (String, u32) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let recap: String = stdout
        .split_once("PLAY RECAP")
        .map(|(_, r)| format!("PLAY RECAP{r}"))
        .unwrap_or_else(|| panic!("no PLAY RECAP: {}", text(out)));
    let field = |line: &str, name: &str| -> u32 {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let mut changed = 0;
    for line in recap.lines().filter(|l| l.contains(" : ok=")) {
        assert_eq!(field(line, "failed"), 0, "{recap}");
        assert_eq!(field(line, "unreachable"), 0, "{recap}");
        changed += field(line, "changed");
    }
    (recap, changed)
}

/// `wiremesh check` in `node`'s namespace against the topology Ansible wrote on that host;
/// retried for a few seconds, since a freshly reloaded peer may still be handshaking.
fn check(lab: &Lab, bed: &SshBed, node: &str) -> String {
    let h = bed.host(node);
    let args = check_args(&h.dir.join("etc/mesh.toml"), node, &h.ifname);
    wait_for(
        Duration::from_secs(20),
        Duration::from_secs(1),
        &format!("passing check from {node}"),
        || {
            let out = lab.exec(node, &args).unwrap();
            if out.status.success() {
                Ok(String::from_utf8_lossy(&out.stdout).into_owned())
            } else {
                Err(text(&out))
            }
        },
    )
}

/// Stripped copies of the binary and, beside it, the CNI plugin, for Ansible to install:
/// smaller to copy, and immune to another build replacing the shared target's files between two
/// runs (which would look like a change). Returns the binary's copy.
fn binary_copy(bed: &SshBed) -> PathBuf {
    let plugin = PathBuf::from(env!("CARGO_BIN_EXE_wiremesh-cni"));
    for src in [exe(), plugin] {
        let dst = bed.root().join(src.file_name().unwrap());
        let out = Command::new("strip")
            .arg("-o")
            .arg(&dst)
            .arg(&src)
            .output()
            .unwrap();
        if !out.status.success() {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
    bed.root().join("wiremesh")
}

/// Where the role puts the CNI files on the lab hosts: under the per-host bind mounts, never
/// the machine's own /etc/cni and /opt/cni.
const CNI_CONF_DIR: &str = "/etc/wiremesh/cni/net.d";
const CNI_BIN_DIR: &str = "/usr/local/bin/cni";

/// The conflist and the plugin `wiremesh cni install` left on `node`, seen from outside its
/// mount namespace (the bed's per-host directories).
fn assert_cni_installed(bed: &SshBed, node: &str) {
    let h = bed.host(node);
    let conflist = h.dir.join("etc/cni/net.d/10-wiremesh.conflist");
    let text = std::fs::read_to_string(&conflist)
        .unwrap_or_else(|e| panic!("{node}: {}: {e}", conflist.display()));
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["cniVersion"], "1.0.0", "{node}: {text}");
    assert_eq!(v["plugins"][0]["type"], "wiremesh-cni", "{node}: {text}");
    assert_eq!(
        v["plugins"][0]["subnetFile"],
        format!("/run/wiremesh/{}/subnet.json", h.ifname),
        "{node}: {text}"
    );
    assert_eq!(v["plugins"][1]["type"], "portmap", "{node}: {text}");
    let plugin = h.dir.join("bin/cni/wiremesh-cni");
    assert!(plugin.is_file(), "{node}: no {}", plugin.display());
}

fn inventory(lab: &Lab, bed: &SshBed, binary: &Path, nodes: &[&str]) -> PathBuf {
    let vars = serde_json::json!({
        "wiremesh_binary_src": binary.display().to_string(),
        // The lab hosts have no systemd; never touch the real machine's systemd either.
        "wiremesh_service_manager": "pidfile",
        "wiremesh_log_file": "/run/wiremesh/wiremesh.log",
        "wiremesh_mode": "full",
        "wiremesh_region_mtu": { "us-east": 1460 },
        "wiremesh_cni_conf_dir": CNI_CONF_DIR,
        "wiremesh_cni_bin_dir": CNI_BIN_DIR,
    });
    let topo = lab.topology().unwrap();
    bed.write_inventory(nodes, vars, |h| {
        let node = topo.node(&h.node).unwrap();
        serde_json::json!({
            "wiremesh_cloud": node.cloud,
            "wiremesh_region": node.region,
            "wiremesh_hub": h.node.ends_with("-a"),
            "wiremesh_endpoint": format!("{}:51820", h.addr),
            "wiremesh_interface": h.ifname,
        })
    })
}

#[test]
fn site_yml_deploys_a_mesh_over_ssh_is_idempotent_and_adds_a_host_with_a_reload_only() {
    if !require_root() {
        return;
    }
    let lab = new_lab("ansible-two-regions.toml");
    // Declared after the lab, so it is dropped first: daemons and sshds go before namespaces.
    let mut bed = SshBed::new();
    for node in FIRST {
        bed.add_host(&lab, node);
    }
    let binary = binary_copy(&bed);
    let site = ansible_dir().join("site.yml");

    let inv = inventory(&lab, &bed, &binary, &FIRST);
    let first = bed.playbook(&lab, &site, &inv);
    assert!(first.status.success(), "first run: {}", text(&first));
    let (recap1, changed1) = recap(&first);
    println!("first run:\n{recap1}");
    assert!(changed1 > 0);
    for node in FIRST {
        let table = check(&lab, &bed, node);
        println!("{table}");
        assert_eq!(table.matches(" ok").count(), 3, "{table}");
        assert_cni_installed(&bed, node);
    }

    let second = bed.playbook(&lab, &site, &inv);
    assert!(second.status.success(), "second run: {}", text(&second));
    let (recap2, changed2) = recap(&second);
    println!("second run:\n{recap2}");
    assert_eq!(
        changed2,
        0,
        "an unchanged re-run changed something:\n{}",
        text(&second)
    );

    let pids: Vec<u32> = FIRST.iter().map(|n| bed.daemon_pid(n).unwrap()).collect();
    bed.add_host(&lab, FIFTH);
    let mut five = FIRST.to_vec();
    five.push(FIFTH);
    let inv = inventory(&lab, &bed, &binary, &five);
    let third = bed.playbook(&lab, &site, &inv);
    assert!(third.status.success(), "third run: {}", text(&third));
    let (recap3, _) = recap(&third);
    println!("third run (fifth host added):\n{recap3}");
    let after: Vec<u32> = FIRST.iter().map(|n| bed.daemon_pid(n).unwrap()).collect();
    assert_eq!(pids, after, "adding a host restarted a daemon");
    let stdout = String::from_utf8_lossy(&third.stdout);
    assert!(
        stdout.contains("Reload wiremesh through its pid file"),
        "{stdout}"
    );

    for node in [FIFTH, "us-b"] {
        let table = check(&lab, &bed, node);
        println!("{table}");
        assert_eq!(table.matches(" ok").count(), 4, "{table}");
    }
    assert_cni_installed(&bed, FIFTH);
}
