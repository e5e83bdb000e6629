//! `wiremesh-cni`, the CNI plugin of a wiremesh node (spec 1.0.0, plus 1.1.0's STATUS and GC).
//!
//! A meta plugin in flannel's shape: it reads the node state the running daemon publishes
//! (`subnet.json`: pod CIDRs, gateways, cluster CIDRs, tunnel MTU) and delegates the
//! container's interface to the reference `bridge` plugin and its addresses to `host-local`,
//! adding only what they cannot know: the tunnel MTU, the routes to the cluster, and
//! masquerade that spares the whole cluster rather than this node's pods alone.
//!
//! Files, in the order an invocation meets them: `env` (the `CNI_*` variables), `config` (the
//! network configuration, and the delegate's built from it), `state` (the daemon's node
//! state), `plugin` (dispatch, STATUS, GC), `attach` (ADD, DEL), `check` (CHECK, with
//! `netns` for the MTU inside the container), `delegate` (running a reference plugin, with
//! `version_cache` remembering what each one speaks), `cache`
//! (each attachment's delegate configuration), `masq` (nftables), `gc` (host-local's store),
//! `spec` and `error` (the wire types and codes). The daemon uses two more at start:
//! `conflists` (which networks in the runtime's directory are its own) and `stale` (freeing
//! the addresses of containers gone without a DEL).

pub mod attach;
pub mod cache;
pub mod check;
pub mod config;
pub mod conflists;
pub mod delegate;
pub mod env;
pub mod error;
pub mod gc;
pub mod masq;
pub mod netns;
pub mod plugin;
pub mod spec;
pub mod stale;
pub mod state;
pub mod version_cache;

pub use error::CniError;
