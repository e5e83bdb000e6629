//! Every protocol and policy constant in one place, with units in their types.

use std::time::Duration;

/// The port WireGuard deployments conventionally listen on.
pub const DEFAULT_LISTEN_PORT: u16 = 51820;

/// Bytes WireGuard adds to an inner packet over an IPv4 underlay:
/// 20 (IPv4) + 8 (UDP) + 32 (WireGuard data header and Poly1305 tag).
pub const OVERHEAD_V4: u16 = 60;

/// Bytes WireGuard adds over an IPv6 underlay: 40 (IPv6) + 8 (UDP) + 32.
pub const OVERHEAD_V6: u16 = 80;

/// Underlay MTU assumed when a region does not say otherwise.
pub const DEFAULT_UNDERLAY_MTU: u16 = 1500;

/// The smallest MTU IPv6 guarantees; no tunnel MTU is ever set below it.
pub const MIN_TUNNEL_MTU: u16 = 1280;

/// How often the engine drives each `Tunn`'s timers (handshake retry, keepalive, rekey).
/// boringtun's own device uses 250 ms; finer costs CPU for no protocol benefit.
pub const TIMER_TICK: Duration = Duration::from_millis(250);

/// `SCHED_RR` priority of the outbound data-path thread (the bulk inbound one runs one above,
/// the fast lane two above): above
/// every normal task, as the kernel's own packet processing is, and below the kernel's threaded
/// interrupt handlers (50) and watchdogs.
pub const DATA_PATH_PRIORITY: u8 = 10;

/// Handshake messages with a valid MAC1 (initiations and responses) a node handles per second,
/// sustained, before it demands MAC2 and answers the rest with cookies (see
/// `engine/admission.rs`). A 64-node mesh coming up sends each node about 130 in its first
/// second; at 100 the excess was cookied and retried 5 s later. At 1,000 a flood's admitted
/// share costs about a tenth of a core (50–150 µs of Diffie-Hellman each).
pub const HANDSHAKE_RATE_LIMIT: u64 = 1_000;

/// How many of those may come at once (the token bucket's depth): a mesh's start-up burst
/// fits. Under a flood the rest are spread (one a millisecond at 1,000 a second): when a
/// whole second's allowance came at once (boringtun's count per second), the fast-lane thread
/// had about 100 ms of Diffie-Hellmans in a row each second, and pings behind them were lost
/// (`benches/handshake_flood.rs`: 4 of 251, p99 135 ms).
pub const HANDSHAKE_BURST: u64 = 256;

/// Under load, handshake messages with a valid MAC2 from one source address admitted per
/// second, and at once: an address that receives its cookies must still not buy a
/// Diffie-Hellman per packet. Kernel WireGuard and wireguard-go allow 20 a second, 5 at once.
pub const HANDSHAKE_PER_SOURCE_RATE: u64 = 20;
pub const HANDSHAKE_PER_SOURCE_BURST: u64 = 5;

/// Source addresses admission keeps a bucket for; past this, addresses quiet for a second are
/// forgotten, and with none such a new address is refused until one is.
pub const HANDSHAKE_SOURCES: usize = 4_096;

/// A session older than this is not used to pick between overlapping routes
/// (WireGuard's REJECT_AFTER_TIME).
pub const SESSION_FRESH: Duration = Duration::from_secs(180);

/// An awake peer whose keys can no longer carry data (no handshake within [`SESSION_FRESH`]),
/// and that sent and received nothing for this long, gives its session state back. The peer's
/// side of a session expires at the same age, so nothing it sends is lost by this.
pub const RELEASE_QUIET: Duration = Duration::from_secs(10);

/// Peers a daemon handshakes with at start-up, before any traffic asks for it: a mesh of this
/// size forms at once; beyond it (a hub with thousands of spokes) sessions start on demand,
/// so a start or a reload never sends thousands of initiations at once.
pub const EAGER_HANDSHAKES: usize = 256;

/// Lowest TTL for endpoint DNS answers, so a zero-TTL record cannot make us spin.
pub const MIN_DNS_REFRESH: Duration = Duration::from_secs(1);

/// Re-resolve interval used when a DNS lookup fails.
pub const DNS_RETRY: Duration = Duration::from_secs(10);

