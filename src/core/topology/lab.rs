//! The lab-only settings of regions and nodes (docs/nat.md, section 6): `[region.X] lab.vpc`
//! and `[[node]] lab.nat`. Daemons ignore them; they are checked with the rest of the file so a
//! typo fails `wiremesh plan` as it fails `wiremesh lab up`, naming its line.
//!
//! They are returned beside the [`super::Topology`] (by [`super::Topology::parse_for_lab`])
//! rather than in it: the registry and the daemon build `Topology`, `Region` and `Node` values
//! of their own, which have no lab.

use super::file::RawTopology;
use super::shown::shown;
use super::validate::Collector;
use super::MeshMode;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// The mapping behaviour of the NAT router the lab puts a node behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LabNat {
    /// Endpoint-independent mapping (nftables `masquerade`): one outer port towards every
    /// destination, as most home routers and cloud NAT gateways keep it.
    Independent,
    /// Endpoint-dependent mapping, "symmetric" (`masquerade fully-random`): a fresh outer port
    /// per destination, so what one peer sees is useless to another.
    Dependent,
}

impl LabNat {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "independent" => Some(LabNat::Independent),
            "dependent" => Some(LabNat::Dependent),
            _ => None,
        }
    }
}

/// What the lab builds besides the underlay every lab has.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabSettings {
    /// Regions whose nodes share a private bridge (`lab.vpc = true`).
    pub vpc_regions: BTreeSet<String>,
    /// Nodes behind a NAT router, by name.
    pub nat: BTreeMap<String, LabNat>,
}

/// Checks the `lab` tables of regions and nodes, each problem with its line and field.
pub(super) fn check_lab_settings(
    raw: &RawTopology,
    mode: Option<MeshMode>,
    c: &mut Collector,
) -> LabSettings {
    let mut settings = LabSettings::default();
    for (name, region) in &raw.region {
        let Some(vpc) = region.get_ref().lab.as_ref().and_then(|l| l.vpc.as_ref()) else {
            continue;
        };
        if *vpc.get_ref() {
            settings.vpc_regions.insert(name.clone());
        }
    }
    for node in &raw.node {
        let n = node.get_ref();
        let Some(nat) = n.lab.as_ref().and_then(|l| l.nat.as_ref()) else {
            continue;
        };
        let name = n.name.get_ref();
        let line = c.lines.at(nat);
        let Some(kind) = LabNat::parse(nat.get_ref()) else {
            let msg = format!(
                "'{}' is not a lab NAT (independent or dependent)",
                shown(nat.get_ref())
            );
            c.push(line, Some(name), "lab.nat", msg);
            continue;
        };
        if n.hub && mode == Some(MeshMode::Hub) {
            let msg = "a hub behind NAT has no endpoint its spokes could dial; put a spoke \
                       behind NAT, or use mode = \"full\""
                .to_string();
            c.push(line, Some(name), "lab.nat", msg);
            continue;
        }
        if settings.vpc_regions.contains(n.region.get_ref()) {
            // a VPC node's address is on the VPC's bridge; a NATed one sits behind its own
            // router: the lab builds one or the other
            let msg = format!(
                "node in VPC region '{}': the lab puts a node in a VPC or behind NAT, not both",
                shown(n.region.get_ref())
            );
            c.push(line, Some(name), "lab.nat", msg);
            continue;
        }
        settings.nat.insert(name.clone(), kind);
    }
    settings
}
