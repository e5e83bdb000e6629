//! `wiremesh-cni` run as a runtime runs it, against Debian's reference plugins, in namespaces:
//!
//! ```text
//!   <p>-node  (stands for the host: the plugin runs here; bridge <p>br, nftables)
//!      │ <p>br 10.244.1.1/24, fd00:10:244:1::1/64 (bridge plugin, isGateway)
//!      ├── veth ── <p>-c1  eth0 10.244.1.x   (a "container")
//!      └── veth ── <p>-c2  eth0 10.244.1.y
//!      └── veth <p>up ── <p>-up  (masquerade test only: 10.244.2.1 = another node's pod,
//!                                 192.0.2.2 = outside the cluster)
//! ```
//!
//! No daemon runs: each test writes the node state (`subnet.json`) by hand in its own temp
//! dir, with its own network name, host-local store (`ipam.dataDir`) and bridge name, so
//! nothing touches the machine's /var/lib/cni. Everything is removed on drop, even on failure.

mod common;

use common::{require_root, text, unique_prefix, Netns};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const PLUGIN: &str = env!("CARGO_BIN_EXE_wiremesh-cni");
const CNI_PATH: &str = "/usr/lib/cni";
const MTU: u32 = 1420;

/// A "node": its namespace, its state dir and the network's names.
struct Node {
    prefix: String,
    ns: Netns,
    dir: tempfile::TempDir,
}

/// One plugin run.
struct Run {
    out: Output,
    elapsed: Duration,
}

impl Run {
    fn ok(&self) -> bool {
        self.out.status.success()
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.out.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", text(&self.out)))
    }
    /// The CNI error object: its code and message; fails unless the run failed with one.
    fn error(&self) -> (u64, String) {
        assert!(!self.ok(), "expected a failure: {}", text(&self.out));
        let v = self.json();
        (
            v["code"].as_u64().unwrap(),
            v["msg"].as_str().unwrap().to_string(),
        )
    }
}

impl Node {
    fn new() -> Option<Node> {
        if !require_root() {
            return None;
        }
        assert!(
            Path::new(CNI_PATH).join("bridge").exists(),
            "{CNI_PATH}/bridge missing: scripts/install-deps installs containernetworking-plugins"
        );
        let prefix = unique_prefix();
        let ns = Netns::new(&format!("{prefix}-node"));
        let node = Node {
            prefix,
            ns,
            dir: tempfile::tempdir().unwrap(),
        };
        node.write_state(MTU);
        Some(node)
    }

    fn state_file(&self) -> PathBuf {
        self.dir.path().join("subnet.json")
    }

    /// The node state as the daemon would publish it, with tunnel MTU `mtu`.
    fn write_state(&self, mtu: u32) {
        let state = json!({"version": 1, "node": "n1", "interface": "wm0",
            "pod_cidrs": ["10.244.1.0/24", "fd00:10:244:1::/64"],
            "gateways": ["10.244.1.1", "fd00:10:244:1::1"],
            "cluster_cidrs": ["10.244.0.0/16"], "mtu": mtu, "written_unix_ms": 1765000000000u64});
        std::fs::write(self.state_file(), state.to_string()).unwrap();
    }

    fn network(&self) -> String {
        format!("{}net", self.prefix)
    }

    fn bridge(&self) -> String {
        format!("{}br", self.prefix)
    }

    /// host-local's store of this network.
    fn store(&self) -> PathBuf {
        self.dir.path().join("ipam").join(self.network())
    }

    fn conf(&self) -> Value {
        json!({"cniVersion": "1.1.0", "name": self.network(), "type": "wiremesh-cni",
            "subnetFile": self.state_file(), "dataDir": self.dir.path().join("cache"),
            "bridge": self.bridge(), "ipam": {"dataDir": self.dir.path().join("ipam")}})
    }

    fn container(&self, name: &str) -> Netns {
        Netns::new(&format!("{}-{name}", self.prefix))
    }

    /// Runs our plugin in the node's namespace with exactly `env` (and PATH) and `stdin`.
    fn run(&self, env: &[(&str, &str)], stdin: &[u8]) -> Run {
        self.run_plugin(PLUGIN, env, stdin)
    }

