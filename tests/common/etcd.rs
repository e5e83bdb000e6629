//! A real etcd member on loopback for one test: its own ports and a data directory on tmpfs
//! (`/dev/shm`: every etcd write is an fsync), killed by pid and removed when dropped, also when
//! the test panics. A missing `/usr/bin/etcd` fails the test (scripts/install-deps installs it).

#![allow(dead_code)] // each test crate uses a different subset

use std::path::PathBuf;
use std::time::Duration;
use wiremesh::io::etcd::{EtcdConfig, TlsFiles};
use wiremesh::lab::etcd::{loopback_spec, Member, MemberTls, ETCD_BIN, ETCD_READY_TIMEOUT};

pub struct TestEtcd {
    pub member: Member,
    dir: PathBuf,
}

impl TestEtcd {
    /// Starts a one-member cluster and waits until it is healthy.
    pub fn start() -> TestEtcd {
        Self::start_with(None)
    }

    /// A member that speaks TLS with `cert` and `key`, and demands client certificates signed
    /// by `client_ca` (`--client-cert-auth`).
    pub fn start_tls(cert: PathBuf, key: PathBuf, client_ca: PathBuf) -> TestEtcd {
        Self::start_with(Some(
            MemberTls::loopback(cert, key, Some(client_ca)).unwrap(),
        ))
    }

    fn start_with(tls: Option<MemberTls>) -> TestEtcd {
        assert!(
            std::path::Path::new(ETCD_BIN).exists(),
            "{ETCD_BIN} is missing: run scripts/install-deps (Debian's etcd-server)"
        );
        let token = crate::common::unique_prefix();
        let dir = PathBuf::from(format!("/dev/shm/wiremesh-test-etcd-{token}"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut spec = loopback_spec("e1", &dir, &token).unwrap();
        spec.tls = tls;
        let member = Member::start(spec).unwrap();
        let mut etcd = TestEtcd { member, dir };
        etcd.member.wait_healthy(ETCD_READY_TIMEOUT).unwrap();
        etcd
    }

    /// `127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        self.member.spec.client.to_string()
    }

    pub fn config(&self) -> EtcdConfig {
        EtcdConfig {
            endpoints: vec![self.endpoint()],
            ..EtcdConfig::default()
        }
    }

    /// A TLS client trusting `ca`, showing the certificate `cert` with its `key` (both or none).
    pub fn tls_config(
        &self,
        ca: PathBuf,
        cert: Option<PathBuf>,
        key: Option<PathBuf>,
    ) -> EtcdConfig {
        EtcdConfig {
            tls: Some(TlsFiles { ca, cert, key }),
            ..self.config()
        }
    }

    /// `wiremesh registry ARGS --registry etcd://THIS --mesh MESH`: success, stdout, stderr.
    pub fn registry(&self, mesh: &str, args: &[&str]) -> (bool, String, String) {
        let url = format!("etcd://{}", self.endpoint());
        let mut all = vec!["registry"];
        all.extend_from_slice(args);
        all.extend(["--registry", &url, "--mesh", mesh]);
        let out = crate::common::wiremesh(&all);
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Turns etcd's authentication on with user `root` (role `root`) and `password`, as an
    /// administrator does before granting nodes their roles.
    pub async fn enable_auth(&self, password: &str) {
        let mut admin = etcd_client::Client::connect([format!("http://{}", self.endpoint())], None)
            .await
            .unwrap();
        admin.user_add("root", password, None).await.unwrap();
        admin.role_add("root").await.unwrap();
        admin.user_grant_role("root", "root").await.unwrap();
        admin.auth_enable().await.unwrap();
    }

    /// Kills the member and starts it again on its data directory.
    pub fn restart(&mut self) {
        self.member.restart().unwrap();
        self.member
            .wait_healthy(ETCD_READY_TIMEOUT + Duration::from_secs(10))
            .unwrap();
    }
}

impl Drop for TestEtcd {
    fn drop(&mut self) {
        self.member.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
