//! The mesh's network policy in the registry, against a real etcd on loopback (no root): the
//! policy key and the records' labels survive import then export; `registry policy set` refuses
//! a bad policy naming file, line, policy and field and writes nothing; the daemon's view (what
//! `registry::start` and the task hand the main loop) carries the policy with the records'
//! labels, and keeps the last good policy while the key holds a refused one.

mod common;
#[path = "common/etcd.rs"]
mod etcd;

use common::*;
use std::path::{Path, PathBuf};
use std::time::Duration;
use wiremesh::core::policy::spec::DefaultAction;
use wiremesh::core::policy::MeshPolicy;
use wiremesh::core::registry::keys::Layout;
use wiremesh::core::registry::own::OwnFields;
use wiremesh::core::topology::Topology;
use wiremesh::daemon::registry::{start, RegistryConfig, Update};
use wiremesh::io::etcd::Etcd;

/// A hub mesh of two regions with labels, a set, and three rules.
const MESH: &str = r#"mode = "hub"
cluster-cidr = "10.244.0.0/16"
default-action = "deny"
policy-mode = "audit"

[cidr-set.db]
cidrs = ["10.244.7.0/24", "10.244.8.0/24"]

[[node]]
name = "hub-1"
cloud = "gcp"
region = "r1"
endpoint = "192.0.2.1:51820"
public-key = "hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo="
hub = true
labels = { app = "web", "example.com/tier" = "front" }

[[node]]
name = "spoke-1"
cloud = "aws"
region = "r1"
public-key = "3p7bfXt9wbTTW2HC7OQ1Nz+DQ8hbeGdNrfx+FG+IK08="
pod-cidr = "10.244.7.0/24"
labels = { app = "db" }

[[node]]
name = "hub-2"
cloud = "aws"
region = "r2"
endpoint = "192.0.2.2:51820"
public-key = "TDmrFMdp+9KD0qmAhTd1zCxf4e2ZfgXeiTP2K/MfaDE="
hub = true

# the web tier reaches the databases
[[policy]]
name = "web-to-db"
order = 10
action = "allow"
from = { labels = { app = "web" } }
to = { cidr-sets = ["db"] }
protocol = "tcp"
ports = [5432, "6000-6010"]

[[policy]]
name = "log-r2"
order = 20
action = "log"
from = { region = "r2" }

[[policy]]
name = "no-ssh"
order = 30
action = "deny"
reject = true
to = { cloud = "aws" }
protocol = "tcp"
ports = [22]
"#;

/// The policy part alone, as `registry policy set` takes it.
const PART: &str = r#"default-action = "allow"

