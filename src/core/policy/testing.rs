//! Test scaffolding of the policy room: a three-region mesh (Frankfurt, US-east, Singapore)
//! with labels, to which tests add policies, and packets to judge.

use super::compile::compile;
use super::conntrack::ConnTrack;
use super::decide::{Decision, Policy};
use super::flow::tests::{tcp, udp, v4};
use super::flow::{ICMP, TCP, UDP};
use crate::core::topology::{Document, Topology};
use std::path::Path;
use std::time::Instant;

/// The mesh of five nodes the policy tests share with `tests/policy_cli.rs`: Frankfurt (gcp,
/// europe-west3) `fra-web` 10.244.1.0/24 and `fra-batch` 10.244.2.0/24; US-east (aws,
/// us-east-1) `use-db` 10.244.7.0/24 and `use-api` 10.244.8.0/24; Singapore (azure,
/// southeastasia) `sg-web` 10.244.9.0/24.
pub(crate) const MESH: &str = include_str!("../../../tests/topologies/policy-five-nodes.toml");

/// [`MESH`] with `top` (top-level settings) before its nodes and `policies` after them.
pub(crate) fn mesh_text(top: &str, policies: &str) -> String {
    let (head, nodes) = MESH.split_once("\n[[node]]").expect("the mesh has nodes");
    format!("{head}{top}\n[[node]]{nodes}\n{policies}")
}

pub(crate) fn document(top: &str, policies: &str) -> Document {
    Topology::parse_with_policy(&mesh_text(top, policies), Path::new("mesh.toml"))
        .unwrap_or_else(|e| panic!("{e}"))
}

pub(crate) fn policy(top: &str, policies: &str) -> Policy {
    compile(&document(top, policies), None).unwrap()
}

/// An address of a node's pod CIDR: `host(7, 10)` is 10.244.7.10.
pub(crate) fn host(net: u8, host: u8) -> [u8; 4] {
    [10, 244, net, host]
}

pub(crate) fn tcp_packet(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, flags: u8) -> Vec<u8> {
    v4(src, dst, TCP, &tcp(sport, dport, flags))
}

pub(crate) fn udp_packet(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> Vec<u8> {
    v4(src, dst, UDP, &udp(sport, dport))
}

pub(crate) fn ping(src: [u8; 4], dst: [u8; 4], id: u16) -> Vec<u8> {
    v4(
        src,
        dst,
        ICMP,
        &[8, 0, 0, 0, (id >> 8) as u8, id as u8, 0, 1],
    )
}

/// A node's connection table and clock, judging packets one after another.
pub(crate) struct Node {
    pub(crate) ct: ConnTrack,
    pub(crate) now: Instant,
}

impl Node {
    pub(crate) fn new(capacity: usize) -> Node {
        let now = Instant::now();
        Node {
            ct: ConnTrack::new(
                capacity,
                [0x9e37_79b9_7f4a_7c15, 0xc2b2_ae3d_27d4_eb4f],
                now,
            ),
            now,
        }
    }

    pub(crate) fn check(&mut self, p: &Policy, pkt: &[u8]) -> Decision {
        p.check_packet(&mut self.ct, pkt, self.now)
    }
}
