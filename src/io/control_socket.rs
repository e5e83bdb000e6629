//! The wiremesh control socket, `/var/run/wiremesh/<ifname>.sock`: what the WireGuard UAPI
//! has no words for (discovered path MTUs, and operations such as key rotation). One JSON
//! request per line, one JSON answer per line; the socket is 0600, so only root may ask.

use crate::io::private_socket::{self, BindError, PrivateSocket};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::task::{JoinHandle, JoinSet};

/// Where control sockets live (beside, not inside, WireGuard's UAPI directory).
pub const CONTROL_DIR: &str = "/var/run/wiremesh";

/// Longest request line accepted.
const MAX_REQUEST: u64 = 64 * 1024;

pub fn socket_path(ifname: &str) -> PathBuf {
    Path::new(CONTROL_DIR).join(format!("{ifname}.sock"))
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum ControlRequest {
    Status,
    /// Rotate this node's static key now (new key persisted first, then announced).
    Rotate,
}

/// One peer's path as the engine sees it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PeerPathStatus {
    pub name: String,
    pub public_key: String,
    /// Tunnel MTU the data path enforces for this peer.
    pub mtu: u16,
    /// True once discovery measured the path; false while the plan's estimate applies.
    pub discovered: bool,
    /// Seconds since a probe last confirmed the MTU.
    pub mtu_confirmed_secs_ago: Option<f64>,
    /// Whether the peer answers wiremesh control messages (a stock WireGuard peer does not).
    pub speaks_control: bool,
    pub probes_sent: u64,
    /// Short fingerprint of the peer's newest static key.
    #[serde(default)]
    pub key_fingerprint: String,
    /// Seconds since that key was configured or announced.
    #[serde(default)]
    pub key_age_secs: f64,
    /// The peer's previous key while its rotation's grace window lasts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_key: Option<String>,
    /// Whether outgoing traffic uses a session under both sides' newest keys (false while a
    /// rotation's new session is not up yet).
    #[serde(default)]
    pub on_newest_keys: bool,
    /// Outer bytes of those probes on the underlay.
    #[serde(default)]
    pub probe_bytes: u64,
    /// `up`, `down` or `returning`: whether the peer answers what is sent to it.
    #[serde(default)]
    pub health: String,
    /// Times the peer stopped answering (each moved its shared ranges to another carrier).
    #[serde(default)]
    pub downs: u64,
    /// How the peer is reached: `private <scope>`, `public`, `punched` (an address an
    /// introducer gave, that answered), `learnt`, `relayed via <node>` or `none` (docs/nat.md).
    #[serde(default)]
    pub path: String,
    /// Hole punches started towards the peer, and those that reached it (docs/nat.md, 3).
    #[serde(default)]
    pub punch_attempts: u64,
    #[serde(default)]
    pub punch_successes: u64,
    /// The peer's configured endpoints, best first, `address (scope)`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub candidates: Vec<String>,
    /// Packets from another address refused while a private endpoint was in use.
    #[serde(default)]
    pub roam_refused: u64,
    /// Times the peer was tried at its next endpoint after it stopped answering.
    #[serde(default)]
    pub endpoint_failovers: u64,
    /// Ranges several peers carry (the hubs of a region) that this peer carries now.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub carries: Vec<String>,
    /// Ranges several peers carry for which this peer stands by.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub standby_for: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DaemonStatus {
    pub node: String,
    pub interface: String,
    pub public_key: String,
    pub tun_mtu: u16,
    pub peers: Vec<PeerPathStatus>,
    /// Seconds since this node's newest key came into use.
    #[serde(default)]
    pub key_age_secs: f64,
    /// `stable`, `announced` or `switched`.
    #[serde(default)]
    pub rotation: String,
    /// Own-key rotations since the daemon started.
    #[serde(default)]
    pub rotations: u64,
    /// Pre-shared-key epoch in use; absent without a mesh secret.
    #[serde(default)]
    pub psk_epoch: Option<u64>,
    /// Peers holding session state now; the others are idle records.
    #[serde(default)]
    pub awake_peers: usize,
    /// Packets this node relayed from one peer to another inside its engine (a hub, or a
    /// full mesh's relay for a NATed pair).
    #[serde(default)]
    pub forwarded_packets: u64,
    /// The network policy in force (absent from daemons before policy existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<super::policy_status::PolicyStatus>,
    /// The NAT in front of this node, as its public peers see it (docs/nat.md, section 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nat: Option<NatStatus>,
}

/// What public peers see of this node's address.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NatStatus {
    /// `unknown`, `none`, `independent` or `dependent`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The address any peer can reach this node at, when the NAT shows one to all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reflexive: Option<std::net::SocketAddr>,
    /// Each asked peer's answer: `peer` → the address it sees.
    #[serde(default)]
    pub seen_by: std::collections::BTreeMap<String, std::net::SocketAddr>,
}

