//! The `wiremesh` binary end to end on topology files: the shipped examples plan for every node,
//! errors reach stderr with the file name, `--format wg` output has the structure `wg setconf`
//! reads, `ipam --write` pins without losing comments, and `ipam --json` (what the Ansible role
//! asks) gives the library's own assignment.

mod common;

use common::{text, wiremesh, wiremesh_with_stdin};
use ipnet::IpNet;
use std::path::{Path, PathBuf};
use wiremesh::core::key::PublicKey;
use wiremesh::core::plan::Plan;
use wiremesh::core::topology::{Endpoint, Topology};

fn examples() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("topologies");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_example_topology_loads_and_plans_for_every_node() {
    let files = examples();
    assert!(files.len() >= 3, "{files:?}");
    for file in files {
        let topo = Topology::load(&file).unwrap_or_else(|e| panic!("{e}"));
        for node in &topo.nodes {
            let plan = Plan::compute(&topo, &node.name).unwrap();
            assert!(
                !plan.peers.is_empty(),
                "{}: {} has no peers",
                file.display(),
                node.name
            );
            check_wg_config(
                &plan.to_wg_config(None),
                &format!("{} {}", file.display(), node.name),
            );
        }
    }
}

/// Checks what `wg setconf` would check, without an interface to load it into (that needs root
/// and the kernel module): sections, known keys, decodable keys, CIDRs and endpoints, and that
/// no range is given to two peers (stock WireGuard would silently move it to the last one).
fn check_wg_config(conf: &str, what: &str) {
    let mut section = "";
    let mut interfaces = 0;
    let mut peers = 0;
    let mut seen: Vec<IpNet> = Vec::new();
    for line in conf.lines() {
        let line = line.split('#').next().unwrap().trim();
        if line.is_empty() {
            continue;
        }
        if line == "[Interface]" || line == "[Peer]" {
            section = line;
            interfaces += usize::from(line == "[Interface]");
            peers += usize::from(line == "[Peer]");
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("{what}: not key = value: {line}"));
        let (key, value) = (key.trim(), value.trim());
        match (section, key) {
            ("[Interface]", "ListenPort") => assert!(value.parse::<u16>().unwrap() > 0, "{what}"),
            ("[Peer]", "PublicKey") => {
                value
                    .parse::<PublicKey>()
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
            }
            ("[Peer]", "AllowedIPs") => {
                assert!(!value.is_empty(), "{what}: empty AllowedIPs");
                for range in value.split(',') {
                    let net: IpNet = range
                        .trim()
                        .parse()
                        .unwrap_or_else(|e| panic!("{what}: {range}: {e}"));
                    assert_eq!(net, net.trunc(), "{what}: host bits in {net}");
                    assert!(!seen.contains(&net), "{what}: {net} given to two peers");
                    seen.push(net);
                }
            }
            ("[Peer]", "Endpoint") => {
                value
                    .parse::<Endpoint>()
                    .unwrap_or_else(|e| panic!("{what}: {value}: {e}"));
            }
            ("[Peer]", "PersistentKeepalive") => {
                value.parse::<u16>().unwrap();
            }
            _ => panic!("{what}: {key} does not belong in {section:?}"),
        }
    }
    assert_eq!(interfaces, 1, "{what}");
    assert!(peers >= 1, "{what}");
}

#[test]
fn plan_in_wg_format_is_well_formed_for_every_example_node() {
    for file in examples() {
        let topo = Topology::load(&file).unwrap();
        for node in &topo.nodes {
            let out = wiremesh(&[
                "plan",
                "--topology",
                file.to_str().unwrap(),
                "--node",
                &node.name,
                "--format",
                "wg",
            ]);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            check_wg_config(&String::from_utf8(out.stdout).unwrap(), &node.name);
        }
    }
}

#[test]
fn plan_on_a_bad_file_fails_and_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken-mesh.toml");
    std::fs::write(&path, "mode = \"ring\"\ncluster-cidr = \"10.244.0.0/16\"\n").unwrap();
    let out = wiremesh(&["plan", "--topology", path.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("broken-mesh.toml"), "{stderr}");
    assert!(stderr.contains("line 1"), "{stderr}");
}

