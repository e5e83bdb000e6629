//! Network policy in the engine: engines wired in memory with real sessions, each with the same
//! compiled policy, as every daemon of a mesh compiles it.

use super::control_message::{self as control, Message};
use super::memory_tests::Net;
use super::DropReason;
use crate::core::policy::flow::tests::{tcp, v4};
use crate::core::policy::flow::{ACK, SYN, TCP};
use crate::core::policy::{compile, Policy};
use crate::core::topology::Topology;
use std::path::Path;
use std::sync::Arc;

/// Nodes a, b, c in one region of a full mesh: 10.244.1–3.0/24, overlay addresses .1.
const NODES: [(&str, &str, bool); 3] = [("a", "r", false), ("b", "r", false), ("c", "r", false)];

/// The policy `policies` (the topology format's policy part) compiled for the mesh of `NODES`,
/// replacing `previous` when given.
fn policy(policies: &str, previous: Option<&Policy>) -> Arc<Policy> {
    let mut text = String::from("mode = \"full\"\ncluster-cidr = \"10.244.0.0/16\"\n");
    text.push_str(policies);
    for (i, (name, region, _)) in NODES.iter().enumerate() {
        let key = crate::core::key::PrivateKey::from_bytes([i as u8 + 1; 32]).public_key();
        text.push_str(&format!(
            "\n[[node]]\nname = \"{name}\"\ncloud = \"c\"\nregion = \"{region}\"\n\
             public-key = \"{key}\"\npod-cidr = \"10.244.{}.0/24\"\n",
            i + 1
        ));
    }
    let doc = Topology::parse_with_policy(&text, Path::new("mesh.toml"))
        .unwrap_or_else(|e| panic!("{e}"));
    Arc::new(compile(&doc, previous).unwrap())
}

fn net_with(policies: &str) -> Net {
    let net = Net::new("full", &NODES);
    // each its own, counters included, as each daemon compiles its own
    for d in net.devices.values() {
        d.set_policy(policy(policies, None));
    }
    net
}

/// A pod address on node `i` (1-based).
fn pod(i: u8) -> [u8; 4] {
    [10, 244, i, 20]
}

fn segment(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, flags: u8) -> Vec<u8> {
    v4(src, dst, TCP, &tcp(sport, dport, flags))
}

fn got(net: &Net, node: &str, pkt: &[u8]) -> bool {
    net.delivered
        .get(node)
        .is_some_and(|ps| ps.iter().any(|p| p[12..] == pkt[12..]))
}

const DENY_DB: &str = r#"
[[policy]]
name = "no-db-from-a"
order = 10
action = "deny"
from = { name = "a" }
to = { name = "b" }
protocol = "tcp"
ports = [5432]
"#;

#[test]
fn a_denied_flow_is_dropped_by_the_sender_and_never_crosses_the_wire() {
    let mut net = net_with(DENY_DB);
    let syn = segment(pod(1), 40000, pod(2), 5432, SYN);
    net.send("a", &syn);
    assert!(!got(&net, "b", &syn));
    assert_eq!(net.devices["a"].drops(DropReason::Policy), 1);
    // it never reached b's engine: b judged nothing
    assert_eq!(net.devices["b"].drops(DropReason::Policy), 0);
    assert_eq!(net.devices["b"].policy().counters.rules[0].get(), 0);
    // the same source to another port, and another source to the port, pass
    let api = segment(pod(1), 40001, pod(2), 443, SYN);
    net.send("a", &api);
    assert!(got(&net, "b", &api));
    let other = segment(pod(3), 40002, pod(2), 5432, SYN);
    net.send("c", &other);
    assert!(got(&net, "b", &other));
}