/// Largest datagram that counts as small: every handshake message (at most 148 bytes),
/// keepalives (32) and data datagrams whose inner packet is at most 224 bytes (pings, ACKs,
/// small queries). The receiver steers these to a receive lane of their own
/// ([`crate::io::lanes`]), so the sender never puts one at the tail of a GSO send of large
/// ones: the receiver's kernel would see the whole GSO packet's length (it arrives whole over
/// veth or a virtual NIC with USO) and steer it with the bulk.
pub const SMALL_DATAGRAM: usize = 256;

/// Largest inner packet that counts as small: encrypted, it becomes a datagram of at most
/// [`SMALL_DATAGRAM`] bytes (a data message adds a 16-byte header and a 16-byte tag). The tun
/// device steers these to a queue of their own ([`crate::io::tun_lanes`]).
pub const SMALL_PACKET: usize = SMALL_DATAGRAM - 32;

/// Largest datagram the engine handles: the largest IPv4/IPv6 packet plus WireGuard overhead.
pub const MAX_DATAGRAM: usize = 65_535 + 32;

/// Directory of the cross-platform WireGuard UAPI sockets that `wg` looks in.
pub const UAPI_DIR: &str = "/var/run/wireguard";

/// Where the daemon publishes each interface's node state for the CNI plugin:
/// `<dir>/<interface>/subnet.json` (`core::node_state`).
pub const CNI_STATE_DIR: &str = "/run/wiremesh";

/// Where container runtimes read CNI network configurations (`wiremesh cni install` writes
/// there; the daemon sweeps the networks it finds there that are its own).
pub const CNI_CONF_DIR: &str = "/etc/cni/net.d";

/// File name of the node state inside `<CNI_STATE_DIR>/<interface>/`.
pub const NODE_STATE_FILE: &str = "subnet.json";

/// Default tun interface name of a daemon.
pub const DEFAULT_INTERFACE: &str = "wm0";

/// Route protocol number tagging the routes wiremesh installs, so it removes only its own.
pub const ROUTE_PROTOCOL: u8 = 0x57; // 'W'

/// How long `wiremesh check` waits for each echo reply unless told otherwise.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// How long a rotated-out static key stays accepted after the switch to the new one, so
/// sessions in flight drain and late handshakes still complete.
pub const ROTATION_GRACE: Duration = Duration::from_secs(120);

/// The longest a rotation waits for every peer to acknowledge the new key before switching.
pub const ROTATION_ANNOUNCE_TIMEOUT: Duration = Duration::from_secs(10);

/// How often an unacknowledged key announcement is repeated.
pub const ROTATION_ANNOUNCE_RETRY: Duration = Duration::from_secs(1);

/// How long one pre-shared-key epoch lasts (with a mesh secret); clocks may disagree by up to
/// one epoch.
pub const PSK_EPOCH: Duration = Duration::from_secs(3600);

/// How long the registry's event stream must be quiet before the mirror is assembled: a join's
/// record, claim and presence arrive as one batch (docs/registry.md, section 2).
pub const REGISTRY_DEBOUNCE_QUIET: Duration = Duration::from_millis(100);

/// The longest an assembly waits behind a stream of events: a node churning its record cannot
/// make any daemon plan more than twice a second, nor stop it planning.
pub const REGISTRY_DEBOUNCE_MAX: Duration = Duration::from_millis(500);

/// The first wait after the registry connection breaks; doubled at each failure.
pub const REGISTRY_BACKOFF_MIN: Duration = Duration::from_millis(500);

/// The longest wait between reconnection attempts.
pub const REGISTRY_BACKOFF_MAX: Duration = Duration::from_secs(30);

/// How many rounds a joiner tries to take a pod CIDR before it gives up with an error: each
/// lost round means another joiner took the slot just chosen, so 64 losses in a row mean
/// something other than a race.
pub const REGISTRY_ALLOC_ROUNDS: u32 = 64;

/// The largest registry value parsed; larger ones are refused unread. Every honest value is a
/// few hundred bytes.
pub const REGISTRY_VALUE_MAX: usize = 4096;

/// The largest policy value (`/wiremesh/<mesh>/policy`: TOML text) parsed; larger ones are
/// refused unread. A rule is 100-200 bytes, so this holds 5,000 or more; it stays below etcd's
/// default `--max-request-bytes` (1.5 MiB), so `registry policy set` can always write it.
pub const REGISTRY_POLICY_MAX: usize = 1024 * 1024;

