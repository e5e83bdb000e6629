//! [`Lab`]: one mesh in namespaces, owned by the process that built it. Dropping it tears
//! everything down (daemons by pid, namespaces, state directory), also when a test panics;
//! [`Lab::detach`] leaves it running for `wiremesh lab up`.

use super::daemons::{self, Signal};
use super::layout::{check_prefix, Layout, NodeLayout};
use super::netns;
use super::network;
use super::ping::{self, PingMatrix};
use super::reach::{probe_all, Reached};
use super::state::{derive_topology, LabState, StateDir};
use super::{io_at, LabError};
use crate::core::topology::Topology;
use crate::io::keyfile;
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Output};
use std::time::Duration;

/// How to build a lab.
#[derive(Debug, Clone)]
pub struct LabOptions {
    /// Short unique prefix of every name the lab creates (see [`super::layout::check_prefix`]).
    pub prefix: String,
    /// The `wiremesh` executable the daemons run (`CARGO_BIN_EXE_wiremesh` in tests).
    pub exe: PathBuf,
    /// Give the nodes IPv6 underlay endpoints (`[fd31:R::H]:port`) instead of IPv4 ones.
    pub ipv6_underlay: bool,
    /// The nodes that get a namespace, a link and a daemon; `None` for all. The others stay in
    /// the topology as peers that never answer: keys that exist nowhere else, and endpoints in
    /// the core namespace's void subnets, where packets are dropped. A hub with thousands of
    /// configured spokes is built this way.
    pub nodes: Option<Vec<String>>,
    /// How long a daemon has to come up ([`super::READY_TIMEOUT`] unless set): one that reads a
    /// topology of thousands of nodes needs longer, more so in a debug build.
    pub ready_timeout: Duration,
    /// Run the mesh on an etcd registry of this many members (1, 3 or 5) instead of the
    /// topology file: `lab up --registry etcd` (see [`super::registry`]).
    pub etcd_members: Option<usize>,
}

impl LabOptions {
    pub fn new(prefix: impl Into<String>, exe: impl Into<PathBuf>) -> Self {
        Self {
            prefix: prefix.into(),
            exe: exe.into(),
            ipv6_underlay: false,
            nodes: None,
            ready_timeout: daemons::READY_TIMEOUT,
            etcd_members: None,
        }
    }
}

/// What `lab status` reports per node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    pub name: String,
    pub ns: String,
    pub ns_exists: bool,
    pub pid: Option<u32>,
    pub alive: bool,
}

/// A mesh on this machine. See the module documentation for the layout.
#[derive(Debug)]
pub struct Lab {
    pub(super) dir: StateDir,
    pub(super) state: LabState,
    /// The derived topology, once written (absent in a half-built lab loaded from disk).
    topology: Option<Topology>,
    pub(super) exe: PathBuf,
    pub(super) ready_timeout: Duration,
    /// Daemons this process spawned, so they are reaped and not left as zombies.
    children: HashMap<String, Child>,
    /// Whether dropping this value tears the lab down: true for a lab this value built, false
    /// after [`Lab::detach`] and for one opened with [`Lab::load`] (so `lab status` failing
    /// halfway never removes a running mesh).
    owned: bool,
}

