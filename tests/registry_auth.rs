//! Writes are scoped (docs/registry.md, section 3), checked against a real etcd on loopback with
//! auth enabled and `--client-cert-auth`: certificates made here (a CA; the server's for
//! 127.0.0.1; clients whose CN is `root`, `n1`, `n2`), roles given by `wiremesh registry grant`,
//! and every request made through the driver (`io/etcd`) with a node's certificate alone.
//! Each row of the section's list is one assertion: what a node can do, what it is denied.

mod common;
#[path = "common/etcd.rs"]
mod etcd;
#[path = "common/pki.rs"]
mod pki;

use etcd::TestEtcd;
use pki::Pki;
use std::path::Path;
use wiremesh::core::key::PublicKey;
use wiremesh::core::registry::keys::Layout;
use wiremesh::core::registry::validate;
use wiremesh::core::registry::{Snapshot, TxnSpec};
use wiremesh::daemon::registry::join::take_claim;
use wiremesh::io::etcd::lease::{self, KeepAlive, Renewal};
use wiremesh::io::etcd::watch::{Watch, WatchItem};
use wiremesh::io::etcd::{Etcd, EtcdConfig, EtcdError};

const MESH: &str = "prod";
const SETTINGS: &str = r#"{"v":1,"mode":"full","cluster-cidr":"10.77.0.0/16","node-prefix":24}"#;

/// A TLS member with auth enabled (user `root`, known by its certificate), the mesh's settings,
/// and nodes `n1` and `n2` granted by `wiremesh registry grant`.
struct Secured {
    pki: Pki,
    etcd: TestEtcd,
    layout: Layout,
}

impl Secured {
    async fn start() -> Secured {
        let pki = Pki::new();
        let etcd = TestEtcd::start_tls(pki.path("server"), pki.key_path("server"), pki.path("ca"));
        let s = Secured {
            pki,
            etcd,
            layout: Layout::new(MESH).unwrap(),
        };
        let mut admin = s.admin_client().await;
        admin
            .user_add(
                "root",
                "",
                Some(etcd_client::UserAddOptions::new().with_no_pwd()),
            )
            .await
            .unwrap();
        admin.role_add("root").await.unwrap();
        admin.user_grant_role("root", "root").await.unwrap();
        admin.auth_enable().await.unwrap();
        s.as_user("root")
            .await
            .put(&s.layout.settings(), SETTINGS.as_bytes().to_vec(), 0)
            .await
            .unwrap();
        for node in ["n1", "n2"] {
            s.grant(&[node]);
        }
        s
    }

    /// The config of a client showing `cert`'s certificate.
    fn config(&self, cert: &str) -> EtcdConfig {
        self.etcd.tls_config(
            self.pki.path("ca"),
            Some(self.pki.path(cert)),
            Some(self.pki.key_path(cert)),
        )
    }

    /// The driver, logged in as `user` by its certificate (CN = user, no password).
    async fn as_user(&self, user: &str) -> Etcd {
        Etcd::connect(&self.config(user), self.layout.prefix())
            .await
            .unwrap_or_else(|e| panic!("{user} connects: {e}"))
    }

    /// etcd's own client as root, for what the driver does not do (auth setup, role reads).
    async fn admin_client(&self) -> etcd_client::Client {
        let tls = etcd_client::TlsOptions::new()
            .ca_certificate(etcd_client::Certificate::from_pem(
                std::fs::read(self.pki.path("ca")).unwrap(),
            ))
            .identity(etcd_client::Identity::from_pem(
                std::fs::read(self.pki.path("root")).unwrap(),
                std::fs::read(self.pki.key_path("root")).unwrap(),
            ));
        let options = etcd_client::ConnectOptions::new().with_tls(tls);
        etcd_client::Client::connect([format!("https://{}", self.etcd.endpoint())], Some(options))
            .await
            .unwrap()
    }

    /// `wiremesh registry grant ARGS` in mesh `prod` as root; its stdout. Fails the test if it
    /// fails.
    fn grant(&self, args: &[&str]) -> String {
        let mut all = vec!["grant"];
        all.extend_from_slice(args);
        let (ok, out, err) = self.registry(MESH, &all);
        assert!(ok, "registry grant {args:?}: {err}");
        out
    }