#[test]
fn plan_for_an_unknown_node_fails() {
    let file = &examples()[0];
    let out = wiremesh(&[
        "plan",
        "--topology",
        file.to_str().unwrap(),
        "--node",
        "nobody",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("'nobody'"));
}

#[test]
fn ipam_write_pins_every_node_keeps_comments_and_is_idempotent() {
    for example in examples() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mesh.toml");
        std::fs::copy(&example, &path).unwrap();
        let before = Topology::load(&path).unwrap();
        let original = std::fs::read_to_string(&path).unwrap();

        let out = wiremesh(&["ipam", "--topology", path.to_str().unwrap(), "--write"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let once = std::fs::read_to_string(&path).unwrap();
        let comments = |s: &str| {
            s.lines()
                .filter(|l| l.trim_start().starts_with('#'))
                .map(str::to_string)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            comments(&once),
            comments(&original),
            "{}",
            example.display()
        );

        let after = Topology::load(&path).unwrap();
        for (b, a) in before.nodes.iter().zip(&after.nodes) {
            assert_eq!(b.pod_cidrs(), a.pod_cidrs(), "{} moved", b.name);
            assert!(a.pod_cidr_pinned);
            assert_eq!(a.pod_cidr_v6_pinned, a.pod_cidr_v6.is_some());
        }
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert!(
            stdout.lines().skip(1).all(|l| l.ends_with("yes")),
            "{stdout}"
        );

        let out = wiremesh(&["ipam", "--topology", path.to_str().unwrap(), "--write"]);
        assert!(out.status.success());
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            once,
            "second run changed the file"
        );
    }
}

/// Every example, including a dual-stack one, with pinned and unpinned nodes.
fn ipam_examples() -> Vec<PathBuf> {
    let mut files = examples();
    files.push(common::topology("full-dual-stack.toml"));
    files
}

#[test]
fn ipam_json_gives_every_node_the_cidrs_the_library_assigns_from_a_file_or_stdin() {
    for file in ipam_examples() {
        let topo = Topology::load(&file).unwrap();
        let path = file.to_str().unwrap();
        let from_file = wiremesh(&["ipam", "--topology", path, "--json"]);
        assert!(from_file.status.success(), "{}", text(&from_file));
        let body = std::fs::read_to_string(&file).unwrap();
        let from_stdin = wiremesh_with_stdin(&["ipam", "--topology", "-", "--json"], &body);
        assert!(from_stdin.status.success(), "{}", text(&from_stdin));
        assert_eq!(from_stdin.stdout, from_file.stdout, "{path}");

        let json: serde_json::Value = serde_json::from_slice(&from_file.stdout).unwrap();
        let nodes = json.as_array().unwrap();
        assert_eq!(nodes.len(), topo.nodes.len(), "{path}");
        let dual = topo.mesh.cluster_cidr_v6.is_some();
        for (got, node) in nodes.iter().zip(&topo.nodes) {
            assert_eq!(got["name"], node.name.as_str(), "{path}");
            assert_eq!(got["pod-cidr"], node.pod_cidr.to_string(), "{path}");
            assert_eq!(got["pinned"], node.pod_cidr_pinned, "{path}");
            if dual {
                let v6 = node.pod_cidr_v6.unwrap().to_string();
                assert_eq!(got["pod-cidr-v6"], v6.as_str(), "{path}");
                assert_eq!(got["pinned-v6"], node.pod_cidr_v6_pinned, "{path}");
            } else {
                assert!(got.get("pod-cidr-v6").is_none(), "{path}: {got}");
            }
        }
        assert!(
            from_file.stderr.is_empty(),
            "--json prints no hint: {}",
            text(&from_file)
        );
    }
}

#[test]
fn ipam_json_keeps_pinned_cidrs_and_assigns_the_rest_around_them() {
    let file = common::topology("ansible-two-regions.toml");
    let unpinned = Topology::load(&file).unwrap();
    // Pin the second node onto the slot IPAM would give the first: the first must move, the
    // pinned one must stay, as the Ansible role relies on for recorded CIDRs.
    let taken = unpinned.nodes[0].pod_cidr.to_string();
    let body = std::fs::read_to_string(&file).unwrap().replace(
        "name = \"eu-b\"\n",
        &format!("name = \"eu-b\"\npod-cidr = \"{taken}\"\n"),
    );
    let out = wiremesh_with_stdin(&["ipam", "--topology", "-", "--json"], &body);
    assert!(out.status.success(), "{}", text(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let cidr = |name: &str| {
        let node = json
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {json}"));
        (
            node["pod-cidr"].as_str().unwrap().to_string(),
            node["pinned"].as_bool().unwrap(),
        )
    };
    assert_eq!(cidr("eu-b"), (taken.clone(), true));
    let (first, pinned) = cidr("eu-a");
    assert!(!pinned);
    assert_ne!(first, taken);
    let all: Vec<String> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["pod-cidr"].as_str().unwrap().to_string())
        .collect();
    let mut unique = all.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), all.len(), "a CIDR given twice: {all:?}");
}

#[test]
fn ipam_on_bad_input_names_stdin_line_node_and_field() {
    let file = common::topology("ansible-two-regions.toml");
    let body = std::fs::read_to_string(&file).unwrap().replace(
        "name = \"us-a\"\n",
        "name = \"us-a\"\npod-cidr = \"10.244.300.0/24\"\n",
    );
    let line = body
        .lines()
        .position(|l| l.contains("10.244.300.0"))
        .unwrap()
        + 1;
    let out = wiremesh_with_stdin(&["ipam", "--topology", "-", "--json"], &body);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(out.stdout.is_empty(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for want in ["<stdin>", &format!("line {line}"), "'us-a'", "'pod-cidr'"] {
        assert!(stderr.contains(want), "{want} missing from: {stderr}");
    }

    let out = wiremesh_with_stdin(&["ipam", "--topology", "-", "--write"], &body);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--write needs a topology file"),
        "{}",
        text(&out)
    );
}