impl Lab {
    /// Builds namespaces, bridges, links, keys and the derived topology. Starts no daemon.
    pub fn build(topology: &Path, opts: LabOptions) -> Result<Lab, LabError> {
        check_prefix(&opts.prefix)?;
        let text = std::fs::read_to_string(topology).map_err(io_at(topology))?;
        let (user, lab_settings) = Topology::parse_for_lab(&text, topology)?;
        let layout = Layout::with_lab(&opts.prefix, &user, opts.nodes.as_deref(), &lab_settings)?;
        if layout.has_vpc() && opts.etcd_members.is_some() {
            // every endpoint of a VPC lab is scoped, and the registry's import keeps only the
            // unscoped one: the daemons would have none
            return Err(LabError::Layout(
                "a lab.vpc region needs the topology file: the registry's records carry no \
                 scoped endpoints yet (docs/nat.md, section 1)"
                    .into(),
            ));
        }
        let dir = StateDir::for_prefix(&opts.prefix);
        if dir.root().exists() || netns::exists(&layout.core_ns)? {
            return Err(LabError::Exists {
                prefix: opts.prefix,
            });
        }
        dir.create()?;
        let user_topology = std::path::absolute(topology).map_err(io_at(topology))?;
        let state = LabState {
            layout,
            namespaces: Vec::new(),
            user_topology,
            daemons: BTreeMap::new(),
            containers: Vec::new(),
            cni_path: String::new(),
            registry: None,
        };
        dir.save(&state)?;
        // From here on, an early return drops `lab`, which removes whatever was built.
        let mut lab = Lab {
            dir,
            state,
            topology: None,
            exe: opts.exe,
            ready_timeout: opts.ready_timeout,
            children: HashMap::new(),
            owned: true,
        };
        network::build(&mut lab.state, &lab.dir)?;
        for link in &user.lab_links {
            let limit = super::LinkLimit {
                mtu: link.mtu,
                black_hole_above: link.black_hole_above,
            };
            super::links::set(&lab.state.layout, &link.regions.0, &link.regions.1, limit)?;
        }
        let mut public = BTreeMap::new();
        for node in &user.nodes {
            let key = crate::io::keyfile::generate();
            // an absent node's private key is needed nowhere
            if lab.state.layout.node(&node.name).is_ok() {
                keyfile::write_private(&lab.dir.key(&node.name), &key, false)?;
            }
            public.insert(node.name.clone(), key.public_key());
        }
        let derived = derive_topology(
            &text,
            topology,
            &user,
            &lab.state.layout,
            &public,
            opts.ipv6_underlay,
        )?;
        let path = lab.dir.topology();
        std::fs::write(&path, derived).map_err(io_at(&path))?;
        lab.topology = Some(Topology::load(&path)?);
        lab.dir.save(&lab.state)?;
        if let Some(members) = opts.etcd_members {
            lab.start_registry(members)?;
        }
        Ok(lab)
    }

    /// Opens a lab recorded by another process (for `lab status`, `lab down`). Dropping the
    /// result leaves the lab alone; call [`Lab::down`] to remove it.
    pub fn load(prefix: &str) -> Result<Lab, LabError> {
        check_prefix(prefix)?;
        let dir = StateDir::for_prefix(prefix);
        if !dir.state_file().exists() {
            return Err(LabError::NotFound {
                prefix: prefix.into(),
                state: dir.state_file(),
            });
        }
        let state = dir.load()?;
        let topology = Topology::load(&dir.topology()).ok();
        let exe = std::env::current_exe().map_err(io_at("/proc/self/exe"))?;
        let mut lab = Lab {
            dir,
            state,
            topology,
            exe,
            ready_timeout: daemons::READY_TIMEOUT,
            children: HashMap::new(),
            owned: false,
        };
        // on a registry, nodes may have joined since the derived file was written; with etcd
        // away, the file is the best there is
        if lab.state.registry.is_some() {
            let _ = lab.refresh_topology();
        }
        Ok(lab)
    }

    /// Removes the lab with this prefix, whatever state it is in; nothing to remove is success.
    /// Besides what `state.json` records, it deletes every namespace named `<prefix>-*`, which
    /// only a lab of this prefix creates (prefixes contain no `-`).
    pub fn down_prefix(prefix: &str) -> Result<(), LabError> {
        check_prefix(prefix)?;
        let mut first = match Lab::load(prefix) {
            Ok(lab) => lab.down().err(),
            Err(LabError::NotFound { .. }) => None,
            Err(e) => Some(e),
        };
        let ours: Vec<String> = netns::list()?
            .into_iter()
            .filter(|n| n.starts_with(&format!("{prefix}-")))
            .collect();
        if let Err(e) = network::teardown(&ours) {
            first.get_or_insert(e);
        }
        if let Err(e) = StateDir::for_prefix(prefix).remove() {
            first.get_or_insert(e);
        }
        first.map_or(Ok(()), Err)
    }

    /// Starts every node's daemon and waits until each has created its UAPI socket.
    pub fn start_daemons(&mut self) -> Result<(), LabError> {
        let nodes = self.state.layout.nodes.clone();
        let mut started = Vec::new();
        for node in &nodes {
            started.push((node, self.spawn(node)?));
        }
        daemons::wait_ready(&started, &self.dir, self.ready_timeout)
    }

    /// Starts the daemons of `nodes` only (others stay down, e.g. to run a different
    /// implementation there), waiting until each is ready.
    pub fn start_daemons_of(&mut self, nodes: &[&str]) -> Result<(), LabError> {
        let mut layouts = Vec::new();
        for n in nodes {
            layouts.push(self.state.layout.node(n)?.clone());
        }
        let mut started = Vec::new();
        for node in &layouts {
            started.push((node, self.spawn(node)?));
        }
        daemons::wait_ready(&started, &self.dir, self.ready_timeout)
    }