    /// `wiremesh registry ARGS` in `mesh` as root (by its certificate): success, stdout, stderr.
    fn registry(&self, mesh: &str, args: &[&str]) -> (bool, String, String) {
        let url = format!("etcd://{}", self.etcd.endpoint());
        let (ca, cert, key) = (
            self.pki.path("ca"),
            self.pki.path("root"),
            self.pki.key_path("root"),
        );
        let mut all = vec!["registry"];
        all.extend_from_slice(args);
        all.extend([
            "--registry",
            &url,
            "--mesh",
            mesh,
            "--etcd-ca",
            ca.to_str().unwrap(),
            "--etcd-cert",
            cert.to_str().unwrap(),
            "--etcd-key",
            key.to_str().unwrap(),
        ]);
        let out = common::wiremesh(&all);
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// A node joining as a self-allocating daemon does: claim, `alloc/` key and record in one
    /// transaction, then its presence on a lease of its own. The lease.
    async fn join(&self, etcd: &mut Etcd, node: &str) -> i64 {
        let l = &self.layout;
        let (kvs, revision) = etcd.list(l.prefix()).await.unwrap();
        let settings = validate::settings("s", SETTINGS.as_bytes()).unwrap();
        let snapshot = Snapshot::new(revision, kvs);
        take_claim(etcd, l, &settings, &snapshot, node, Some(record(node)))
            .await
            .unwrap_or_else(|e| panic!("{node} takes its claim: {e}"));
        let id = lease::grant(etcd, 30).await.unwrap();
        etcd.put(&l.presence(node), b"{}".to_vec(), id)
            .await
            .unwrap();
        id
    }

    /// The permissions of `role` as (type, key, range_end) text.
    async fn role(&self, role: &str) -> Vec<(i32, String, String)> {
        let answer = self.admin_client().await.role_get(role).await.unwrap();
        let mut perms: Vec<_> = answer
            .permissions()
            .iter()
            .map(|p| {
                (
                    p.get_type(),
                    String::from_utf8_lossy(p.key()).into_owned(),
                    String::from_utf8_lossy(p.range_end()).into_owned(),
                )
            })
            .collect();
        perms.sort();
        perms
    }
}

fn record(name: &str) -> Vec<u8> {
    let mut b = [0u8; 32];
    b[..name.len()].copy_from_slice(name.as_bytes());
    b[31] = 9;
    let key = PublicKey::from_bytes(b);
    format!(
        r#"{{"v":1,"name":"{name}","cloud":"c","region":"r","endpoints":[],"public-key":"{key}","hub":false,"state":"active"}}"#
    )
    .into_bytes()
}

/// Asserts that `result` is etcd's refusal naming `key`.
#[track_caller]
fn assert_denied<T: std::fmt::Debug>(result: Result<T, EtcdError>, key: &str) {
    match result {
        Err(e @ EtcdError::PermissionDenied { .. }) => {
            let text = e.to_string();
            assert!(text.contains(&format!("denied access to {key}")), "{text}");
        }
        other => panic!("{key}: expected a permission denial, got {other:?}"),
    }
}

fn put_spec(key: &str, value: &[u8]) -> TxnSpec {
    TxnSpec {
        puts: vec![(key.to_string(), value.to_vec())],
        ..TxnSpec::default()
    }
}

/// The secured mesh with `n2` joined; clients of `n1` and `n2`; `n2`'s lease.
async fn n2_joined() -> (Secured, Etcd, Etcd, i64) {
    let s = Secured::start().await;
    let mut n2 = s.as_user("n2").await;
    let n2_lease = s.join(&mut n2, "n2").await;
    let n1 = s.as_user("n1").await;
    (s, n1, n2, n2_lease)
}

#[tokio::test]
async fn a_node_with_its_certificate_reads_the_mesh_writes_its_own_keys_and_alloc() {
    let (s, mut n1, _n2, n2_lease) = n2_joined().await;
    let l = &s.layout;
    // Can read the whole mesh: settings, another node's record, claim and presence.
    let (kvs, revision) = n1.list(l.prefix()).await.unwrap();
    let keys: Vec<&str> = kvs.iter().map(|kv| kv.key.as_str()).collect();
    for key in [
        l.settings(),
        l.record("n2"),
        l.claim("n2"),
        l.presence("n2"),
    ] {
        assert!(keys.contains(&key.as_str()), "{key} not in {keys:?}");
    }
    // Can take its own claim: claim, alloc/ lock and record in one transaction.
    let n1_lease = s.join(&mut n1, "n1").await;
    // Can rewrite its own record and presence.
    n1.put(&l.record("n1"), record("n1"), 0).await.unwrap();
    n1.put(&l.presence("n1"), b"{}".to_vec(), n1_lease)
        .await
        .unwrap();
    // Can move its own claim to a free CIDR.
    n1.put(
        &l.claim("n1"),
        br#"{"v":1,"pod-cidr":"10.77.250.0/24"}"#.to_vec(),
        0,
    )
    .await
    .unwrap();
    // Can create alloc/ keys, and rewrite or delete another node's.
    let spare = l.alloc("10.77.251.0/24".parse().unwrap());
    n1.put(&spare, br#"{"v":1,"node":"n1"}"#.to_vec(), 0)
        .await
        .unwrap();
    let n2_alloc = kvs
        .iter()
        .find(|kv| kv.key.starts_with(&format!("{}alloc/", l.prefix())))
        .expect("n2's alloc/ key")
        .key
        .clone();
    n1.put(&n2_alloc, br#"{"v":1,"node":"n1"}"#.to_vec(), 0)
        .await
        .unwrap();
    n1.txn(&TxnSpec {
        deletes: vec![n2_alloc.clone()],
        ..TxnSpec::default()
    })
    .await
    .unwrap();
    // Can keep another node's lease alive (etcd does not check LeaseKeepAlive).
    let mut keep = KeepAlive::open(&n1, n2_lease).await.unwrap().unwrap();
    assert!(matches!(keep.renew().await, Ok(Renewal::Alive { .. })));
    // Can grant itself leases.
    lease::grant(&n1, 30).await.unwrap();
    // Can watch the whole mesh, from the revision it listed at.
    let mut watch = Watch::start(&n1, l.prefix(), revision + 1).await.unwrap();
    let first = tokio::time::timeout(std::time::Duration::from_secs(10), watch.next())
        .await
        .expect("the watch answered")
        .unwrap();
    assert!(
        matches!(&first, Some(WatchItem::Events { events, .. }) if !events.is_empty()),
        "{first:?}"
    );
}

#[tokio::test]
async fn a_node_with_its_certificate_cannot_write_other_nodes_keys_the_settings_or_absent_marks() {
    let (s, mut n1, mut n2, n2_lease) = n2_joined().await;
    let l = &s.layout;
    // Cannot write another node's record, presence or claim.
    assert_denied(
        n1.put(&l.record("n2"), record("n2"), 0).await,
        &l.record("n2"),
    );
    assert_denied(
        n1.put(&l.presence("n2"), b"{}".to_vec(), 0).await,
        &l.presence("n2"),
    );
    assert_denied(
        n1.put(&l.claim("n2"), b"{}".to_vec(), 0).await,
        &l.claim("n2"),
    );
    // Cannot delete another node's record.
    let delete = TxnSpec {
        deletes: vec![l.record("n2")],
        ..TxnSpec::default()
    };
    assert_denied(n1.txn(&delete).await, &l.record("n2"));
    // Cannot write a claims/ key with another name, even one its own name starts.
    for other in ["n1.b", "n10", "n3"] {
        assert_denied(
            n1.txn(&put_spec(&l.claim(other), b"{}")).await,
            &l.claim(other),
        );
    }
    // Cannot write the settings, nor absent/ marks (its own included).
    assert_denied(
        n1.put(&l.settings(), SETTINGS.as_bytes().to_vec(), 0).await,
        &l.settings(),
    );
    for node in ["n1", "n2"] {
        assert_denied(
            n1.put(&l.absent(node), b"{}".to_vec(), 0).await,
            &l.absent(node),
        );
    }
    // Cannot revoke another node's lease, nor attach its own key to it.
    assert_denied(
        lease::revoke(&n1, n2_lease).await,
        &format!("lease {n2_lease:x}"),
    );
    assert_denied(
        n1.put(&l.presence("n1"), b"{}".to_vec(), n2_lease).await,
        &l.presence("n1"),
    );
    // Nothing denied was written: n2's keys are as n2 left them.
    let n2_record = n2.get(&l.record("n2")).await.unwrap().unwrap();
    assert_eq!(n2_record.value, record("n2"));
}

#[tokio::test]
async fn a_node_reads_the_mesh_policy_but_cannot_write_replace_or_delete_it() {
    let (s, mut n1, _n2, _) = n2_joined().await;
    let l = &s.layout;
    let policy = "default-action = \"deny\"\n\n[[policy]]\nname = \"web\"\norder = 1\n\
                  action = \"allow\"\nprotocol = \"tcp\"\nports = [443]\n";
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("policy.toml");
    std::fs::write(&file, policy).unwrap();
    let (ok, _, err) = s.registry(MESH, &["policy", "set", file.to_str().unwrap()]);
    assert!(ok, "root sets the policy: {err}");
    // Can read it: its daemon plans with it.
    let read = n1.get(&l.policy()).await.unwrap().unwrap();
    assert_eq!(read.value, policy.as_bytes());
    // Cannot write it, replace it in a transaction, nor delete it (a permissive policy is one
    // write away from any node otherwise).
    assert_denied(
        n1.put(&l.policy(), b"default-action = \"allow\"\n".to_vec(), 0)
            .await,
        &l.policy(),
    );
    assert_denied(n1.txn(&put_spec(&l.policy(), b"")).await, &l.policy());
    let delete = TxnSpec {
        deletes: vec![l.policy()],
        ..TxnSpec::default()
    };
    assert_denied(n1.txn(&delete).await, &l.policy());
    let held = s
        .as_user("root")
        .await
        .get(&l.policy())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        held.mod_revision, read.mod_revision,
        "nothing denied was written"
    );
}

#[tokio::test]
async fn grant_converges_the_role_and_no_allocate_takes_the_claim_for_the_node() {
    let s = Secured::start().await;
    let l = &s.layout;
    let read = 0;
    let readwrite = 2;
    let p = l.prefix();
    let full = vec![
        (read, p.to_string(), "/wiremesh/prod0".to_string()),
        (readwrite, format!("{p}alloc/"), format!("{p}alloc0")),
        (readwrite, format!("{p}claims/n1"), String::new()),
        (readwrite, format!("{p}node/n1/"), format!("{p}node/n10")),
    ];
    assert_eq!(s.role("wiremesh-prod-n1").await, full);
    // A second grant changes nothing.
    let out = s.grant(&["n1"]);
    assert!(out.contains("(0 granted, 0 revoked now)"), "{out}");
    assert_eq!(s.role("wiremesh-prod-n1").await, full);
    // --no-allocate takes alloc/ away and takes the claim with root's credential.
    let out = s.grant(&["n1", "--no-allocate"]);
    assert!(out.contains("claim of node 'n1': 10.77."), "{out}");
    assert!(out.contains("(0 granted, 1 revoked now)"), "{out}");
    assert_eq!(
        s.role("wiremesh-prod-n1").await,
        [full[0].clone(), full[2].clone(), full[3].clone()]
    );
    let (_, status, _) = s.registry(MESH, &["status"]);
    assert!(
        status.contains("/wiremesh/prod/claims/n1: a claim without a record; ignored"),
        "{status}"
    );
    let mut n1 = s.as_user("n1").await;
    let spare = l.alloc("10.77.251.0/24".parse().unwrap());
    assert_denied(n1.put(&spare, b"{}".to_vec(), 0).await, &spare);
    // The node, which may not write alloc/, finds its claim and adopts it.
    let (kvs, revision) = n1.list(p).await.unwrap();
    assert!(
        kvs.iter().all(|kv| kv.key != l.record("n1")),
        "no record yet"
    );
    let settings = validate::settings("s", SETTINGS.as_bytes()).unwrap();
    let taken = take_claim(
        &mut n1,
        l,
        &settings,
        &Snapshot::new(revision, kvs),
        "n1",
        Some(record("n1")),
    )
    .await
    .unwrap();
    assert_eq!(taken.rounds, 0, "adopted, not taken");
    n1.put(&l.record("n1"), record("n1"), 0).await.unwrap();
    // A grant again with allocation gives alloc/ back.
    s.grant(&["n1"]);
    assert_eq!(s.role("wiremesh-prod-n1").await, full);
    // The user has exactly its role.
    let user = s.admin_client().await.user_get("n1").await.unwrap();
    assert_eq!(user.roles(), ["wiremesh-prod-n1"]);
}

#[tokio::test]
async fn a_role_name_another_mesh_spells_the_same_way_is_refused_not_rewritten() {
    let s = Secured::start().await;
    // mesh "prod" node "x-a" and mesh "prod-x" node "a" both spell wiremesh-prod-x-a
    let (ok, _, err) = s.registry("prod-x", &["grant", "a"]);
    assert!(ok, "{err}");
    let before = s.role("wiremesh-prod-x-a").await;
    let (ok, _, err) = s.registry(MESH, &["grant", "x-a"]);
    assert!(!ok);
    assert!(
        err.contains("etcd role 'wiremesh-prod-x-a' already holds /wiremesh/prod-x/ (prefix) outside /wiremesh/prod/"),
        "{err}"
    );
    assert_eq!(s.role("wiremesh-prod-x-a").await, before);
    let users = s.admin_client().await.user_list().await.unwrap();
    assert!(!users.users().contains(&"x-a".to_string()), "{users:?}");
}

#[tokio::test]
async fn a_server_certificate_from_another_ca_or_for_another_name_is_refused_naming_tls() {
    let s = Secured::start().await;
    let mut config = s.config("n1");
    config.tls.as_mut().unwrap().ca = s.pki.path("other");
    let err = Etcd::connect(&config, s.layout.prefix())
        .await
        .err()
        .expect("a server signed by another CA was trusted");
    let text = err.to_string();
    assert!(matches!(err, EtcdError::Tls { .. }), "{text}");
    assert!(
        text.contains(&format!(
            "TLS with etcd at {} failed: invalid peer certificate: UnknownIssuer (etcd-ca must be",
            s.etcd.endpoint()
        )),
        "{text}"
    );
    // The server's certificate names 127.0.0.1 only: dialled as localhost, it is refused.
    let mut config = s.config("n1");
    config.endpoints = vec![format!("localhost:{}", s.etcd.member.spec.client.port())];
    let err = Etcd::connect(&config, s.layout.prefix())
        .await
        .err()
        .expect("a server certificate without the dialled name was trusted");
    assert!(
        matches!(&err, EtcdError::Tls { reason, .. }
            if reason.contains("certificate not valid for name \"localhost\"")),
        "{err}"
    );
}

#[tokio::test]
async fn a_client_certificate_from_another_ca_gets_no_request_through() {
    let s = Secured::start().await;
    // TLS 1.3 ends the client's side of the handshake before the server has checked the
    // client's certificate, so the refusal arrives as an alert or, when the client's first
    // request wins the race, as a connection closed under it: either way nothing passes.
    let err = Etcd::connect(&s.config("n1-other"), s.layout.prefix())
        .await
        .err()
        .expect("a client certificate from another CA was accepted");
    let text = err.to_string();
    assert!(
        matches!(&err, EtcdError::Tls { reason, .. } if reason == "received fatal alert: BadCertificate")
            || text.ends_with("broken pipe")
            || text.ends_with("connection closed"),
        "{text}"
    );
}

#[tokio::test]
async fn a_node_user_with_a_password_file_logs_in_and_its_old_password_is_refused_after_a_change() {
    let e = TestEtcd::start();
    e.enable_auth("rootpw").await;
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    };
    let (root_pw, first, second) = (
        file("root", "rootpw\n"),
        file("first", "first-secret\n"),
        file("second", "second-secret"),
    );
    let url = format!("etcd://{}", e.endpoint());
    let grant = |password: &str| {
        let out = common::wiremesh(&[
            "registry",
            "grant",
            "n3",
            "--password-file",
            password,
            "--registry",
            &url,
            "--mesh",
            MESH,
            "--etcd-user",
            "root",
            "--etcd-password-file",
            &root_pw,
        ]);
        assert!(out.status.success(), "{}", common::text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let out = grant(&first);
    assert!(
        out.contains("user 'n3' added with the password given"),
        "{out}"
    );
    let l = Layout::new(MESH).unwrap();
    let as_n3 = |password: &str| EtcdConfig {
        user: Some(("n3".into(), password.into())),
        ..e.config()
    };
    let mut n3 = Etcd::connect(&as_n3("first-secret"), l.prefix())
        .await
        .unwrap();
    n3.put(&l.record("n3"), record("n3"), 0).await.unwrap();
    assert_denied(
        n3.put(&l.record("n1"), record("n1"), 0).await,
        &l.record("n1"),
    );
    let out = grant(&second);
    assert!(
        out.contains("user 'n3' existed; its password is now the one given"),
        "{out}"
    );
    let err = Etcd::connect(&as_n3("first-secret"), l.prefix())
        .await
        .err()
        .expect("the old password still works");
    assert!(matches!(err, EtcdError::Auth { .. }), "{err}");
    Etcd::connect(&as_n3("second-secret"), l.prefix())
        .await
        .unwrap();
}

#[tokio::test]
async fn up_with_the_etcd_tls_flags_joins_as_its_certificates_user_and_a_wrong_ca_is_tls() {
    let s = Secured::start().await;
    let l = &s.layout;
    // The daemon stops right after the registry step: its UDP port is held here (no tun device
    // is made, so no root is needed).
    let held = std::net::UdpSocket::bind("[::]:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let settings = SETTINGS.replace("\"v\":1", &format!("\"v\":1,\"listen-port\":{port}"));
    s.as_user("root")
        .await
        .put(&l.settings(), settings.into_bytes(), 0)
        .await
        .unwrap();
    let joiner = common::Joiner::new();
    let url = format!("etcd://{}", s.etcd.endpoint());
    let path = |p: &Path| p.to_str().unwrap().to_string();
    let (cert, key) = (path(&s.pki.path("n1")), path(&s.pki.key_path("n1")));
    let up = |ca: &str| {
        let ca = path(&s.pki.path(ca));
        let (ok, err) = joiner.up(
            "wmauth0",
            &[
                "--registry",
                &url,
                "--mesh",
                MESH,
                "--etcd-ca",
                &ca,
                "--etcd-cert",
                &cert,
                "--etcd-key",
                &key,
            ],
        );
        assert!(!ok);
        err
    };
    // A CA that did not sign etcd's certificate: refused as TLS, not as an unreachable etcd
    // (which would send it looking for a snapshot).
    let err = up("other");
    assert!(
        err.contains(&format!(
            "TLS with etcd at {} failed: invalid peer certificate: UnknownIssuer",
            s.etcd.endpoint()
        )),
        "{err}"
    );
    assert!(!err.contains("no snapshot"), "{err}");
    let err = up("ca");
    assert!(
        err.contains(&format!("cannot listen on UDP port {port}")),
        "{err}"
    );
    // Past the registry: its record, claim and presence are in etcd, written as user n1.
    let mut root = s.as_user("root").await;
    let record = root
        .get(&l.record("n1"))
        .await
        .unwrap()
        .expect("n1's record");
    let text = String::from_utf8_lossy(&record.value);
    assert!(text.contains(&joiner.public_key.to_string()), "{text}");
    assert!(root.get(&l.claim("n1")).await.unwrap().is_some());
    assert!(root.get(&l.presence("n1")).await.unwrap().is_some());
}