impl NatStatus {
    /// One line for `wiremesh status`: "nat independent  reflexive 198.51.100.7:40001  seen
    /// by hub-a, hub-b".
    pub fn render(&self) -> String {
        let mut line = format!("nat {}", self.kind);
        if let Some(r) = self.reflexive {
            line.push_str(&format!("  reflexive {r}"));
        }
        if !self.seen_by.is_empty() {
            let seen: Vec<String> = self
                .seen_by
                .iter()
                .map(|(p, a)| format!("{p} {a}"))
                .collect();
            line.push_str(&format!("  seen as: {}", seen.join(", ")));
        }
        line.push('\n');
        line
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ControlResponse {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<DaemonStatus>,
    /// The new public key, after a `rotate` request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotated: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

pub trait ControlHandler: Send + Sync + 'static {
    fn handle(&self, req: ControlRequest) -> ControlResponse;
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(transparent)]
    Bind(#[from] BindError),
    #[error("is the daemon running? no control socket at {}", path.display())]
    NoSocket { path: PathBuf },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: unreadable answer: {source}", path.display())]
    Decode {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("the daemon refused: {0}")]
    Refused(String),
}

/// A running control server; dropping it stops serving and removes the socket.
pub struct ControlServer {
    _socket: PrivateSocket,
    task: JoinHandle<()>,
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn serve(
    path: &Path,
    handler: Arc<dyn ControlHandler>,
) -> Result<ControlServer, ControlError> {
    let (listener, socket) = private_socket::bind(path).await?;
    Ok(ControlServer {
        _socket: socket,
        task: tokio::spawn(accept_loop(listener, handler)),
    })
}

async fn accept_loop(listener: UnixListener, handler: Arc<dyn ControlHandler>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => { conns.spawn(connection(stream, handler.clone())); }
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
            },
            Some(_) = conns.join_next() => {}
        }
    }
}

async fn connection(stream: UnixStream, handler: Arc<dyn ControlHandler>) {
    let (rd, mut wr) = stream.into_split();
    let mut lines = BufReader::new(rd.take(MAX_REQUEST)).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let answer = match serde_json::from_str::<ControlRequest>(&line) {
            Ok(req) => handler.handle(req),
            Err(e) => ControlResponse {
                error: Some(format!("bad request: {e}")),
                ..Default::default()
            },
        };
        let mut text = serde_json::to_string(&answer).unwrap_or_else(|_| "{}".into());
        text.push('\n');
        if wr.write_all(text.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// Sends one request and waits for its answer.
pub async fn request(path: &Path, req: &ControlRequest) -> Result<ControlResponse, ControlError> {
    let io = |source| ControlError::Io {
        path: path.to_path_buf(),
        source,
    };
    let stream = UnixStream::connect(path)
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                ControlError::NoSocket {
                    path: path.to_path_buf(),
                }
            }
            _ => io(e),
        })?;
    let (rd, mut wr) = stream.into_split();
    let mut line = serde_json::to_string(req).expect("requests always serialize");
    line.push('\n');
    wr.write_all(line.as_bytes()).await.map_err(io)?;
    let mut answer = String::new();
    BufReader::new(rd.take(16 << 20))
        .read_line(&mut answer)
        .await
        .map_err(io)?;
    let resp: ControlResponse =
        serde_json::from_str(&answer).map_err(|source| ControlError::Decode {
            path: path.to_path_buf(),
            source,
        })?;
    match resp.error {
        Some(e) => Err(ControlError::Refused(e)),
        None => Ok(resp),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed;
    impl ControlHandler for Fixed {
        fn handle(&self, req: ControlRequest) -> ControlResponse {
            assert_eq!(req, ControlRequest::Status);
            ControlResponse {
                status: Some(DaemonStatus {
                    node: "a".into(),
                    interface: "wm0".into(),
                    public_key: "k".into(),
                    tun_mtu: 1440,
                    peers: vec![PeerPathStatus {
                        name: "b".into(),
                        public_key: "kb".into(),
                        mtu: 1340,
                        discovered: true,
                        mtu_confirmed_secs_ago: Some(1.5),
                        speaks_control: true,
                        probes_sent: 9,
                        probe_bytes: 13_000,
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                ..Default::default()
            }
        }
    }

    #[tokio::test]
    async fn a_status_request_round_trips_and_garbage_gets_an_error_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wm0.sock");
        let server = serve(&path, Arc::new(Fixed)).await.unwrap();
        let resp = request(&path, &ControlRequest::Status).await.unwrap();
        assert_eq!(resp.status.unwrap().peers[0].mtu, 1340);
        let mut s = UnixStream::connect(&path).await.unwrap();
        s.write_all(b"{not json\n").await.unwrap();
        let mut answer = String::new();
        BufReader::new(s).read_line(&mut answer).await.unwrap();
        assert!(answer.contains("bad request"), "{answer}");
        drop(server);
        assert!(!path.exists());
        assert!(matches!(
            request(&path, &ControlRequest::Status).await,
            Err(ControlError::NoSocket { .. })
        ));
    }
}
