//! [`Lab`]'s containers: attached to the nodes through the plugin chain of
//! [`super::containers`], recorded in `state.json` (namespace first, so teardown finds it), and
//! removed with DEL before the nodes go.

use super::containers::{self, Attached, Container};
use super::harness::Lab;
use super::netns;
use super::LabError;
use std::net::IpAddr;

impl Lab {
    /// Attaches `per_node` containers to every node through its plugin chain (see
    /// [`super::containers`]), each node once its daemon has published its node state.
    pub fn attach_containers(&mut self, per_node: usize) -> Result<(), LabError> {
        if per_node == 0 {
            return Ok(());
        }
        for node in self.nodes() {
            for _ in 0..per_node {
                self.add_container(&node)?;
            }
        }
        Ok(())
    }

    /// Adds one container to `node`: a new namespace, then the conflist's ADD, as a runtime
    /// runs it. The namespace is recorded before it is made, so teardown finds it.
    pub fn add_container(&mut self, node: &str) -> Result<Attached, LabError> {
        let idx = self.node_index(node)?;
        let layout = self.state.layout.nodes[idx].clone();
        let prefix = self.prefix().to_string();
        if !self.dir.conflist(node).exists() {
            containers::wait_node_state(&layout, self.ready_timeout)?;
            containers::prepare_node(&self.dir, &prefix, idx, &layout)?;
        }
        if self.state.cni_path.is_empty() {
            self.state.cni_path = containers::cni_path(&self.exe);
        }
        let n = (0..)
            .find(|n| {
                let ns = containers::container_ns(&prefix, idx, *n);
                !self.state.namespaces.contains(&ns)
            })
            .expect("a free container number");
        let ns = containers::container_ns(&prefix, idx, n);
        let mut container = Container {
            name: format!("{node}/c{n}"),
            node: node.to_string(),
            ns: ns.clone(),
            addrs: Vec::new(),
        };
        self.state.namespaces.push(ns.clone());
        self.state.containers.push(container.clone());
        self.dir.save(&self.state)?;
        netns::ip(&["netns", "add", &ns])?;
        netns::ip_in(&ns, &["link", "set", "lo", "up"])?;
        let started = std::time::Instant::now();
        let result = containers::run_chain(
            "ADD",
            &self.dir.conflist(node),
            &layout.ns,
            &ns,
            &self.state.cni_path,
        )?;
        let add_took = started.elapsed();
        container.addrs = containers::sorted_addrs(containers::result_addrs(&result));
        if container.addrs.is_empty() {
            return Err(LabError::Cni {
                container: ns,
                message: format!("ADD result has no address: {result}"),
            });
        }
        if let Some(c) = self.state.containers.iter_mut().find(|c| c.ns == ns) {
            *c = container.clone();
        }
        self.dir.save(&self.state)?;
        Ok(Attached {
            container,
            add_took,
        })
    }

    /// Runs DEL for one container and deletes its namespace; both are tried even when the
    /// other fails, and the container leaves the state either way (`lab down` deletes every
    /// `P-*` namespace).
    pub fn remove_container(&mut self, ns: &str) -> Result<(), LabError> {
        let Some(pos) = self.state.containers.iter().position(|c| c.ns == ns) else {
            return Err(LabError::UnknownNode(ns.into()));
        };
        let c = self.state.containers[pos].clone();
        let node_ns = self.node_ns(&c.node)?.to_string();
        let mut first = containers::run_chain(
            "DEL",
            &self.dir.conflist(&c.node),
            &node_ns,
            &c.ns,
            &self.state.cni_path,
        )
        .err();
        if netns::exists(&c.ns)? {
            if let Err(e) = netns::ip(&["netns", "delete", &c.ns]) {
                first.get_or_insert(e);
            }
        }
        self.state.containers.remove(pos);
        self.state.namespaces.retain(|n| *n != c.ns);
        if let Err(e) = self.dir.save(&self.state) {
            first.get_or_insert(e);
        }
        first.map_or(Ok(()), Err)
    }

    /// Removes every container (newest first), then each node's container bridge, reporting the
    /// first failure after trying them all.
    pub fn remove_containers(&mut self) -> Result<(), LabError> {
        let mut first = None;
        let all: Vec<String> = self
            .state
            .containers
            .iter()
            .rev()
            .map(|c| c.ns.clone())
            .collect();
        for ns in all {
            if let Err(e) = self.remove_container(&ns) {
                first.get_or_insert(e);
            }
        }
        let prefix = self.prefix().to_string();
        let existing = netns::list()?;
        for (idx, node) in self.state.layout.nodes.iter().enumerate() {
            if !self.dir.conflist(&node.name).exists() || !existing.contains(&node.ns) {
                continue;
            }
            let bridge = containers::bridge_name(&prefix, idx);
            let out = netns::exec_in(&node.ns, &["ip", "link", "del", &bridge])?;
            let stderr = String::from_utf8_lossy(&out.stderr);
            if !out.status.success() && !stderr.contains("Cannot find device") {
                first.get_or_insert(LabError::Command {
                    command: format!("ip -n {} link del {bridge}", node.ns),
                    stderr: stderr.trim().to_string(),
                });
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// The containers attached, in the order they were added.
    pub fn containers(&self) -> &[Container] {
        &self.state.containers
    }

    /// The addresses host-local still reserves on a node's network.
    pub fn cni_reservations(&self, node: &str) -> Result<Vec<IpAddr>, LabError> {
        let idx = self.node_index(node)?;
        let layout = &self.state.layout.nodes[idx];
        Ok(containers::reservations(
            &self.dir,
            self.prefix(),
            idx,
            layout,
        ))
    }

    /// host-local's reservation store of a node's network (a directory of files named by the
    /// addresses they reserve).
    pub fn cni_store(&self, node: &str) -> Result<std::path::PathBuf, LabError> {
        let idx = self.node_index(node)?;
        let layout = &self.state.layout.nodes[idx];
        Ok(containers::store(&self.dir, self.prefix(), idx, layout))
    }

    /// The bridge a node's containers hang on, in the node's namespace.
    pub fn cni_bridge(&self, node: &str) -> Result<String, LabError> {
        Ok(containers::bridge_name(
            self.prefix(),
            self.node_index(node)?,
        ))
    }

    pub(super) fn node_index(&self, node: &str) -> Result<usize, LabError> {
        self.state
            .layout
            .nodes
            .iter()
            .position(|n| n.name == node)
            .ok_or_else(|| LabError::UnknownNode(node.into()))
    }
}
