//! The cross-platform WireGuard UAPI: the line protocol the stock `wg` tool speaks over
//! `/var/run/wireguard/<ifname>.sock` to any userspace implementation
//! (<https://www.wireguard.com/xplatform/#configuration-protocol>). Serving it lets operators
//! inspect and adjust a wiremesh daemon with the tools they already know.
//!
//! - [`protocol`] turns the typed snapshots below into text and back; it does no I/O.
//! - [`server`] owns the socket file and answers `get=1` / `set=1` through a [`UapiHandler`].
//! - [`client`] is the other side, for `wiremesh status`.
//!
//! Keys travel as lowercase hex here, not base64 as in config files.

pub mod client;
pub mod protocol;
pub mod server;

pub use client::{configure, query};
pub use protocol::{ProtocolError, ProtocolErrorKind};
pub use server::{serve, UapiServer};

use crate::constants::UAPI_DIR;
use crate::core::key::{PrivateKey, PublicKey};
use ipnet::IpNet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// What the engine reports for `get=1`: one consistent snapshot of the device.
#[derive(Debug, Clone, Default)]
pub struct UapiDevice {
    pub private_key: Option<PrivateKey>,
    /// 0 when the device has no bound port; `wg` then prints no listening port.
    pub listen_port: u16,
    pub fwmark: Option<u32>,
    pub peers: Vec<UapiPeer>,
}

/// One peer in a [`UapiDevice`] snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UapiPeer {
    pub public_key: PublicKey,
    pub preshared_key: Option<[u8; 32]>,
    pub endpoint: Option<SocketAddr>,
    /// Wall-clock time, because that is what `wg` shows; `None` until the first handshake.
    pub last_handshake: Option<SystemTime>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    /// Seconds; `None` when off (the protocol's 0).
    pub persistent_keepalive: Option<u16>,
    pub allowed_ips: Vec<IpNet>,
}

impl UapiPeer {
    /// A peer with nothing but its key, for building snapshots field by field.
    pub fn new(public_key: PublicKey) -> Self {
        Self {
            public_key,
            preshared_key: None,
            endpoint: None,
            last_handshake: None,
            rx_bytes: 0,
            tx_bytes: 0,
            persistent_keepalive: None,
            allowed_ips: Vec::new(),
        }
    }
}

/// A parsed `set=1` request. Every field is a change to apply; absent fields leave the device
/// as it is. The whole request is parsed before the handler sees it, so a malformed request
/// changes nothing.
#[derive(Debug, Clone, Default)]
pub struct UapiSet {
    /// An all-zero key asks to remove the private key, as in wireguard-go.
    pub private_key: Option<PrivateKey>,
    pub listen_port: Option<u16>,
    /// 0 asks to clear the mark.
    pub fwmark: Option<u32>,
    /// Remove every peer not listed before applying `peers` (`wg setconf`).
    pub replace_peers: bool,
    pub peers: Vec<UapiPeerSet>,
}

/// The changes a `set=1` request makes to one peer, in request order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UapiPeerSet {
    pub public_key: PublicKey,
    /// Remove this peer; the other fields of this entry are then ignored.
    pub remove: bool,
    /// Change the peer only if it exists; never create it.
    pub update_only: bool,
    /// An all-zero key asks to remove the preshared key.
    pub preshared_key: Option<[u8; 32]>,
    pub endpoint: Option<SocketAddr>,
    /// Seconds; `Some(0)` turns keepalive off.
    pub persistent_keepalive: Option<u16>,
    /// Drop the peer's current allowed IPs before adding `allowed_ips`.
    pub replace_allowed_ips: bool,
    /// Canonical networks (host bits cleared), as the routing table stores them.
    pub allowed_ips: Vec<IpNet>,
}

impl UapiPeerSet {
    /// An entry that changes nothing yet.
    pub fn new(public_key: PublicKey) -> Self {
        Self {
            public_key,
            remove: false,
            update_only: false,
            preshared_key: None,
            endpoint: None,
            persistent_keepalive: None,
            replace_allowed_ips: false,
            allowed_ips: Vec::new(),
        }
    }
}

/// The engine's side of the socket. Both methods run on the server's connection task, so they
/// must return promptly (take a lock, copy, release) rather than wait on the data path.
pub trait UapiHandler: Send + Sync + 'static {
    /// A consistent snapshot of the device and its peers.
    fn get(&self) -> UapiDevice;
    /// Applies a parsed request; the error's [`UapiError::errno`] goes back to the client.
    fn set(&self, req: UapiSet) -> Result<(), UapiError>;
}

/// Where `wg` looks for interface `ifname`.
pub fn socket_path(ifname: &str) -> PathBuf {
    Path::new(UAPI_DIR).join(format!("{ifname}.sock"))
}

/// Why a UAPI operation failed, on either side of the socket.
#[derive(Debug, thiserror::Error)]
pub enum UapiError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("is the daemon running? no socket at {}", path.display())]
    NoSocket { path: PathBuf },
    #[error("{}: another daemon is already listening on this socket", path.display())]
    InUse { path: PathBuf },
    #[error("{}: exists and is not a socket; refusing to replace it", path.display())]
    NotASocket { path: PathBuf },
    #[error("{}: {source}", path.display())]
    Reply {
        path: PathBuf,
        #[source]
        source: ProtocolError,
    },
    #[error("{}: the daemon refused the request (errno {errno})", path.display())]
    Refused { path: PathBuf, errno: i32 },
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// For handlers: the request is well-formed but cannot be applied.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// For handlers: the requested listen port is taken.
    #[error("listen port {0} is already in use")]
    PortInUse(u16),
}

impl From<crate::io::private_socket::BindError> for UapiError {
    fn from(e: crate::io::private_socket::BindError) -> Self {
        use crate::io::private_socket::BindError;
        match e {
            BindError::Io { path, source } => UapiError::Io { path, source },
            BindError::InUse { path } => UapiError::InUse { path },
            BindError::NotASocket { path } => UapiError::NotASocket { path },
        }
    }
}

impl UapiError {
    /// The negative errno the server answers with, using wireguard-go's choices so that `wg`
    /// prints the same message for the same fault.
    pub fn errno(&self) -> i32 {
        match self {
            UapiError::Io { .. } => -libc::EIO,
            UapiError::Protocol(e) | UapiError::Reply { source: e, .. } => e.errno(),
            UapiError::Invalid(_) => -libc::EINVAL,
            UapiError::PortInUse(_) => -libc::EADDRINUSE,
            UapiError::Refused { errno, .. } => *errno,
            UapiError::NoSocket { .. } | UapiError::InUse { .. } | UapiError::NotASocket { .. } => {
                -libc::ENOANO
            }
        }
    }
}
