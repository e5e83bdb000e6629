//! `wiremesh registry` against a real etcd on loopback: import then export gives back the
//! file's mesh with the CIDRs `wiremesh ipam` gives; a second import changes nothing; a changed
//! pool is refused naming the field; status and remove; scoped endpoints (docs/nat.md) travel
//! through import, a daemon's own record and export, and a bad scoped record is skipped alone.

mod common;
#[path = "common/etcd.rs"]
mod etcd;

use common::*;
use std::path::Path;
use wiremesh::core::plan::Plan;
use wiremesh::core::registry::keys::Layout;
use wiremesh::core::registry::own::OwnFields;
use wiremesh::core::topology::{Node, Topology};
use wiremesh::daemon::registry::{start, RegistryConfig};
use wiremesh::io::etcd::Etcd;

fn shipped(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("topologies")
        .join(name)
        .display()
        .to_string()
}

#[test]
fn import_then_export_gives_the_files_mesh_with_the_cidrs_ipam_gives() {
    let e = etcd::TestEtcd::start();
    let file = shipped("hub-2regions.toml");
    let (ok, out, err) = e.registry("m1", &["import", "-t", &file]);
    assert!(ok, "{err}");
    assert!(out.contains("imported"), "{out}");
    let (ok, exported, err) = e.registry("m1", &["export"]);
    assert!(ok, "{err}");
    let original = wiremesh::core::topology::Topology::load(Path::new(&file)).unwrap();
    let back =
        wiremesh::core::topology::Topology::parse(&exported, Path::new("export.toml")).unwrap();
    let ipam = wiremesh(&["ipam", "-t", &file, "--json"]);
    let ipam: Vec<serde_json::Value> = serde_json::from_slice(&ipam.stdout).unwrap();
    assert_eq!(back.nodes.len(), original.nodes.len());
    assert_eq!(back.mesh.mode, original.mesh.mode);
    assert_eq!(back.mesh.cluster_cidr, original.mesh.cluster_cidr);
    for a in &ipam {
        let name = a["name"].as_str().unwrap();
        let n = back.node(name).unwrap();
        let o = original.node(name).unwrap();
        assert_eq!(
            n.pod_cidr.to_string(),
            a["pod-cidr"].as_str().unwrap(),
            "{name}"
        );
        assert_eq!(
            (n.public_key, &n.region, &n.cloud, n.hub),
            (o.public_key, &o.region, &o.cloud, o.hub),
            "{name}"
        );
    }
    // the same file again: nothing to change, no error
    let (ok, _, err) = e.registry("m1", &["import", "-t", &file]);
    assert!(ok, "{err}");
    let (_, again, _) = e.registry("m1", &["export"]);
    assert_eq!(again, exported);
}

#[test]
fn a_changed_pool_is_refused_naming_the_field_and_nothing_is_written() {
    let e = etcd::TestEtcd::start();
    let file = shipped("full-3clouds.toml");
    assert!(e.registry("m2", &["import", "-t", &file]).0);
    let dir = tempfile::tempdir().unwrap();
    let changed = dir.path().join("changed.toml");
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("10.244.0.0/16", "10.244.0.0/15");
    assert!(text.contains("10.244.0.0/15"));
    std::fs::write(&changed, text).unwrap();
    let (_, before, _) = e.registry("m2", &["export"]);
    let (ok, _, err) = e.registry("m2", &["import", "-t", changed.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("field 'cluster-cidr'"), "{err}");
    assert!(err.contains("pools are fixed once a claim exists"), "{err}");
    let (_, after, _) = e.registry("m2", &["export"]);
    assert_eq!(before, after);
}

#[test]
fn status_lists_every_node_and_remove_frees_one() {
    let e = etcd::TestEtcd::start();
    let file = shipped("full-3clouds.toml");
    assert!(e.registry("m3", &["import", "-t", &file]).0);
    let topo = wiremesh::core::topology::Topology::load(Path::new(&file)).unwrap();
    let (ok, status, err) = e.registry("m3", &["status"]);
    assert!(ok, "{err}");
    for n in &topo.nodes {
        let line = status
            .lines()
            .find(|l| l.starts_with(&format!("{} ", n.name)))
            .unwrap_or_else(|| panic!("{} missing:\n{status}", n.name));
        assert!(line.contains(" no "), "imported, never started: {line}");
        assert!(line.contains(&n.public_key.to_string()), "{line}");
    }
    let gone = &topo.nodes[0].name;
    let (ok, out, err) = e.registry("m3", &["remove", gone]);
    assert!(ok, "{err}");
    assert!(out.contains("its pod CIDRs are free"), "{out}");
    let (_, status, _) = e.registry("m3", &["status"]);
    assert!(!status.contains(&format!("\n{gone} ")), "{status}");
    let (ok, _, err) = e.registry("m3", &["remove", gone]);
    assert!(!ok);
    assert!(err.contains("is not in"), "{err}");
    // the registry commands need an etcd URL
    let out = wiremesh(&["registry", "status", "--registry", "file:/x.toml"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("work on etcd"));
}

#[test]
fn gc_marks_absent_nodes_and_removes_them_after_gc_after() {
    let e = etcd::TestEtcd::start();
    let file = shipped("full-3clouds.toml");
    assert!(e.registry("m4", &["import", "-t", &file]).0);
    // the administrator turns gc on: gc-after 2 s in the settings
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let key = "/wiremesh/m4/settings";
        let mut etcd = wiremesh::io::etcd::Etcd::connect(&e.config(), key)
            .await
            .unwrap();
        let held = etcd.get(key).await.unwrap().unwrap();
        let mut v: serde_json::Value = serde_json::from_slice(&held.value).unwrap();
        v["gc-after"] = "2s".into();
        etcd.put(key, serde_json::to_vec(&v).unwrap(), 0)
            .await
            .unwrap();
    });
    let nodes = wiremesh::core::topology::Topology::load(Path::new(&file))
        .unwrap()
        .nodes;
    let (ok, out, err) = e.registry("m4", &["gc", "--dry-run"]);
    assert!(ok, "{err}");
    assert!(
        out.contains(&format!("would mark {}", nodes[0].name)),
        "{out}"
    );
    let (ok, out, err) = e.registry("m4", &["gc"]);
    assert!(ok, "{err}");
    for n in &nodes {
        assert!(out.contains(&format!("mark {}", n.name)), "{out}");
    }
    // marked, not yet gone: nothing absent for 2 s yet
    let (_, out, _) = e.registry("m4", &["gc"]);
    assert!(!out.contains("remove"), "{out}");
    std::thread::sleep(std::time::Duration::from_secs(3));
    let (ok, out, err) = e.registry("m4", &["gc"]);
    assert!(ok, "{err}");
    for n in &nodes {
        assert!(out.contains(&format!("remove {}", n.name)), "{out}");
    }
    let (_, status, _) = e.registry("m4", &["status"]);
    for n in &nodes {
        assert!(!status.contains(&format!("\n{} ", n.name)), "{status}");
    }
}