[[policy]]
name = "db-closed"
order = 5
action = "deny"
to = { labels = { app = "db" } }
protocol = "tcp"
ports = [5432]
"#;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// A policy without what depends on where it was read (rule lines, and labels when asked).
fn meaning(p: &MeshPolicy) -> MeshPolicy {
    let mut p = p.clone();
    p.rules.iter_mut().for_each(|r| r.line = None);
    p
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn import_then_export_gives_back_the_files_policy_and_labels() {
    let e = etcd::TestEtcd::start();
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "mesh.toml", MESH);
    let (ok, out, err) = e.registry("p1", &["import", "-t", file.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(out.contains("/wiremesh/p1/policy: 3 rule(s)"), "{out}");
    let (_, status, _) = e.registry("p1", &["status"]);
    assert!(status.contains("\npolicy: 3 rule(s)\n"), "{status}");

    let (ok, exported, err) = e.registry("p1", &["export"]);
    assert!(ok, "{err}");
    let original = Topology::parse_with_policy(MESH, Path::new("mesh.toml")).unwrap();
    let back = Topology::parse_with_policy(&exported, Path::new("export.toml"))
        .unwrap_or_else(|e| panic!("{e}\n{exported}"));
    assert_eq!(meaning(&back.policy), meaning(&original.policy));
    assert_eq!(back.policy.labels.len(), 2);
    assert_eq!(back.policy.labels["hub-1"]["example.com/tier"], "front");
    for n in &original.topology.nodes {
        let b = back.topology.node(&n.name).unwrap();
        assert_eq!(
            (b.public_key, &b.region, b.hub, b.pod_cidr),
            (n.public_key, &n.region, n.hub, n.pod_cidr),
            "{}",
            n.name
        );
    }

    // the stored text is the file's policy part, comments included; export → import → export
    // changes nothing
    let (ok, shown, err) = e.registry("p1", &["policy", "show"]);
    assert!(ok, "{err}");
    assert!(
        shown.contains("# the web tier reaches the databases"),
        "{shown}"
    );
    assert!(!shown.contains("[[node]]"), "{shown}");
    let again = write(dir.path(), "again.toml", &exported);
    assert!(
        e.registry("p1", &["import", "-t", again.to_str().unwrap()])
            .0
    );
    let (_, twice, _) = e.registry("p1", &["export"]);
    let twice = Topology::parse_with_policy(&twice, Path::new("twice.toml")).unwrap();
    assert_eq!(meaning(&twice.policy), meaning(&back.policy));

    // a file without policy makes the mesh permissive, and says so
    let plain = MESH
        .split("# the web tier")
        .next()
        .unwrap()
        .replace("default-action = \"deny\"\npolicy-mode = \"audit\"\n", "")
        .replace(
            "[cidr-set.db]\ncidrs = [\"10.244.7.0/24\", \"10.244.8.0/24\"]\n",
            "",
        );
    let plain = write(dir.path(), "plain.toml", &plain);
    let (ok, out, err) = e.registry("p1", &["import", "-t", plain.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(out.contains("/wiremesh/p1/policy: removed"), "{out}");
    let (_, exported, _) = e.registry("p1", &["export"]);
    let plain = Topology::parse_with_policy(&exported, Path::new("export.toml")).unwrap();
    assert!(plain.policy.is_permissive(), "{exported}");
}

#[test]
fn policy_set_refuses_a_bad_policy_naming_file_line_policy_and_field_and_writes_nothing() {
    let e = etcd::TestEtcd::start();
    let dir = tempfile::tempdir().unwrap();
    let good = write(dir.path(), "good.toml", PART);
    let (ok, out, err) = e.registry("p2", &["policy", "set", good.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(
        out.contains("/wiremesh/p2/policy: 1 rule(s), 0 cidr-set(s), default-action allow"),
        "{out}"
    );
    let key = Layout::new("p2").unwrap().policy();
    let held = || {
        rt().block_on(async {
            let mut etcd = Etcd::connect(&e.config(), &key).await.unwrap();
            etcd.get(&key).await.unwrap().unwrap()
        })
    };
    let before = held();
    assert_eq!(before.value, PART.as_bytes());

    let bad = write(
        dir.path(),
        "bad.toml",
        &PART.replace("ports = [5432]", "ports = [\"5432-80\"]"),
    );
    let (ok, _, err) = e.registry("p2", &["policy", "set", bad.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains(&format!(
            "{}: 1 problem(s):\n  line 9: policy 'db-closed': field 'ports': \"5432-80\" is not \
             a port range: 5432 > 80",
            bad.display()
        )),
        "{err}"
    );
    assert!(err.contains("nothing was written"), "{err}");
    let unknown = write(
        dir.path(),
        "unknown.toml",
        &PART.replace("to = {", "too = {"),
    );
    let (ok, _, err) = e.registry("p2", &["policy", "set", unknown.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains("line 7: policy 'db-closed': field 'too': unknown field `too`"),
        "{err}"
    );
    // a whole topology file is not a policy part: refused, with the command that takes one
    let whole = write(dir.path(), "mesh.toml", MESH);
    let (ok, _, err) = e.registry("p2", &["policy", "set", whole.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains("expected one of `default-action`, `policy-mode`, `cidr-set`, `policy`"),
        "{err}"
    );
    assert!(err.contains("`wiremesh registry import` takes"), "{err}");
    let missing = dir.path().join("missing.toml");
    let (ok, _, err) = e.registry("p2", &["policy", "set", missing.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("missing.toml: cannot read"), "{err}");

    let after = held();
    assert_eq!(after.value, before.value);
    assert_eq!(after.mod_revision, before.mod_revision, "nothing written");
    let (ok, shown, _) = e.registry("p2", &["policy", "show"]);
    assert!(ok);
    assert_eq!(shown, PART);

    // a bad policy written past the command (etcdctl, say): show prints it and fails naming the
    // key, status reports it, export refuses rather than drop it
    let file = write(dir.path(), "mesh.toml", MESH);
    assert!(
        e.registry("p2", &["import", "-t", file.to_str().unwrap()])
            .0
    );
    let bad = PART.replace("order = 5", "order = -5");
    rt().block_on(async {
        let mut etcd = Etcd::connect(&e.config(), &key).await.unwrap();
        etcd.put(&key, bad.clone().into_bytes(), 0).await.unwrap();
    });
    let refusal = "/wiremesh/p2/policy: 1 problem(s):\n  line 5: policy 'db-closed': field \
                   'order': -5 is outside 0-4294967295";
    let (ok, shown, err) = e.registry("p2", &["policy", "show"]);
    assert!(!ok);
    assert_eq!(shown, bad);
    assert!(err.contains(refusal), "{err}");
    let (ok, status, err) = e.registry("p2", &["status"]);
    assert!(ok, "{err}");
    assert!(status.contains("policy refused"), "{status}");
    assert!(status.contains(refusal), "{status}");
    let (ok, exported, err) = e.registry("p2", &["export"]);
    assert!(!ok, "{exported}");
    assert!(
        err.contains(refusal) && err.contains("not exported"),
        "{err}"
    );
}

/// The daemon's registry start for `node`, with a snapshot file in `dir`.
fn config(e: &etcd::TestEtcd, mesh: &str, node: &str, dir: &Path) -> RegistryConfig {
    RegistryConfig {
        shown: format!("etcd://{}", e.endpoint()),
        etcd: e.config(),
        layout: Layout::new(mesh).unwrap(),
        node: node.to_string(),
        own: OwnFields::default(),
        snapshot: dir.join("snapshot.json"),
    }
}

/// The task's next update, within a few debounce periods.
async fn next(r: &mut wiremesh::daemon::registry::Registry) -> std::sync::Arc<Update> {
    tokio::time::timeout(Duration::from_secs(10), r.next())
        .await
        .expect("an update within 10 s")
        .expect("the registry task runs")
}

#[tokio::test]
async fn the_daemons_view_carries_the_policy_with_the_records_labels_and_keeps_the_last_good() {
    let e = etcd::TestEtcd::start();
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "mesh.toml", MESH);
    let (ok, _, err) = tokio::task::spawn_blocking({
        let url = format!("etcd://{}", e.endpoint());
        move || {
            let out = wiremesh(&[
                "registry",
                "import",
                "-t",
                file.to_str().unwrap(),
                "--registry",
                &url,
                "--mesh",
                "p3",
            ]);
            (
                out.status.success(),
                String::new(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        }
    })
    .await
    .unwrap();
    assert!(ok, "{err}");
    let original = Topology::parse_with_policy(MESH, Path::new("mesh.toml")).unwrap();
    let hub = original.topology.node("hub-1").unwrap().public_key;

    let (first, mut registry) = start(config(&e, "p3", "hub-1", dir.path()), hub)
        .await
        .unwrap();
    assert_eq!(meaning(&first.policy), meaning(&original.policy));
    assert_eq!(first.policy.labels["spoke-1"]["app"], "db");
    assert_eq!(first.assembled.policy.as_ref().ok(), Some(&first.policy));

    // a relabelled node and a bad policy arrive through the watch: the labels apply, the last
    // good policy stays, and the refusal names the key, line, policy and field
    let layout = Layout::new("p3").unwrap();
    let mut etcd = Etcd::connect(&e.config(), layout.prefix()).await.unwrap();
    let record = layout.record("spoke-1");
    let held = etcd.get(&record).await.unwrap().unwrap();
    let relabelled = String::from_utf8(held.value)
        .unwrap()
        .replace(r#""app":"db""#, r#""app":"cache""#);
    etcd.put(&record, relabelled.into_bytes(), 0).await.unwrap();
    let bad = PART.replace("action = \"deny\"", "action = \"drop\"");
    etcd.put(&layout.policy(), bad.into_bytes(), 0)
        .await
        .unwrap();
    let mut update = next(&mut registry).await;
    while update.policy.labels["spoke-1"]["app"] != "cache" || update.assembled.policy.is_ok() {
        update = next(&mut registry).await;
    }
    let refused = update.assembled.policy.clone().unwrap_err().to_string();
    assert_eq!(
        refused,
        "/wiremesh/p3/policy: 1 problem(s):\n  line 6: policy 'db-closed': field 'action': \
         'drop' is not an action (allow, deny or log)"
    );
    let kept = MeshPolicy {
        labels: first.policy.labels.clone(),
        ..update.policy.clone()
    };
    assert_eq!(kept, first.policy, "the last good policy stays in force");
    assert_eq!(update.policy.default_action, DefaultAction::Deny);
    assert_eq!(update.assembled.topology.nodes.len(), 3);

    // a valid policy replaces it
    etcd.put(&layout.policy(), PART.as_bytes().to_vec(), 0)
        .await
        .unwrap();
    let mut update = next(&mut registry).await;
    while update.assembled.policy.is_err() {
        update = next(&mut registry).await;
    }
    assert_eq!(update.policy.rules.len(), 1);
    assert_eq!(update.policy.rules[0].name, "db-closed");
    assert_eq!(update.policy.default_action, DefaultAction::Allow);
    assert_eq!(update.policy.labels["spoke-1"]["app"], "cache");
    registry.leave().await;
}

#[tokio::test]
async fn a_daemon_starting_with_a_refused_policy_exits_naming_the_key() {
    let e = etcd::TestEtcd::start();
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::new("p4").unwrap();
    let original = Topology::parse_with_policy(MESH, Path::new("mesh.toml")).unwrap();
    let txns =
        wiremesh::core::registry::transfer::import(&layout, &original, None, &Default::default())
            .unwrap();
    let mut etcd = Etcd::connect(&e.config(), layout.prefix()).await.unwrap();
    for txn in &txns {
        etcd.txn(txn).await.unwrap();
    }
    let bad = "[[policy]]\nname = \"x\"\norder = 1\naction = \"drop\"\n";
    etcd.put(&layout.policy(), bad.as_bytes().to_vec(), 0)
        .await
        .unwrap();
    let hub = original.topology.node("hub-1").unwrap().public_key;
    let err = match start(config(&e, "p4", "hub-1", dir.path()), hub).await {
        Ok(_) => panic!("started with a refused policy"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains(
            "/wiremesh/p4/policy: 1 problem(s):\n  line 4: policy 'x': field 'action': 'drop' \
             is not an action"
        ),
        "{err}"
    );
}
