//! Checks of each `[[node]]` on its own and against the others: names, keys, endpoints and
//! pinned pod CIDRs. The mesh-wide checks are in [`super::validate`].

use super::claims::Claims;
use super::shown::shown;
use super::validate::{cidr_v4, cidr_v6, Collector, PORT_ZERO};
use super::{Node, RawTopology};
use crate::core::key::PublicKey;
use ipnet::{Ipv4Net, Ipv6Net};
use std::collections::HashMap;

/// Checks each node on its own and against the others. Nodes whose pod CIDR is not pinned get
/// the unspecified network here; IPAM fills them in once everything else is known to be valid.
pub(super) fn check_nodes(
    raw: &RawTopology,
    c: &mut Collector,
    cluster: Option<Ipv4Net>,
    cluster_v6: Option<Ipv6Net>,
    listen_port: u16,
) -> Vec<Node> {
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut keys: HashMap<PublicKey, String> = HashMap::new();
    // owners are (file position, name): a CIDR overlapping several names the first of them
    let mut pinned: Claims<(usize, String)> = Claims::v4();
    let mut pinned_v6: Claims<(usize, String)> = Claims::v6();
    let first = |owners: &mut dyn Iterator<Item = &(usize, String)>| {
        owners.min_by_key(|(i, _)| *i).map(|(_, name)| name.clone())
    };
    let mut nodes = Vec::with_capacity(raw.node.len());
    for (index, spanned) in raw.node.iter().enumerate() {
        let n = spanned.get_ref();
        let name = n.name.get_ref().clone();
        let node_line = c.lines.at(&n.name);
        if !valid_name(&name) {
            c.push(node_line, Some(&name), "name", NAME_RULE.into());
        }
        if let Some(first) = names.insert(name.clone(), node_line.unwrap_or(0)) {
            c.push(
                node_line,
                Some(&name),
                "name",
                format!("duplicate node name (first at line {first})"),
            );
        }
        for (field, value) in [("cloud", &n.cloud), ("region", &n.region)] {
            if !valid_name(value.get_ref()) {
                let line = c.lines.at(value);
                c.push(line, Some(&name), field, NAME_RULE.into());
            }
        }
        // a port inherited from the top level was checked there, once for all its nodes
        let node_port = n.listen_port.as_ref().map_or(listen_port, |p| *p.get_ref());
        if let Some(port) = n.listen_port.as_ref().filter(|p| *p.get_ref() == 0) {
            let line = c.lines.at(port);
            c.push(line, Some(&name), "listen-port", PORT_ZERO.into());
        }
        let (endpoint, scoped) = super::endpoints::check_endpoints(n, &name, node_port, c);
        let key = match n.public_key.get_ref().parse::<PublicKey>() {
            Ok(k) => {
                if let Some(other) = keys.insert(k, name.clone()) {
                    let line = c.lines.at(&n.public_key);
                    c.push(
                        line,
                        Some(&name),
                        "public-key",
                        format!("same key as node '{}'", shown(&other)),
                    );
                }
                k
            }
            Err(err) => {
                let line = c.lines.at(&n.public_key);
                c.push(
                    line,
                    Some(&name),
                    "public-key",
                    format!("not a WireGuard key: {err}"),
                );
                PublicKey::from_bytes([0; 32])
            }
        };
        let pod_cidr = n.pod_cidr.as_ref().and_then(|s| {
            let net = cidr_v4(c, s, Some(&name), "pod-cidr")?;
            let line = c.lines.at(s);
            if let Some(cluster) = cluster {
                if !cluster.contains(&net) {
                    c.push(
                        line,
                        Some(&name),
                        "pod-cidr",
                        format!("{net} is outside the cluster CIDR {cluster}"),
                    );
                }
            }
            if net.prefix_len() > 30 {
                c.push(
                    line,
                    Some(&name),
                    "pod-cidr",
                    format!("{net} is too small; at most /30"),
                );
            }
            if let Some(other) = first(&mut pinned.overlapping(net)) {
                c.push(
                    line,
                    Some(&name),
                    "pod-cidr",
                    format!("{net} overlaps node '{}'", shown(&other)),
                );
            }
            pinned.insert(net, (index, name.clone()));
            Some(net)
        });
        let pod_cidr_v6 = n.pod_cidr_v6.as_ref().and_then(|s| {
            let net = cidr_v6(c, s, Some(&name), "pod-cidr-v6")?;
            let line = c.lines.at(s);
            match cluster_v6 {
                None => c.push(
                    line,
                    Some(&name),
                    "pod-cidr-v6",
                    "set, but the topology has no cluster-cidr-v6".into(),
                ),
                Some(cluster) if !cluster.contains(&net) => c.push(
                    line,
                    Some(&name),
                    "pod-cidr-v6",
                    format!("{net} is outside the cluster CIDR {cluster}"),
                ),
                _ => {}
            }
            if let Some(other) = first(&mut pinned_v6.overlapping(net)) {
                c.push(
                    line,
                    Some(&name),
                    "pod-cidr-v6",
                    format!("{net} overlaps node '{}'", shown(&other)),
                );
            }
            pinned_v6.insert(net, (index, name.clone()));
            Some(net)
        });
        nodes.push(Node {
            name,
            cloud: n.cloud.get_ref().clone(),
            region: n.region.get_ref().clone(),
            endpoint,
            scoped,
            public_key: key,
            pod_cidr: pod_cidr.unwrap_or_else(|| Ipv4Net::new(0.into(), 0).expect("/0 is valid")),
            pod_cidr_v6,
            pod_cidr_pinned: pod_cidr.is_some(),
            pod_cidr_v6_pinned: pod_cidr_v6.is_some(),
            hub: n.hub,
            listen_port: node_port,
        });
    }
    nodes
}

/// The rule [`valid_name`] checks, in the words of every message that refuses a name.
pub(crate) const NAME_RULE: &str = "must be 1-63 letters, digits, '-', '_' or '.'";

/// Whether `s` is a name by the rule of node, cloud and region names (and the registry's mesh
/// names, which go into etcd keys, where `/` would be a separator).
pub(crate) fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}