    /// Sets (or, with an empty limit, lifts) the limits of the link between two regions while
    /// the mesh runs.
    pub fn set_link(&self, a: &str, b: &str, limit: super::LinkLimit) -> Result<(), LabError> {
        super::links::set(&self.state.layout, a, b, limit)
    }

    /// Cuts (`up = false`) or restores a node's link to its region's VPC while the mesh runs
    /// (see [`super::vpc`]); an error for a node in no VPC region.
    pub fn set_vpc_link(&self, node: &str, up: bool) -> Result<(), LabError> {
        super::vpc::set_link(self.state.layout.node(node)?, up)
    }

    /// The namespace of a node's NAT router, when it is behind one (`lab.nat`).
    pub fn nat_router(&self, node: &str) -> Result<Option<&str>, LabError> {
        let nat = self.state.layout.node(node)?.nat.as_ref();
        Ok(nat.map(|n| n.router_ns.as_str()))
    }

    /// `conntrack -F` in a node's NAT router: every mapping forgotten (see [`super::nat`]).
    pub fn flush_nat(&self, node: &str) -> Result<(), LabError> {
        super::nat::flush(self.router_of(node)?)
    }

    /// Moves a NATed node's router to a new public IPv4 address (host part + 100): the node's
    /// outer address changes under it, as when a site's uplink is renumbered. Returns the new
    /// address. The lab's records keep the old one.
    pub fn renumber_nat(&self, node: &str) -> Result<std::net::Ipv4Addr, LabError> {
        let router = self.router_of(node)?;
        let n = self.state.layout.node(node)?;
        let region = self
            .state
            .layout
            .region(&n.region)
            .ok_or_else(|| LabError::UnknownNode(node.into()))?;
        let [a, b, c, d] = n.underlay_v4.octets();
        let to = std::net::Ipv4Addr::new(a, b, c, d.wrapping_add(100));
        super::nat::renumber(router, n.underlay_v4, to, region.gateway_v4)?;
        Ok(to)
    }

    /// How many mappings (tracked connections) a node's NAT router holds.
    pub fn nat_mappings(&self, node: &str) -> Result<usize, LabError> {
        super::nat::mappings(self.router_of(node)?)
    }

    fn router_of(&self, node: &str) -> Result<&str, LabError> {
        self.nat_router(node)?.ok_or_else(|| LabError::Command {
            command: format!("lab flush-nat {node}"),
            stderr: format!("node '{node}' is not behind NAT (no lab.nat)"),
        })
    }

    /// A node's overlay addresses (IPv4 first, then IPv6 when dual stack).
    pub fn overlay_addrs(&self, node: &str) -> Result<Vec<std::net::IpAddr>, LabError> {
        self.topology()
            .and_then(|t| t.node(node).ok())
            .map(|n| n.overlay_addrs())
            .ok_or_else(|| LabError::UnknownNode(node.into()))
    }

    /// A checksummed TCP transfer of `bytes` from one node to `to_addr`, an overlay address of
    /// node `to`.
    pub fn transfer(
        &self,
        from: &str,
        to: &str,
        to_addr: std::net::IpAddr,
        bytes: u64,
    ) -> Result<super::Transfer, LabError> {
        super::tcp_transfer(
            self.node_ns(from)?,
            self.node_ns(to)?,
            to_addr,
            5201,
            bytes,
            Duration::from_secs(120),
        )
    }

    pub(super) fn spawn(&mut self, node: &NodeLayout) -> Result<super::state::DaemonPid, LabError> {
        self.spawn_with(node, &[])
    }

    /// Spawns a node's daemon on the lab's source (the derived topology, or the registry),
    /// with `extra` arguments (a joiner's record fields).
    pub(super) fn spawn_with(
        &mut self,
        node: &NodeLayout,
        extra: &[String],
    ) -> Result<super::state::DaemonPid, LabError> {
        let mut args: Vec<String> = match self.registry_url() {
            Some(url) => vec![
                "--registry".into(),
                url,
                "--mesh".into(),
                self.state.layout.prefix.clone(),
                "--registry-snapshot".into(),
                self.dir.registry_snapshot(&node.name).display().to_string(),
            ],
            None => vec![
                "--topology".into(),
                self.dir.topology().display().to_string(),
            ],
        };
        args.extend_from_slice(extra);
        let (child, pid) = daemons::spawn(&self.exe, node, &self.dir, &args)?;
        self.children.insert(node.name.clone(), child);
        self.state.daemons.insert(node.name.clone(), pid);
        self.dir.save(&self.state)?;
        Ok(pid)
    }

