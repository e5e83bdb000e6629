//! Real etcd members for the lab and the tests (Debian's `etcd-server`, `/usr/bin/etcd`): the
//! command line, a data directory of our own, readiness by etcd's own `/health`, and a stop by
//! pid and start time, like the daemons (a recycled pid is never signalled).
//!
//! A member runs either on loopback (tests of the driver, ports chosen by the kernel, never 2379
//! which a packaged service may hold) or inside a lab namespace.

use super::daemons::{alive, signal, start_time, Signal};
use super::state::DaemonPid;
use super::{io_at, LabError};
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian's package puts the server.
pub const ETCD_BIN: &str = "/usr/bin/etcd";
/// How long a member has to answer `/health` after it starts (a three-member cluster elects its
/// leader only once a quorum is up).
pub const ETCD_READY_TIMEOUT: Duration = Duration::from_secs(20);

/// One member as the lab records it in `state.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberSpec {
    pub name: String,
    pub client: SocketAddr,
    pub peer: SocketAddr,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    /// The namespace it runs in, or `None` for the caller's (loopback).
    pub netns: Option<String>,
    /// Every member's name and peer address: the initial cluster.
    pub cluster: Vec<(String, SocketAddr)>,
    /// The cluster token: unique per lab, so members of two labs never join each other.
    pub token: String,
    /// TLS on the client port; `None`: plain HTTP/2. Peers always speak plain HTTP (loopback, or
    /// the lab's core namespace).
    #[serde(default)]
    pub tls: Option<MemberTls>,
}

/// A member's client TLS: its certificate, and the CA whose client certificates it demands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberTls {
    /// Server certificate and key (PEM); the certificate names the client address as a SAN.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// `--client-cert-auth --trusted-ca-file`: every client must show a certificate this CA
    /// signed, and with auth enabled etcd takes its CN as the user (no password, no token).
    pub client_ca: Option<PathBuf>,
    /// Plain-HTTP `/health` (`--listen-metrics-urls`): the client port now demands TLS, and a
    /// client certificate, which the readiness probe does not have.
    pub health: SocketAddr,
}

impl MemberTls {
    /// TLS for a loopback member, its `/health` on a free loopback port.
    pub fn loopback(
        cert: PathBuf,
        key: PathBuf,
        client_ca: Option<PathBuf>,
    ) -> Result<Self, LabError> {
        Ok(MemberTls {
            cert,
            key,
            client_ca,
            health: free_loopback_port()?,
        })
    }
}

impl MemberSpec {
    /// The command line: `[ip netns exec NS] /usr/bin/etcd --name … `. The snapshot count and
    /// the backend quota are etcd's defaults; `--unsafe-no-fsync` is not used, the data
    /// directory lives on tmpfs instead.
    pub fn command(&self) -> Command {
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, ETCD_BIN]);
                c
            }
            None => Command::new(ETCD_BIN),
        };
        let cluster: Vec<String> = self
            .cluster
            .iter()
            .map(|(name, peer)| format!("{name}=http://{peer}"))
            .collect();
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        cmd.arg("--name")
            .arg(&self.name)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--listen-client-urls")
            .arg(format!("{scheme}://{}", self.client))
            .arg("--advertise-client-urls")
            .arg(format!("{scheme}://{}", self.client))
            .arg("--listen-peer-urls")
            .arg(format!("http://{}", self.peer))
            .arg("--initial-advertise-peer-urls")
            .arg(format!("http://{}", self.peer))
            .arg("--initial-cluster")
            .arg(cluster.join(","))
            .arg("--initial-cluster-token")
            .arg(&self.token)
            .arg("--initial-cluster-state")
            .arg("new")
            // Quiet the log to what an operator needs.
            .args(["--logger", "zap", "--log-level", "warn"]);
        if let Some(tls) = &self.tls {
            cmd.arg("--cert-file")
                .arg(&tls.cert)
                .arg("--key-file")
                .arg(&tls.key)
                .arg("--listen-metrics-urls")
                .arg(format!("http://{}", tls.health));
            if let Some(ca) = &tls.client_ca {
                cmd.arg("--client-cert-auth")
                    .arg("--trusted-ca-file")
                    .arg(ca);
            }
        }
        cmd.env_clear().env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
        cmd
    }
}

/// A member this process started.
#[derive(Debug)]
pub struct Member {
    pub spec: MemberSpec,
    pub pid: DaemonPid,
    child: Option<Child>,
}