    /// Runs the plugin binary `plugin` as [`Node::run`] runs ours.
    fn run_plugin(&self, plugin: &str, env: &[(&str, &str)], stdin: &[u8]) -> Run {
        use std::io::Write as _;
        let started = Instant::now();
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.ns.name, plugin])
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .envs(env.iter().copied())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        let out = child.wait_with_output().unwrap();
        Run {
            out,
            elapsed: started.elapsed(),
        }
    }

    /// An attachment command for container `id` in `netns`, interface eth0.
    fn attach(&self, command: &str, id: &str, netns: &str, conf: &Value) -> Run {
        self.attach_plugin(PLUGIN, command, id, netns, conf)
    }

    /// An attachment command of `plugin` (a chained plugin of the conflist, or ours).
    fn attach_plugin(
        &self,
        plugin: &str,
        command: &str,
        id: &str,
        netns: &str,
        conf: &Value,
    ) -> Run {
        let env = [
            ("CNI_COMMAND", command),
            ("CNI_CONTAINERID", id),
            ("CNI_NETNS", netns),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", CNI_PATH),
        ];
        self.run_plugin(plugin, &env, conf.to_string().as_bytes())
    }

    fn add(&self, c: &Netns) -> Value {
        let r = self.attach("ADD", &c.name, &c.path(), &self.conf());
        assert!(r.ok(), "ADD {}: {}", c.name, text(&r.out));
        println!("ADD {} took {:?}", c.name, r.elapsed);
        r.json()
    }

    fn del(&self, id: &str, netns: &str) -> Run {
        self.attach("DEL", id, netns, &self.conf())
    }

    /// CHECK with `prev` as prevResult.
    fn check(&self, c: &Netns, prev: &Value) -> Run {
        let mut conf = self.conf();
        conf["prevResult"] = prev.clone();
        self.attach("CHECK", &c.name, &c.path(), &conf)
    }

    /// Files in host-local's store that reserve an address.
    fn reservations(&self) -> Vec<String> {
        let Ok(dir) = std::fs::read_dir(self.store()) else {
            return Vec::new();
        };
        let mut names: Vec<String> = dir
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
            .collect();
        names.sort();
        names
    }

    /// Links in the node's namespace other than lo.
    fn links(&self) -> Vec<String> {
        let out = Command::new("ip")
            .args(["-n", &self.ns.name, "-o", "link", "show"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split(':').nth(1).map(|n| n.trim().to_string()))
            .filter(|n| n != "lo")
            .collect()
    }

    /// Cached attachments (hidden files are the delegates' remembered VERSION answers).
    fn cached(&self) -> usize {
        std::fs::read_dir(self.dir.path().join("cache").join(self.network()))
            .map(|d| {
                d.flatten()
                    .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                    .count()
            })
            .unwrap_or(0)
    }
}

