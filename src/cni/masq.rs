//! Masquerade for traffic that leaves the cluster, as nftables rules in the node's namespace.
//!
//! Why not bridge's `ipMasq`: it masquerades everything whose destination is outside the
//! container's own subnet, here this node's pod CIDR, so a pod talking to a pod on another
//! node would reach it under the node's address. The spec's `ipMasq` means "the host is the
//! gateway to subnets that cannot route back to the pod"; the other nodes' pods can (the mesh
//! routes every pod CIDR), so only destinations outside the cluster CIDRs are rewritten.
//!
//! One chain per network, `inet wiremesh_cni masq_<network>`, rewritten whole in one `nft`
//! transaction on each ADD, so it follows the daemon's cluster CIDRs and is never half there.
//! It stays when the last pod goes: it matches only this node's pod sources, and removing it
//! would race a concurrent ADD.

use super::error::CniError;
use super::state::NodeState;
use ipnet::IpNet;
use std::io::Write as _;
use std::process::{Command, Stdio};

const TABLE: &str = "inet wiremesh_cni";

/// The chain of `network`: nftables names allow letters, digits and `_`.
pub fn chain_name(network: &str) -> String {
    let safe: String = network
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("masq_{safe}")
}

/// The `nft -f` script that makes the chain of `network` match `state` (or removes it when
/// masquerade is off).
pub fn script(network: &str, state: &NodeState, enabled: bool) -> String {
    let chain = chain_name(network);
    let mut s = format!(
        "add table {TABLE}\n\
         add chain {TABLE} {chain} {{ type nat hook postrouting priority srcnat; }}\n\
         flush chain {TABLE} {chain}\n"
    );
    if !enabled {
        s.push_str(&format!("delete chain {TABLE} {chain}\n"));
        return s;
    }
    for (pod, _) in &state.pods {
        let v4 = pod.addr().is_ipv4();
        let (family, multicast) = if v4 {
            ("ip", "224.0.0.0/4")
        } else {
            ("ip6", "ff00::/8")
        };
        let mut spared: Vec<IpNet> = state
            .cluster_cidrs
            .iter()
            .filter(|c| c.addr().is_ipv4() == v4)
            .copied()
            .collect();
        if spared.is_empty() {
            // No cluster CIDR of this family: at least the pods' own subnet stays unrewritten.
            spared.push(*pod);
        }
        let spared: Vec<String> = spared.iter().map(ToString::to_string).collect();
        s.push_str(&format!(
            "add rule {TABLE} {chain} {family} saddr {pod} {family} daddr != {{ {}, {multicast} }} masquerade\n",
            spared.join(", ")
        ));
    }
    s
}

/// Applies [`script`] with `nft -f -` in the current network namespace.
pub fn apply(network: &str, state: &NodeState, enabled: bool) -> Result<(), CniError> {
    let script = script(network, state, enabled);
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| CniError::Masquerade(format!("run nft: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(script.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| CniError::Masquerade(format!("wait for nft: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(CniError::Masquerade(format!(
            "nft -f: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Whether the chain of `network` is installed in the current network namespace (CHECK: the
/// spec counts firewall rules among what a plugin confirms).
pub fn is_installed(network: &str) -> Result<bool, CniError> {
    let out = Command::new("nft")
        .args([
            "list",
            "chain",
            "inet",
            "wiremesh_cni",
            &chain_name(network),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .output()
        .map_err(|e| CniError::Masquerade(format!("run nft: {e}")))?;
    Ok(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("masquerade"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(cluster: &[&str]) -> NodeState {
        NodeState {
            path: "/x".into(),
            node: "n".into(),
            pods: vec![
                (
                    "10.244.1.0/24".parse().unwrap(),
                    "10.244.1.1".parse().unwrap(),
                ),
                (
                    "fd00:10:244:1::/64".parse().unwrap(),
                    "fd00:10:244:1::1".parse().unwrap(),
                ),
            ],
            cluster_cidrs: cluster.iter().map(|c| c.parse().unwrap()).collect(),
            mtu: 1420,
        }
    }

    #[test]
    fn only_destinations_outside_the_cluster_are_masqueraded() {
        let s = script("wm.net", &state(&["10.244.0.0/16"]), true);
        assert!(s.contains(
            "add rule inet wiremesh_cni masq_wm_net ip saddr 10.244.1.0/24 ip daddr != { 10.244.0.0/16, 224.0.0.0/4 } masquerade"
        ), "{s}");
        // No v6 cluster CIDR: the v6 pod subnet itself is what is spared.
        assert!(
            s.contains(
                "ip6 saddr fd00:10:244:1::/64 ip6 daddr != { fd00:10:244:1::/64, ff00::/8 }"
            ),
            "{s}"
        );
    }

    #[test]
    fn turning_masquerade_off_removes_the_chain() {
        let s = script("wm", &state(&[]), false);
        assert!(
            s.ends_with("delete chain inet wiremesh_cni masq_wm\n"),
            "{s}"
        );
        assert!(!s.contains("masquerade"), "{s}");
    }
}
