//! `wiremesh registry` against a real etcd on loopback: import then export gives back the
//! file's mesh with the CIDRs `wiremesh ipam` gives; a second import changes nothing; a changed
//! pool is refused naming the field; status and remove.

mod common;
#[path = "common/etcd.rs"]
mod etcd;

use common::*;
use std::path::Path;

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