/// The container's IPv4 and IPv6 addresses from an ADD result.
fn addresses(result: &Value) -> (String, String) {
    let ips: Vec<String> = result["ips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            i["address"]
                .as_str()
                .unwrap()
                .split('/')
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    let v4 = ips.iter().find(|a| a.contains('.')).unwrap().clone();
    let v6 = ips.iter().find(|a| a.contains(':')).unwrap().clone();
    (v4, v6)
}

fn ping(from: &Netns, to: &str) -> Result<(), String> {
    let out = from.exec("ping", &["-c", "1", "-W", "1", to]);
    if out.status.success() {
        Ok(())
    } else {
        Err(text(&out))
    }
}

fn assert_pings(from: &Netns, to: &str) {
    common::wait_for(
        Duration::from_secs(5),
        Duration::from_millis(200),
        &format!("ping {to}"),
        || ping(from, to),
    );
}

#[test]
fn two_containers_get_pod_addresses_and_the_tunnel_mtu_and_reach_each_other_and_the_gateway() {
    let Some(node) = Node::new() else { return };
    let (c1, c2) = (node.container("c1"), node.container("c2"));
    let r1 = node.add(&c1);
    let r2 = node.add(&c2);

    assert_eq!(r1["cniVersion"], "1.1.0");
    let names: Vec<&str> = r1["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names[0], node.bridge(), "{r1}");
    let eth0 = r1["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["sandbox"] == c1.path())
        .unwrap();
    assert_eq!(eth0["name"], "eth0");
    assert_eq!(eth0["mtu"], MTU);
    let (a1, a1v6) = addresses(&r1);
    let (a2, a2v6) = addresses(&r2);
    for (addr, cidr) in [
        (&a1, "10.244.1."),
        (&a2, "10.244.1."),
        (&a1v6, "fd00:10:244:1::"),
        (&a2v6, "fd00:10:244:1::"),
    ] {
        assert!(addr.starts_with(cidr), "{addr} not in the pod CIDR {cidr}");
    }
    assert_ne!(a1, a2);
    let gateways: Vec<&str> = r1["ips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["gateway"].as_str().unwrap())
        .collect();
    assert_eq!(gateways, ["10.244.1.1", "fd00:10:244:1::1"]);

    let link = c1.exec("ip", &["-o", "link", "show", "eth0"]);
    assert!(
        String::from_utf8_lossy(&link.stdout).contains(&format!("mtu {MTU} ")),
        "{}",
        text(&link)
    );
    let addr = c1.exec("ip", &["-o", "addr", "show", "eth0"]);
    assert!(
        String::from_utf8_lossy(&addr.stdout).contains(&format!("{a1}/24")),
        "{}",
        text(&addr)
    );
    let routes = c1.exec("ip", &["route", "show"]);
    assert!(
        String::from_utf8_lossy(&routes.stdout).contains("10.244.0.0/16 via 10.244.1.1"),
        "{}",
        text(&routes)
    );

    assert_pings(&c1, &a2);
    assert_pings(&c2, &a1);
    assert_pings(&c1, "10.244.1.1");
    assert_pings(&c1, &a2v6);
    assert_pings(&c2, "fd00:10:244:1::1");
    println!("c1 {a1} {a1v6}, c2 {a2} {a2v6}: reach each other and the gateway");
}

#[test]
fn check_fails_naming_a_missing_masquerade_chain_or_a_container_mtu_above_the_tunnels() {
    let Some(node) = Node::new() else { return };
    let c1 = node.container("c1");
    let r1 = node.add(&c1);
    let ok = node.check(&c1, &r1);
    assert!(ok.ok(), "CHECK right after ADD: {}", text(&ok.out));
    println!("CHECK took {:?}", ok.elapsed);

    // The masquerade chain is part of what CHECK confirms.
    let chain = format!("masq_{}", node.network());
    let del = node
        .ns
        .exec("nft", &["delete", "chain", "inet", "wiremesh_cni", &chain]);
    assert!(del.status.success(), "{}", text(&del));
    let (code, msg) = node.check(&c1, &r1).error();
    assert_eq!(code, 101, "{msg}");
    assert!(msg.contains(&chain), "{msg}");
    let c0 = node.container("c0");
    node.add(&c0);
    let ok = node.check(&c1, &r1);
    assert!(
        ok.ok(),
        "the next ADD restores the chain: {}",
        text(&ok.out)
    );

    node.write_state(1380);
    let (code, msg) = node.check(&c1, &r1).error();
    assert_eq!(code, 100, "{msg}");
    assert!(
        msg.contains("MTU 1420") && msg.contains("1380") && msg.contains("eth0"),
        "{msg}"
    );

    // A container added now gets the new MTU, and passes.
    let c2 = node.container("c2");
    let r2 = node.add(&c2);
    // The kernel keeps the bridge at its smallest port's MTU, so the node's own packets to the
    // new container fit too.
    let br = node.ns.exec("ip", &["-o", "link", "show", &node.bridge()]);
    assert!(
        String::from_utf8_lossy(&br.stdout).contains("mtu 1380 "),
        "{}",
        text(&br)
    );
    assert!(
        String::from_utf8_lossy(&c2.exec("ip", &["-o", "link", "show", "eth0"]).stdout)
            .contains("mtu 1380 ")
    );
    let ok = node.check(&c2, &r2);
    assert!(ok.ok(), "CHECK of the new container: {}", text(&ok.out));
}

#[test]
fn del_twice_succeeds_and_releases_the_address() {
    let Some(node) = Node::new() else { return };
    let c1 = node.container("c1");
    node.add(&c1);
    assert_eq!(node.reservations().len(), 2, "one address per family");
    for round in 1..=2 {
        let r = node.del(&c1.name, &c1.path());
        assert!(r.ok(), "DEL #{round}: {}", text(&r.out));
        assert!(r.out.stdout.is_empty(), "DEL prints nothing");
    }
    assert_eq!(node.reservations(), Vec::<String>::new());
    assert_eq!(node.cached(), 0);
    let links = node.links();
    assert!(!links.iter().any(|l| l.starts_with("veth")), "{links:?}");
}

#[test]
fn del_succeeds_after_an_add_that_failed_and_nothing_is_left() {
    let Some(node) = Node::new() else { return };
    // ADD into a namespace that does not exist: refused before anything is made.
    let gone = format!("/run/netns/{}-gone", node.prefix);
    let (code, msg) = node.attach("ADD", "c0", &gone, &node.conf()).error();
    assert_eq!(code, 3, "{msg}");
    let r = node.del("c0", &gone);
    assert!(r.ok(), "DEL after the failed ADD: {}", text(&r.out));

    // A partial ADD: bridge fails inside the container (eth0 exists already); the plugin undoes
    // it before answering, and the runtime's DEL still succeeds.
    let c1 = node.container("c1");
    let taken = c1.exec(
        "ip",
        &[
            "link", "add", "eth0", "type", "veth", "peer", "name", "other0",
        ],
    );
    assert!(taken.status.success(), "{}", text(&taken));
    let failed = node.attach("ADD", &c1.name, &c1.path(), &node.conf());
    let (code, msg) = failed.error();
    assert!(msg.contains("bridge"), "code {code}: {msg}");
    assert_eq!(node.reservations(), Vec::<String>::new());
    assert_eq!(node.cached(), 0);
    let r = node.del(&c1.name, &c1.path());
    assert!(r.ok(), "DEL after the partial ADD: {}", text(&r.out));
    let links = node.links();
    assert!(!links.iter().any(|l| l.starts_with("veth")), "{links:?}");
}

#[test]
fn gc_removes_the_reservations_of_attachments_no_longer_valid_and_keeps_the_others() {
    let Some(node) = Node::new() else { return };
    let (c1, c2) = (node.container("c1"), node.container("c2"));
    let (a1, _) = addresses(&node.add(&c1));
    let (a2, _) = addresses(&node.add(&c2));
    // c2's container vanished without a DEL: its reservation leaked.
    drop(c2);
    let mut conf = node.conf();
    conf["cni.dev/valid-attachments"] = json!([{"containerID": c1.name, "ifname": "eth0"}]);
    let r = node.run(
        &[("CNI_COMMAND", "GC"), ("CNI_PATH", CNI_PATH)],
        conf.to_string().as_bytes(),
    );
    assert!(r.ok(), "GC: {}", text(&r.out));
    let left = node.reservations();
    assert!(left.contains(&a1), "{left:?}");
    assert!(!left.contains(&a2), "{left:?}");
    assert_eq!(left.len(), 2, "c1's two addresses: {left:?}");
    assert_eq!(node.cached(), 1, "only c1's configuration is kept");
    let ok = node.del(&c1.name, &c1.path());
    assert!(ok.ok(), "{}", text(&ok.out));
}

#[test]
fn status_fails_with_code_50_until_the_daemon_publishes_node_state() {
    let Some(node) = Node::new() else { return };
    let status = || {
        node.run(
            &[("CNI_COMMAND", "STATUS"), ("CNI_PATH", CNI_PATH)],
            node.conf().to_string().as_bytes(),
        )
    };
    std::fs::remove_file(node.state_file()).unwrap();
    let (code, msg) = status().error();
    assert_eq!(code, 50);
    assert!(msg.contains(node.state_file().to_str().unwrap()), "{msg}");
    node.write_state(MTU);
    let r = status();
    assert!(r.ok(), "{}", text(&r.out));
    assert!(r.out.stdout.is_empty());
}

/// One bad request: what it is, its variables and stdin, the code it must get, and what the
/// message must name.
struct BadInput {
    what: &'static str,
    env: Vec<(&'static str, String)>,
    stdin: String,
    want: u64,
    names: String,
}

impl BadInput {
    fn new(
        what: &'static str,
        env: Vec<(&'static str, String)>,
        stdin: &str,
        want: u64,
        names: &str,
    ) -> Self {
        BadInput {
            what,
            env,
            stdin: stdin.into(),
            want,
            names: names.into(),
        }
    }
}

#[test]
fn each_bad_input_gets_the_specs_code_on_stdout_a_non_zero_exit_and_leaves_nothing() {
    let Some(node) = Node::new() else { return };
    let c1 = node.container("c1");
    let conf = node.conf().to_string();
    let mut old = node.conf();
    old["cniVersion"] = json!("0.9.9");
    let old = old.to_string();
    let mut no_daemon = node.conf();
    no_daemon["subnetFile"] = json!(node.dir.path().join("absent/subnet.json"));
    let no_daemon = no_daemon.to_string();
    let path = c1.path();
    let gone = format!("/run/netns/{}-gone", node.prefix);
    // ADD's variables, with CNI_NETNS = `netns` (none if empty) and without `drop`.
    let env = |netns: &str, drop: &str| -> Vec<(&'static str, String)> {
        let all = [
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", c1.name.as_str()),
            ("CNI_NETNS", netns),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", CNI_PATH),
        ];
        all.into_iter()
            .filter(|(k, v)| *k != drop && !v.is_empty())
            .map(|(k, v)| (k, v.to_string()))
            .collect()
    };
    let cases = [
        BadInput::new(
            "malformed JSON",
            env(&path, ""),
            "{\"cniVersion\": ",
            6,
            "stdin",
        ),
        BadInput::new("unknown cniVersion", env(&path, ""), &old, 1, "cniVersion"),
        BadInput::new(
            "no CNI_NETNS",
            env(&path, "CNI_NETNS"),
            &conf,
            4,
            "CNI_NETNS",
        ),
        BadInput::new(
            "no CNI_CONTAINERID",
            env(&path, "CNI_CONTAINERID"),
            &conf,
            4,
            "CNI_CONTAINERID",
        ),
        BadInput::new("netns does not exist", env(&gone, ""), &conf, 3, &gone),
        BadInput::new("no daemon", env(&path, ""), &no_daemon, 11, "subnetFile"),
    ];
    for BadInput {
        what,
        env,
        stdin,
        want,
        names,
    } in cases
    {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = node.run(&env, stdin.as_bytes());
        let (code, msg) = r.error();
        assert_eq!(code, want, "{what}: {msg}");
        assert!(msg.contains(&names), "{what}: {msg:?} should name {names}");
        assert_ne!(r.out.status.code(), Some(0), "{what}");
        println!("{what}: code {code}: {msg}");
    }
    assert_eq!(
        node.reservations(),
        Vec::<String>::new(),
        "no reservation left"
    );
    assert_eq!(node.links(), Vec::<String>::new(), "no bridge or veth left");
    assert_eq!(node.cached(), 0);
    let inside = c1.exec("ip", &["-o", "link", "show"]);
    assert!(
        !String::from_utf8_lossy(&inside.stdout).contains("eth0"),
        "{}",
        text(&inside)
    );
}

/// Runs `ip args…` in `ns` and fails the test naming the command if it fails.
fn ip(ns: &Netns, args: &[&str]) {
    let out = ns.exec("ip", args);
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        text(&out)
    );
}

#[test]
fn masquerade_rewrites_only_traffic_leaving_the_cluster() {
    let Some(node) = Node::new() else { return };
    let c1 = node.container("c1");
    let (a1, _) = addresses(&node.add(&c1));

    // Upstream of the node: 10.244.2.1 stands for another node's pod (the mesh routes it and
    // routes this node's pods back), 192.0.2.2 for the internet. Its input filter lets a pod's
    // address reach only the former and the node's own address only the latter, so each ping
    // answers only if masquerade was applied exactly where it should be.
    let up = node.container("up");
    let node_side = format!("{}up", node.prefix);
    ip(
        &node.ns,
        &[
            "link", "add", &node_side, "type", "veth", "peer", "name", "eth0", "netns", &up.name,
        ],
    );
    ip(
        &node.ns,
        &["addr", "add", "100.64.0.1/30", "dev", &node_side],
    );
    ip(&node.ns, &["link", "set", &node_side, "up"]);
    ip(
        &node.ns,
        &["route", "add", "10.244.2.0/24", "via", "100.64.0.2"],
    );
    ip(
        &node.ns,
        &["route", "add", "192.0.2.0/24", "via", "100.64.0.2"],
    );
    ip(&up, &["addr", "add", "100.64.0.2/30", "dev", "eth0"]);
    ip(&up, &["addr", "add", "10.244.2.1/32", "dev", "eth0"]);
    ip(&up, &["addr", "add", "192.0.2.2/32", "dev", "eth0"]);
    ip(&up, &["link", "set", "eth0", "up"]);
    ip(&up, &["route", "add", "10.244.1.0/24", "via", "100.64.0.1"]);
    let filter = "add table ip only { chain input { type filter hook input priority 0; \
        ip daddr 10.244.2.1 ip saddr != 10.244.1.0/24 drop; \
        ip daddr 192.0.2.2 ip saddr != 100.64.0.1 drop; }; }";
    let nft = up.exec("nft", &[filter]);
    assert!(nft.status.success(), "{}", text(&nft));

    assert_pings(&c1, "10.244.2.1");
    assert_pings(&c1, "192.0.2.2");
    println!("{a1} reaches another node's pod unrewritten and the outside masqueraded");

    // ipMasq off: the next ADD takes the network's masquerade away.
    let mut off = node.conf();
    off["ipMasq"] = json!(false);
    let c2 = node.container("c2");
    let r = node.attach("ADD", &c2.name, &c2.path(), &off);
    assert!(r.ok(), "{}", text(&r.out));
    assert!(
        ping(&c1, "192.0.2.2").is_err(),
        "no masquerade once ipMasq is false"
    );
    assert_pings(&c1, "10.244.2.1");
}

#[test]
fn portmap_chained_after_the_plugin_maps_a_host_port_to_the_container() {
    let Some(node) = Node::new() else { return };
    let c1 = node.container("c1");
    // Debian's portmap (1.1.1) speaks up to 1.0.0: a conflist chaining it says 1.0.0.
    let mut conf = node.conf();
    conf["cniVersion"] = json!("1.0.0");
    let added = node.attach("ADD", &c1.name, &c1.path(), &conf);
    assert!(added.ok(), "{}", text(&added.out));
    let result = added.json();
    assert_eq!(result["cniVersion"], "1.0.0");
    let (a1, _) = addresses(&result);

    // The runtime's next step in the chain: portmap, our result as prevResult.
    let portmap = format!("{CNI_PATH}/portmap");
    let pm = json!({"cniVersion": "1.0.0", "name": node.network(), "type": "portmap",
        "runtimeConfig": {"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]},
        "prevResult": result});
    let r = node.attach_plugin(&portmap, "ADD", &c1.name, &c1.path(), &pm);
    assert!(r.ok(), "portmap ADD: {}", text(&r.out));
    assert_eq!(
        r.json()["ips"],
        result["ips"],
        "portmap passes our result on"
    );
    let nat = node.ns.exec("iptables", &["-t", "nat", "-S"]);
    let rules = String::from_utf8_lossy(&nat.stdout).into_owned();
    assert!(
        rules.contains(&format!("--to-destination {a1}:80")),
        "{rules}"
    );

    // DEL in reverse order, as a runtime does.
    let r = node.attach_plugin(&portmap, "DEL", &c1.name, &c1.path(), &pm);
    assert!(r.ok(), "portmap DEL: {}", text(&r.out));
    let r = node.attach("DEL", &c1.name, &c1.path(), &conf);
    assert!(r.ok(), "DEL: {}", text(&r.out));
    let nat = node.ns.exec("iptables", &["-t", "nat", "-S"]);
    assert!(
        !String::from_utf8_lossy(&nat.stdout).contains(&a1),
        "{}",
        text(&nat)
    );
}