/// Three nodes: `a` in aws:vpc-1 with a public address too, `b` public only (until it joins with
/// its own scoped endpoint), `c` public only.
const SCOPED: &str = r#"mode = "full"
cluster-cidr = "10.244.0.0/16"

[[node]]
name = "a"
cloud = "aws"
region = "r"
endpoints = [{ address = "10.0.1.5:51820", scope = "aws:vpc-1" }, { address = "203.0.113.5:51820" }]
public-key = "hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo="

[[node]]
name = "b"
cloud = "aws"
region = "r"
endpoint = "203.0.113.6:51820"
public-key = "3p7bfXt9wbTTW2HC7OQ1Nz+DQ8hbeGdNrfx+FG+IK08="

[[node]]
name = "c"
cloud = "gcp"
region = "r"
endpoint = "198.51.100.7:51820"
public-key = "TDmrFMdp+9KD0qmAhTd1zCxf4e2ZfgXeiTP2K/MfaDE="
"#;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Imports [`SCOPED`] into mesh `mesh`; the file as parsed.
fn import_scoped(e: &etcd::TestEtcd, mesh: &str, dir: &Path) -> Topology {
    let file = dir.join("scoped.toml");
    std::fs::write(&file, SCOPED).unwrap();
    let (ok, _, err) = e.registry(mesh, &["import", "-t", file.to_str().unwrap()]);
    assert!(ok, "{err}");
    Topology::parse(SCOPED, &file).unwrap()
}

/// `wiremesh::daemon::registry::start` as node `node` with `endpoints` given as `--endpoint`
/// takes them.
fn daemon_view(
    e: &etcd::TestEtcd,
    mesh: &str,
    node: &Node,
    endpoints: &[&str],
    dir: &Path,
) -> Result<Topology, String> {
    let cfg = RegistryConfig {
        shown: format!("etcd://{}", e.endpoint()),
        etcd: e.config(),
        layout: Layout::new(mesh).unwrap(),
        node: node.name.clone(),
        own: OwnFields {
            endpoints: endpoints.iter().map(|s| s.to_string()).collect(),
            ..OwnFields::default()
        },
        snapshot: dir.join(format!("{}.snapshot.json", node.name)),
    };
    rt().block_on(async {
        let (first, _registry) = start(cfg, node.public_key)
            .await
            .map_err(|e| e.to_string())?;
        Ok(first.assembled.topology.clone())
    })
}