impl Member {
    /// Starts the member, output appended to its log.
    pub fn start(spec: MemberSpec) -> Result<Self, LabError> {
        std::fs::create_dir_all(&spec.data_dir).map_err(io_at(&spec.data_dir))?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&spec.log)
            .map_err(io_at(&spec.log))?;
        let err_log = log.try_clone().map_err(io_at(&spec.log))?;
        let child = spec
            .command()
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err_log)
            .spawn()
            .map_err(|e| LabError::Command {
                command: format!("{ETCD_BIN} --name {}", spec.name),
                stderr: e.to_string(),
            })?;
        let pid = child.id();
        Ok(Member {
            pid: DaemonPid {
                pid,
                start_time: start_time(pid).unwrap_or(0),
            },
            spec,
            child: Some(child),
        })
    }

    /// A member started by another process (`lab down` finds it in `state.json`).
    pub fn recorded(spec: MemberSpec, pid: DaemonPid) -> Self {
        Member {
            spec,
            pid,
            child: None,
        }
    }

    pub fn is_running(&self) -> bool {
        alive(self.pid)
    }

    /// Sends a signal if the pid still names the process started (SIGSTOP freezes the member:
    /// an etcd that hangs rather than refuses).
    pub fn signal(&self, sig: Signal) -> bool {
        signal(self.pid, sig)
    }

    /// Waits until `/health` says true; fails with the log's tail when the member exits first
    /// or the time runs out.
    pub fn wait_healthy(&mut self, timeout: Duration) -> Result<(), LabError> {
        let deadline = Instant::now() + timeout;
        loop {
            if health(&self.spec)? {
                return Ok(());
            }
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    return Err(self.error(&format!("exited ({status}) before it was healthy")));
                }
            } else if !self.is_running() {
                return Err(self.error("is not running"));
            }
            if Instant::now() >= deadline {
                return Err(self.error(&format!("was not healthy within {timeout:?}")));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL and reap (etcd's data directory survives a kill; a restart reads it).
    pub fn kill(&mut self) {
        self.signal(Signal::Cont);
        self.signal(Signal::Kill);
        if let Some(c) = self.child.as_mut() {
            let _ = c.wait();
        } else {
            let deadline = Instant::now() + Duration::from_secs(5);
            while self.is_running() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    /// Starts the member again on its data directory, as after a crash.
    pub fn restart(&mut self) -> Result<(), LabError> {
        self.kill();
        *self = Member::start(self.spec.clone())?;
        Ok(())
    }

    fn error(&self, what: &str) -> LabError {
        let text = std::fs::read_to_string(&self.spec.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        LabError::Daemon {
            node: format!("etcd member {}", self.spec.name),
            what: what.to_string(),
            log_tail: lines[lines.len().saturating_sub(20)..].join("\n"),
        }
    }
}

/// Whether the member answers `GET /health` with `"health":"true"`; connection failures are
/// `false` (not up yet), a namespace that cannot be entered is an error.
fn health(spec: &MemberSpec) -> Result<bool, LabError> {
    let addr = spec.tls.as_ref().map_or(spec.client, |t| t.health);
    let probe = move || -> bool {
        let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let request = format!("GET /health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        if s.write_all(request.as_bytes()).is_err() {
            return false;
        }
        let mut answer = Vec::new();
        let _ = s.take(64 * 1024).read_to_end(&mut answer);
        let answer = String::from_utf8_lossy(&answer);
        answer.contains("\"health\":\"true\"")
    };
    match &spec.netns {
        Some(ns) => super::netns::in_netns(ns, probe)
            .join()
            .unwrap_or(Ok(false)),
        None => Ok(probe()),
    }
}

/// A loopback member for tests: free ports from the kernel, data under `dir`.
pub fn loopback_spec(name: &str, dir: &Path, token: &str) -> Result<MemberSpec, LabError> {
    let client = free_loopback_port()?;
    let peer = free_loopback_port()?;
    Ok(MemberSpec {
        name: name.to_string(),
        client,
        peer,
        data_dir: dir.join(format!("{name}.etcd")),
        log: dir.join(format!("{name}.log")),
        netns: None,
        cluster: vec![(name.to_string(), peer)],
        token: token.to_string(),
        tls: None,
    })
}

/// A loopback port nobody holds right now (bound, then released). A race with another process
/// shows up as etcd failing to bind, which [`Member::wait_healthy`] reports.
fn free_loopback_port() -> Result<SocketAddr, LabError> {
    let socket = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| LabError::Command {
        command: "bind 127.0.0.1:0".into(),
        stderr: e.to_string(),
    })?;
    socket.local_addr().map_err(|e| LabError::Command {
        command: "getsockname".into(),
        stderr: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_namespaced_member_runs_under_ip_netns_exec_with_the_whole_cluster() {
        let peer = |n: u8| SocketAddr::from(([172, 29, 0, n], 2380));
        let spec = MemberSpec {
            name: "e1".into(),
            client: "172.29.0.1:2379".parse().unwrap(),
            peer: peer(1),
            data_dir: "/run/wiremesh-lab/p/etcd/e1".into(),
            log: "/run/wiremesh-lab/p/logs/etcd-e1.log".into(),
            netns: Some("p-core".into()),
            cluster: vec![("e1".into(), peer(1)), ("e2".into(), peer(2))],
            token: "p".into(),
            tls: None,
        };
        let cmd = spec.command();
        assert_eq!(cmd.get_program(), "ip");
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(&args[..4], ["netns", "exec", "p-core", ETCD_BIN]);
        let at = |flag: &str| &args[args.iter().position(|a| a == flag).unwrap() + 1];
        assert_eq!(
            at("--initial-cluster"),
            "e1=http://172.29.0.1:2380,e2=http://172.29.0.2:2380"
        );
        assert_eq!(at("--listen-client-urls"), "http://172.29.0.1:2379");
    }

    #[test]
    fn a_tls_member_serves_https_demands_client_certificates_and_answers_health_in_plain() {
        let mut spec = loopback_spec("e1", Path::new("/dev/shm/x"), "t").unwrap();
        spec.tls = Some(MemberTls {
            cert: "/t/server.pem".into(),
            key: "/t/server-key.pem".into(),
            client_ca: Some("/t/ca.pem".into()),
            health: "127.0.0.1:40001".parse().unwrap(),
        });
        let args: Vec<String> = spec
            .command()
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let at = |flag: &str| &args[args.iter().position(|a| a == flag).unwrap() + 1];
        assert_eq!(
            at("--listen-client-urls"),
            &format!("https://{}", spec.client)
        );
        assert_eq!(at("--trusted-ca-file"), "/t/ca.pem");
        assert_eq!(at("--listen-metrics-urls"), "http://127.0.0.1:40001");
        assert!(args.iter().any(|a| a == "--client-cert-auth"));
        assert!(at("--initial-cluster").starts_with("e1=http://"));
    }
}