/// The most operations of one kind (compares, or puts and deletes) in one transaction: etcd's
/// default `--max-txn-ops`.
pub const REGISTRY_TXN_OPS: usize = 128;

/// How long one attempt to connect to an etcd member may take: long enough for a TLS handshake
/// across a continent, short enough that a dead member is passed over quickly.
pub const REGISTRY_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// How long one etcd request may take before it counts as a failure (a member without a leader
/// does not answer).
pub const REGISTRY_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Keys per page of a list: pages keep each answer under gRPC's message limit at any mesh size.
pub const REGISTRY_LIST_PAGE: i64 = 1000;

/// The presence lease's TTL, in seconds: a node gone this long shows as absent in `status`.
pub const REGISTRY_LEASE_TTL: i64 = 30;

/// How often the presence lease is renewed: three chances before it expires.
pub const REGISTRY_KEEPALIVE: Duration = Duration::from_secs(10);

/// Where the daemon keeps its registry snapshot by default (`<interface>.registry.json`):
/// persistent, because it is what a node starts from after a reboot while etcd is down.
pub const REGISTRY_SNAPSHOT_DIR: &str = "/var/lib/wiremesh";

/// How long a stopping daemon tries to mark itself `left` in the registry before it goes anyway.
pub const REGISTRY_LEAVE_TIMEOUT: Duration = Duration::from_secs(2);

// Network policy (docs/policy.md).

/// The most `[[policy]]` rules a topology may hold: the compiled index and the lints stay
/// bounded for any file, hostile or generated.
pub const POLICY_MAX_RULES: usize = 10_000;

/// The most entries in one rule's `ports`.
pub const POLICY_MAX_PORTS: usize = 64;

/// The most CIDRs in one `[cidr-set]` or one selector's `cidrs`.
pub const POLICY_MAX_CIDRS: usize = 4_096;

/// The most labels one node may carry; the registry's records have the same bound.
pub const POLICY_MAX_LABELS: usize = 32;

/// The most rule references the compiled index may store (rule lists per destination and port
/// interval, source-index entries): past it a policy is refused rather than take unbounded
/// memory. Ordinary policies of 1,000 rules use a few tens of thousands.
pub const POLICY_INDEX_BUDGET: usize = 4_000_000;

/// Connection-tracking entries by default: 64 bytes each, 4 MiB, allocated once.
pub const CONNTRACK_CAPACITY: usize = 65_536;

/// A TCP flow opened but not answered yet: covers four SYN retransmissions (1, 3, 7, 15 s).
pub const CONNTRACK_TCP_OPENING: Duration = Duration::from_secs(30);

/// An answered TCP flow with no packet for this long is forgotten; its next segment is judged
/// again by the rules in its own direction (and tracked again when they allow it).
pub const CONNTRACK_TCP_ESTABLISHED: Duration = Duration::from_secs(3600);

/// A TCP flow after a FIN: long enough for the other side's FIN and the last ACK.
pub const CONNTRACK_TCP_CLOSING: Duration = Duration::from_secs(60);

/// A TCP flow after a RST.
pub const CONNTRACK_TCP_RESET: Duration = Duration::from_secs(10);

/// A UDP (or other protocol's) flow not answered yet; also ICMP echo.
pub const CONNTRACK_UNREPLIED: Duration = Duration::from_secs(30);

/// A UDP (or other protocol's) flow that has been answered.
pub const CONNTRACK_REPLIED: Duration = Duration::from_secs(180);

/// The later fragments of an allowed datagram pass for this long after its first fragment.
pub const CONNTRACK_FRAGMENTS: Duration = Duration::from_secs(10);

/// A flow a reload denied stays denied, in both directions, until quiet for this long.
pub const CONNTRACK_REVOKED: Duration = Duration::from_secs(60);

/// Policy rejections answered with ICMP "administratively prohibited" per second, per node;
/// beyond it a rejected packet is only dropped, so a flood of denied SYNs is not echoed.
pub const POLICY_REJECTS_PER_SECOND: u32 = 100;

/// Log lines of `log` rules and audit mode's "would deny" per second, per node.
pub const POLICY_NOTICES_PER_SECOND: u32 = 20;