    /// Sends a signal to a node's daemon (`Hup` to reload, `Kill` to crash it, `Stop` to freeze).
    pub fn kill_daemon(&mut self, node: &str, signal: Signal) -> Result<(), LabError> {
        let pid = *self
            .state
            .daemons
            .get(node)
            .ok_or_else(|| LabError::UnknownNode(node.into()))?;
        if !daemons::signal(pid, signal) {
            return Err(LabError::Daemon {
                node: node.into(),
                what: "is not running".into(),
                log_tail: daemons::log_tail(&self.dir, node),
            });
        }
        if matches!(signal, Signal::Kill | Signal::Term) {
            daemons::stop(pid, self.children.get_mut(node));
            self.children.remove(node);
            self.state.daemons.remove(node);
            self.dir.save(&self.state)?;
        }
        Ok(())
    }

    /// Stops a node's daemon (if running) and starts it again, waiting until it is ready.
    pub fn restart_daemon(&mut self, node: &str) -> Result<(), LabError> {
        let layout = self.state.layout.node(node)?.clone();
        if let Some(pid) = self.state.daemons.remove(node) {
            daemons::stop(pid, self.children.get_mut(node));
            self.children.remove(node);
        }
        let pid = self.spawn(&layout)?;
        daemons::wait_ready(&[(&layout, pid)], &self.dir, self.ready_timeout)
    }

    /// Runs a command inside a node's namespace; a non-zero exit is in the `Output`, not an error.
    pub fn exec<S: AsRef<std::ffi::OsStr>>(
        &self,
        node: &str,
        args: &[S],
    ) -> Result<Output, LabError> {
        netns::exec_in(self.node_ns(node)?, args)
    }

    /// ICMP echo from a node's namespace to any address; `None` when no reply came in time.
    pub fn ping(
        &self,
        from: &str,
        to: IpAddr,
        timeout: Duration,
    ) -> Result<Option<Duration>, LabError> {
        ping::ping_in_ns(self.node_ns(from)?, to, timeout)
    }

    /// Pings every ordered pair of endpoints (nodes, then containers, see
    /// [`Lab::endpoints`]), A's namespace to B's first address, all at once (one prober thread
    /// per endpoint, see [`super::reach`]).
    pub fn ping_matrix(&self, timeout: Duration) -> Result<PingMatrix, LabError> {
        let reached = self.reach_all(timeout, ping::RESEND)?;
        let rtt = reached
            .into_iter()
            .enumerate()
            .map(|(i, row)| {
                let mut row: Vec<Option<Duration>> =
                    row.into_iter().map(|r| r.map(|r| r.rtt)).collect();
                row.insert(i, None);
                row
            })
            .collect();
        Ok(PingMatrix {
            nodes: self
                .endpoints()?
                .into_iter()
                .map(|(name, ..)| name)
                .collect(),
            rtt,
        })
    }

    /// What the matrix pings between: every node (its namespace, its first overlay address),
    /// then every container (its namespace, its first pod address), as (name, ns, address).
    pub fn endpoints(&self) -> Result<Vec<(String, String, IpAddr)>, LabError> {
        let topology = self.topology.as_ref().ok_or_else(|| LabError::State {
            path: self.dir.topology(),
            message: "the lab has no derived topology (half built?)".into(),
        })?;
        let mut out = Vec::new();
        for n in &self.state.layout.nodes {
            let addr = topology.node(&n.name)?.overlay_addrs()[0];
            out.push((n.name.clone(), n.ns.clone(), addr));
        }
        for c in &self.state.containers {
            if let Some(addr) = c.addrs.first() {
                out.push((c.name.clone(), c.ns.clone(), *addr));
            }
        }
        Ok(out)
    }