#[test]
fn scoped_endpoints_round_trip_and_the_registrys_plan_uses_a_shared_scopes_address() {
    let e = etcd::TestEtcd::start();
    let dir = tempfile::tempdir().unwrap();
    let file = import_scoped(&e, "s1", dir.path());
    let (ok, exported, err) = e.registry("s1", &["export"]);
    assert!(ok, "{err}");
    let back = Topology::parse(&exported, Path::new("export.toml")).unwrap();
    for n in &file.nodes {
        let got = back.node(&n.name).unwrap();
        assert_eq!(
            (&got.endpoint, &got.scoped),
            (&n.endpoint, &n.scoped),
            "{}",
            n.name
        );
    }
    assert_eq!(back.node("a").unwrap().scoped[0].scope, "aws:vpc-1");

    // b's daemon starts with a private address in aws:vpc-1 besides its public one
    let b = file.node("b").unwrap();
    let t = daemon_view(
        &e,
        "s1",
        b,
        &["10.0.1.6:51820@aws:vpc-1", "203.0.113.6:51820"],
        dir.path(),
    )
    .unwrap();
    let peer = |from: &str, to: &str| {
        Plan::compute(&t, from)
            .unwrap()
            .peers
            .into_iter()
            .find(|p| p.name == to)
            .unwrap()
            .endpoint
            .map(|e| e.to_string())
    };
    // a and b share aws:vpc-1: each other's private addresses
    assert_eq!(peer("a", "b").as_deref(), Some("10.0.1.6:51820"));
    assert_eq!(peer("b", "a").as_deref(), Some("10.0.1.5:51820"));
    // c shares no scope: the public ones
    assert_eq!(peer("c", "a").as_deref(), Some("203.0.113.5:51820"));
    assert_eq!(peer("c", "b").as_deref(), Some("203.0.113.6:51820"));
    assert_eq!(peer("a", "c").as_deref(), Some("198.51.100.7:51820"));

    // b's record holds the object form; status shows it as --endpoint takes it
    let record = rt().block_on(async {
        let mut etcd = Etcd::connect(&e.config(), "/wiremesh/s1/").await.unwrap();
        etcd.get("/wiremesh/s1/node/b/record")
            .await
            .unwrap()
            .unwrap()
    });
    let record: serde_json::Value = serde_json::from_slice(&record.value).unwrap();
    assert_eq!(
        record["endpoints"],
        serde_json::json!([{"address": "10.0.1.6:51820", "scope": "aws:vpc-1"}, "203.0.113.6:51820"])
    );
    let (ok, status, err) = e.registry("s1", &["status"]);
    assert!(ok, "{err}");
    let line = status.lines().find(|l| l.starts_with("b ")).unwrap();
    assert!(
        line.ends_with("10.0.1.6:51820@aws:vpc-1,203.0.113.6:51820"),
        "{line}"
    );
    // and export writes b's scopes back into the file
    let (_, exported, _) = e.registry("s1", &["export"]);
    let back = Topology::parse(&exported, Path::new("export.toml")).unwrap();
    assert_eq!(back.node("b").unwrap().scoped, t.node("b").unwrap().scoped);
}

#[test]
fn a_bad_scoped_record_is_skipped_naming_key_and_field_and_the_rest_planned() {
    let e = etcd::TestEtcd::start();
    let dir = tempfile::tempdir().unwrap();
    let file = import_scoped(&e, "s2", dir.path());
    // written by hand: a private address without scope, beside a scoped one
    let bad = r#"{"v":1,"name":"x","cloud":"c","region":"r","public-key":"bbaxrv8LXkKbLo/dmUeyj2jK/9ImmFCLQ7DdnDkZ3Fc=","endpoints":[{"address":"10.0.1.9","scope":"aws:vpc-1"},{"address":"10.0.9.9"}]}"#;
    rt().block_on(async {
        let mut etcd = Etcd::connect(&e.config(), "/wiremesh/s2/").await.unwrap();
        etcd.put("/wiremesh/s2/node/x/record", bad.as_bytes().to_vec(), 0)
            .await
            .unwrap();
        let claim = br#"{"v":1,"pod-cidr":"10.244.250.0/24"}"#.to_vec();
        etcd.put("/wiremesh/s2/claims/x", claim, 0).await.unwrap();
    });
    let (ok, status, err) = e.registry("s2", &["status"]);
    assert!(ok, "{err}");
    assert!(
        status.contains(
            "/wiremesh/s2/node/x/record: field 'endpoints[1].scope': '10.0.9.9' is a private \
             address"
        ),
        "{status}"
    );
    let (ok, exported, err) = e.registry("s2", &["export"]);
    assert!(ok, "{err}");
    let back = Topology::parse(&exported, Path::new("export.toml")).unwrap();
    let names: Vec<&str> = back.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["a", "b", "c"]);
    assert_eq!(
        back.node("a").unwrap().scoped,
        file.node("a").unwrap().scoped
    );

    // a daemon given such endpoints is refused before it writes, naming the field
    let before = e.registry("s2", &["export"]).1;
    let err = daemon_view(
        &e,
        "s2",
        file.node("c").unwrap(),
        &["10.0.1.7@aws:vpc-1", "10.0.9.7", "198.51.100.7@"],
        dir.path(),
    )
    .unwrap_err();
    assert!(
        err.contains("field 'endpoints[1]': '10.0.9.7' is a private address"),
        "{err}"
    );
    assert!(
        err.contains("field 'endpoints[2].scope': empty scope"),
        "{err}"
    );
    assert_eq!(e.registry("s2", &["export"]).1, before);
}
