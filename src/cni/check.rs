//! CHECK: `bridge` (and through it `host-local`) confirm the interfaces, addresses, routes and
//! reservations of the previous result; then the container's MTU is held against the tunnel
//! MTU the daemon derives now. A container made before the tunnel MTU shrank would send
//! packets the mesh must refuse, so it is reported for the runtime to recreate. The masquerade
//! chain is confirmed too: the spec counts firewall rules among what CHECK covers.

use super::attach::{known_conf, require_netns, with_prev_result, Delegates};
use super::config::NetConf;
use super::env::Invocation;
use super::error::CniError;
use super::masq;
use super::netns::mtu_in;
use super::spec::Command;
use super::state::NodeState;

pub fn check(inv: &Invocation, conf: &NetConf) -> Result<(), CniError> {
    require_netns(inv)?;
    if conf.prev_result.is_none() {
        return Err(CniError::config(
            "prevResult",
            "missing: CHECK needs the result of ADD",
        ));
    }
    // The daemon is a dependency of the container's connectivity: without it, CHECK fails.
    let state = NodeState::load(&conf.subnet_file)?;
    let delegates = Delegates::find(inv)?;
    let bconf = known_conf(inv, conf)?.ok_or_else(|| CniError::NoNodeState {
        path: conf.subnet_file.clone(),
    })?;
    delegates
        .bridge
        .run(Command::Check, inv, &with_prev_result(bconf, conf))?;
    if conf.ip_masq && !masq::is_installed(&conf.name)? {
        return Err(CniError::Masquerade(format!(
            "chain inet wiremesh_cni {} is missing (ipMasq is on)",
            masq::chain_name(&conf.name)
        )));
    }
    let netns = inv.netns.as_deref().unwrap_or(std::path::Path::new(""));
    let mtu = mtu_in(netns, inv.ifname())?;
    if mtu > state.mtu {
        return Err(CniError::MtuTooLarge {
            ifname: inv.ifname().into(),
            mtu,
            max: state.mtu,
            state: state.path,
        });
    }
    Ok(())
}