    /// For every endpoint (nodes in topology order, then containers), the first echo reply
    /// from every other endpoint's first address (the diagonal left out): who answered, how
    /// fast, and when, counted from this call. Requests are re-sent every `resend` until
    /// `timeout`.
    pub fn reach_all(
        &self,
        timeout: Duration,
        resend: Duration,
    ) -> Result<Vec<Vec<Option<Reached>>>, LabError> {
        let endpoints = self.endpoints()?;
        let sources: Vec<(String, Vec<IpAddr>)> = endpoints
            .iter()
            .enumerate()
            .map(|(i, (_, ns, _))| {
                let others = endpoints
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(_, (_, _, addr))| *addr);
                (ns.clone(), others.collect())
            })
            .collect();
        probe_all(&sources, timeout, resend)
    }

    /// The MTU of a link in one of the lab's namespaces (`eth0` in a node, `br1` in the core).
    pub fn link_mtu(&self, ns: &str, dev: &str) -> Result<u32, LabError> {
        netns::link_mtu(ns, dev)
    }

    /// Node names in topology order.
    pub fn nodes(&self) -> Vec<String> {
        self.state
            .layout
            .nodes
            .iter()
            .map(|n| n.name.clone())
            .collect()
    }
    pub fn prefix(&self) -> &str {
        &self.state.layout.prefix
    }
    pub fn layout(&self) -> &Layout {
        &self.state.layout
    }
    /// The derived topology the daemons read, when it has been written.
    pub(super) fn set_topology(&mut self, topology: Topology) {
        self.topology = Some(topology);
    }

    pub fn topology(&self) -> Option<&Topology> {
        self.topology.as_ref()
    }
    pub fn node_ns(&self, node: &str) -> Result<&str, LabError> {
        Ok(&self.state.layout.node(node)?.ns)
    }
    pub fn ifname(&self, node: &str) -> Result<&str, LabError> {
        Ok(&self.state.layout.node(node)?.ifname)
    }
    /// The node's address on its region's bridge: for a NATed node, its router's (the public
    /// address peers see it from).
    pub fn underlay_addr(&self, node: &str) -> Result<Ipv4Addr, LabError> {
        Ok(self.state.layout.node(node)?.underlay_v4)
    }
    /// The pid of a node's daemon while it runs.
    pub fn daemon_pid(&self, node: &str) -> Option<u32> {
        self.state
            .daemons
            .get(node)
            .filter(|d| daemons::alive(**d))
            .map(|d| d.pid)
    }
    pub fn derived_topology_path(&self) -> PathBuf {
        self.dir.topology()
    }
    pub fn log_path(&self, node: &str) -> PathBuf {
        self.dir.log(node)
    }
    pub fn state_dir(&self) -> &Path {
        self.dir.root()
    }

    /// Per node: does its namespace exist, is its daemon alive.
    pub fn status(&self) -> Result<Vec<NodeStatus>, LabError> {
        let existing = netns::list()?;
        Ok(self
            .state
            .layout
            .nodes
            .iter()
            .map(|n| {
                let d = self.state.daemons.get(&n.name).copied();
                NodeStatus {
                    name: n.name.clone(),
                    ns: n.ns.clone(),
                    ns_exists: existing.contains(&n.ns),
                    pid: d.map(|d| d.pid),
                    alive: d.is_some_and(daemons::alive),
                }
            })
            .collect())
    }

    /// Leaves the lab running after this value is gone (for `wiremesh lab up`).
    pub fn detach(mut self) {
        self.owned = false;
    }

    /// Tears everything down and reports the first failure.
    pub fn down(mut self) -> Result<(), LabError> {
        self.owned = false;
        self.teardown()
    }

    /// Stops every running daemon (all signalled at once, then awaited), leaving the network
    /// in place, e.g. to run another implementation on the same lab.
    pub fn stop_daemons(&mut self) -> Result<(), LabError> {
        self.stop_all();
        self.dir.save(&self.state)
    }

    fn stop_all(&mut self) {
        let daemons = std::mem::take(&mut self.state.daemons);
        let mut children = std::mem::take(&mut self.children);
        let stopping: Vec<_> = daemons
            .iter()
            .map(|(node, pid)| (*pid, children.remove(node)))
            .collect();
        daemons::stop_all(stopping);
    }

    fn teardown(&mut self) -> Result<(), LabError> {
        // DEL while the nodes (and the plugins' stores) still exist
        let mut first = self.remove_containers().err();
        self.stop_all();
        self.stop_registry();
        // a daemon killed with SIGKILL leaves its sockets behind; they name this lab's
        // interfaces only
        for node in &self.state.layout.nodes {
            let _ = std::fs::remove_file(daemons::socket_path(&node.ifname));
            let _ = std::fs::remove_file(crate::io::control_socket::socket_path(&node.ifname));
            let _ = crate::io::node_state_file::remove(
                std::path::Path::new(crate::constants::CNI_STATE_DIR),
                &node.ifname,
            );
        }
        if let Err(e) = network::teardown(&self.state.namespaces) {
            first.get_or_insert(e);
        }
        if let Err(e) = self.dir.remove() {
            first.get_or_insert(e);
        }
        first.map_or(Ok(()), Err)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if self.owned {
            if let Err(e) = self.teardown() {
                eprintln!("wiremesh lab {}: teardown: {e}", self.prefix());
            }
        }
    }
}