#[test]
fn the_receiver_decides_even_when_the_sender_lets_a_packet_out() {
    let mut net = net_with(DENY_DB);
    // a sender without the policy (an old build, a stock WireGuard peer, a stale reload)
    net.devices["a"].set_policy(policy("", Some(&net.devices["a"].policy())));
    let syn = segment(pod(1), 40000, pod(2), 5432, SYN);
    net.send("a", &syn);
    assert!(!got(&net, "b", &syn));
    assert_eq!(net.devices["b"].drops(DropReason::Policy), 1);
    assert_eq!(net.devices["b"].policy().counters.rules[0].get(), 1);
}

#[test]
fn under_default_deny_an_allowed_flow_and_its_replies_pass_and_the_reverse_flow_does_not() {
    let mut net = net_with(
        r#"default-action = "deny"
[[policy]]
name = "a-to-b-https"
order = 1
action = "allow"
from = { name = "a" }
to = { name = "b" }
protocol = "tcp"
ports = [443]
"#,
    );
    let syn = segment(pod(1), 40000, pod(2), 443, SYN);
    net.send("a", &syn);
    assert!(got(&net, "b", &syn));
    let syn_ack = segment(pod(2), 443, pod(1), 40000, SYN | ACK);
    net.send("b", &syn_ack);
    assert!(
        got(&net, "a", &syn_ack),
        "the reply passes both ends' tables"
    );
    let ack = segment(pod(1), 40000, pod(2), 443, ACK);
    net.send("a", &ack);
    assert!(got(&net, "b", &ack));
    // b may not open a flow towards a, even to a port a's flow uses
    let reverse = segment(pod(2), 40000, pod(1), 443, SYN);
    net.send("b", &reverse);
    assert!(!got(&net, "a", &reverse));
    assert_eq!(net.devices["b"].drops(DropReason::Policy), 1);
    // c is denied by default
    let from_c = segment(pod(3), 40000, pod(2), 443, SYN);
    net.send("c", &from_c);
    assert!(!got(&net, "b", &from_c));
    let status = net.devices["b"].policy();
    assert_eq!(status.counters.rules[0].get(), 1, "one flow opened");
}

#[test]
fn a_rejecting_rule_answers_with_administratively_prohibited_on_either_side() {
    let rejecting = DENY_DB.replace("action = \"deny\"", "action = \"deny\"\nreject = true");
    let mut net = net_with(&rejecting);
    let syn = segment(pod(1), 40000, pod(2), 5432, SYN);
    net.send("a", &syn);
    let is_prohibited = |p: &Vec<u8>| p[9] == 1 && p[20] == 3 && p[21] == 13 && p[16..20] == pod(1);
    assert!(
        net.delivered["a"].iter().any(is_prohibited),
        "the sender's own check answers"
    );
    // the receiver's answer crosses back through the tunnel
    net.delivered.clear();
    net.devices["a"].set_policy(policy("", Some(&net.devices["a"].policy())));
    net.send("a", &syn);
    assert!(!got(&net, "b", &syn));
    assert!(
        net.delivered["a"].iter().any(is_prohibited),
        "the receiver's answer came back"
    );
}

#[test]
fn a_reload_to_deny_stops_a_running_flow_and_a_reload_back_lets_new_flows_pass() {
    let allow_all = "";
    let mut net = net_with(DENY_DB.replace("5432", "8080").as_str());
    let syn = segment(pod(1), 40000, pod(2), 5432, SYN);
    net.send("a", &syn);
    net.send("b", &segment(pod(2), 5432, pod(1), 40000, SYN | ACK));
    let data = segment(pod(1), 40000, pod(2), 5432, ACK);
    net.send("a", &data);
    assert!(got(&net, "b", &data));
    for d in net.devices.values() {
        d.set_policy(policy(DENY_DB, Some(&d.policy())));
    }
    net.delivered.clear();
    net.send("a", &data);
    assert!(!got(&net, "b", &data), "the running flow stopped");
    let reply = segment(pod(2), 5432, pod(1), 40000, ACK);
    net.send("b", &reply);
    assert!(!got(&net, "a", &reply), "its replies too");
    let fresh = segment(pod(1), 40001, pod(2), 5432, SYN);
    net.send("a", &fresh);
    assert!(!got(&net, "b", &fresh), "new flows are refused");
    for d in net.devices.values() {
        d.set_policy(policy(allow_all, Some(&d.policy())));
    }
    let again = segment(pod(1), 40002, pod(2), 5432, SYN);
    net.send("a", &again);
    assert!(
        got(&net, "b", &again),
        "new flows pass after the reload back"
    );
}

