//! The data plane: tun ⇄ `Tunn` ⇄ UDP.
//!
//! The engine itself does no I/O and reads no clock. [`Device::handle_tun_packet`],
//! [`Device::handle_datagram`] and [`Device::tick`] take bytes and the time in and push what
//! must be sent into a [`Sink`]; the daemon's I/O
//! loops own the tun device and the UDP socket, feed the engine and flush the sink. A sink is a
//! batch, so sending many packets with one syscall (UDP GSO, tun GRO) is a change of the flush,
//! not of the engine; and two engines can be wired together in memory for tests.
//!
//! Call order per I/O event: `handle_*` (any number of times) → flush the sink. Call `tick`
//! every [`crate::constants::TIMER_TICK`].

mod admission;
mod candidates;
mod confirm;
mod control_exchange;
/// Public only for the fuzz targets (`fuzz/`), which check that what parses rebuilds.
#[doc(hidden)]
pub mod control_message;
mod counters;
mod device;
mod firewall;
mod idle;
mod inbound;
mod liveness;
mod node;
mod outbound;
mod own_keys;
mod path_mtu;
mod peer;
mod peer_sessions;
mod peers;
mod psk;
mod punch;
mod reflexive;
mod rotation;
mod scratch;
mod session;
mod session_life;
mod sink;
mod table;
mod timers;

pub use candidates::CandidatesView;
pub use counters::DropReason;
pub use device::Device;
pub use firewall::TableUse;
pub use liveness::PeerLiveness;
pub use path_mtu::{MtuCause, PathEvent, IDLE_AFTER};
pub use peer::{Peer, PeerConfig, PeerSnapshot};
pub use psk::PskSettings;
pub use punch::PunchView;
pub use reflexive::{NatType, NatView};
pub use scratch::Scratch;
pub use session::{Session, SessionGuard, SessionKeys};
pub use sink::{Batch, Run, Runs, Sink, MAX_GSO_BYTES};
pub use table::PeerTable;

#[cfg(test)]
mod admission_tests;
#[cfg(test)]
mod apply_tests;
#[cfg(test)]
mod candidates_tests;
#[cfg(test)]
mod confirm_tests;
#[cfg(test)]
mod firewall_tests;
#[cfg(test)]
mod hub_tests;
#[cfg(test)]
mod idle_tests;
#[cfg(test)]
mod memory_tests;
#[cfg(test)]
mod psk_tests;
#[cfg(test)]
mod relay_tests;
#[cfg(test)]
mod rotation_tests;

/// A peer with a fresh key and the given endpoint, for tests of the drivers around the engine.
#[cfg(test)]
pub(crate) fn peer_for_tests(
    endpoint: Option<crate::core::topology::Endpoint>,
) -> std::sync::Arc<Peer> {
    let their = crate::io::keyfile::generate().public_key();
    let config = peer::PeerConfig {
        name: "test-peer".into(),
        endpoint,
        candidates: vec![],
        allowed_ips: vec![],
        persistent_keepalive: None,
        overlay_addrs: vec![],
        mtu: 1420,
    };
    std::sync::Arc::new(Peer::new(1, their, config, std::time::Instant::now()))
}