#[test]
fn audit_mode_counts_what_it_would_deny_and_drops_nothing() {
    let mut net = net_with(&format!("policy-mode = \"audit\"\n{DENY_DB}"));
    let syn = segment(pod(1), 40000, pod(2), 5432, SYN);
    net.send("a", &syn);
    assert!(got(&net, "b", &syn));
    for n in ["a", "b"] {
        let p = net.devices[n].policy();
        assert_eq!(
            p.counters
                .policy
                .would_deny
                .load(std::sync::atomic::Ordering::Relaxed),
            1,
            "{n}"
        );
        assert_eq!(net.devices[n].drops(DropReason::Policy), 0);
    }
}

#[test]
fn a_mesh_without_policy_allocates_no_connection_table() {
    let net = net_with("");
    let now = net.now;
    assert_eq!(net.devices["a"].conntrack(now).capacity, 0);
    assert!(net.devices["a"].policy().is_permissive());
    let net = net_with(DENY_DB);
    assert_eq!(
        net.devices["a"].conntrack(now).capacity,
        crate::constants::CONNTRACK_CAPACITY
    );
}

#[test]
fn control_messages_pass_any_policy_but_only_the_engine_may_send_them() {
    // default deny, and only pings allowed: the engines' hellos and probes still flow
    let mut net = net_with(
        "default-action = \"deny\"\n[[policy]]\nname = \"ping\"\norder = 1\naction = \"allow\"\nprotocol = \"icmp\"\n",
    );
    net.send("a", &crate::core::policy::testing::ping(pod(1), pod(2), 7));
    net.run(std::time::Duration::from_millis(250), 40);
    let b = net.devices["a"]
        .peers()
        .iter()
        .find(|p| p.name() == "b")
        .cloned()
        .unwrap();
    assert!(
        b.path.view().speaks_control,
        "a heard b's engine through a default deny"
    );
    let hello = control::build(
        [10, 244, 1, 1].into(),
        [10, 244, 2, 1].into(),
        &Message::Hello,
        0,
    );
    // from the tun device with the node's own address: a process forging the engine's voice
    net.send("a", &hello);
    assert_eq!(net.devices["a"].drops(DropReason::ForgedControl), 1);
    let mallory = crate::io::keyfile::generate().public_key();
    let announce = Message::KeyAnnounce {
        new_public: mallory,
        effective_ms: 60_000,
    };
    let forged = control::build([10, 244, 1, 1].into(), [10, 244, 2, 1].into(), &announce, 0);
    net.send("a", &forged);
    assert_eq!(net.devices["a"].drops(DropReason::ForgedControl), 2);
    // from a pod address, it leaves a (no policy judges control) and b refuses it
    let open = Net::new("full", &NODES);
    let mut net = open;
    let from_pod = control::build(pod(1).into(), [10, 244, 2, 1].into(), &announce, 0);
    net.send("a", &from_pod);
    assert_eq!(net.devices["b"].drops(DropReason::ForgedAnnouncement), 1);
    for p in net.devices["b"].peers().iter() {
        assert!(!p.keys().accepts(&mallory));
    }
    let hello_from_pod = control::build(pod(1).into(), [10, 244, 2, 1].into(), &Message::Hello, 0);
    net.send("a", &hello_from_pod);
    assert_eq!(net.devices["b"].drops(DropReason::ForgedControl), 1);
}
