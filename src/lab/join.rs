//! `lab join` and `lab leave` on a lab that runs on a registry: a node added while the mesh
//! runs, with nothing but the registry's address and a fresh key (the running daemons learn of
//! it through their watch), and a node that leaves by SIGTERM (marked `left`; its CIDR kept) or
//! is removed (`--remove`: its CIDR freed).

use super::daemons::{self, Signal};
use super::harness::Lab;
use super::network;
use super::LabError;
use crate::io::keyfile;

/// What a joining node declares.
#[derive(Debug, Clone, Default)]
pub struct JoinOptions {
    pub region: String,
    /// Default: the region's name.
    pub cloud: Option<String>,
    pub hub: bool,
    /// MTU of a new region's underlay (default 1500); an existing region keeps its own.
    pub region_mtu: Option<u16>,
    /// The node's key; a fresh one when `None`. A caller that must know the public key before
    /// the daemon runs (a benchmark timing the join) makes it first.
    pub private_key: Option<crate::core::key::PrivateKey>,
}

impl Lab {
    /// Adds node `name` to the running mesh and waits until its daemon is up.
    pub fn join(&mut self, name: &str, opts: &JoinOptions) -> Result<(), LabError> {
        if self.registry_url().is_none() {
            return Err(LabError::Layout(
                "`lab join` needs a lab on a registry: `lab up --registry etcd`".into(),
            ));
        }
        crate::core::topology::valid_name(name)
            .then_some(())
            .ok_or_else(|| LabError::Layout(format!("'{name}' is not a valid node name")))?;
        let port = crate::constants::DEFAULT_LISTEN_PORT;
        let mtu = opts
            .region_mtu
            .unwrap_or(crate::constants::DEFAULT_UNDERLAY_MTU);
        let (node, new_region) = self.state.layout.add_node(name, &opts.region, mtu, port)?;
        self.dir.save(&self.state)?;
        network::add_node(&mut self.state, &self.dir, &node, new_region.as_ref())?;
        let key = opts.private_key.clone().unwrap_or_else(keyfile::generate);
        keyfile::write_private(&self.dir.key(name), &key, false)?;
        let mut extra = vec![
            "--region".to_string(),
            opts.region.clone(),
            "--cloud".into(),
            opts.cloud.clone().unwrap_or_else(|| opts.region.clone()),
            "--endpoint".into(),
            format!("{}:{}", node.underlay_v4, node.listen_port),
        ];
        if opts.hub {
            extra.push("--hub".into());
        }
        let pid = self.spawn_with(&node, &extra)?;
        daemons::wait_ready(&[(&node, pid)], &self.dir, self.ready_timeout)?;
        self.refresh_topology()
    }

    /// Stops node `name` with SIGTERM (it marks itself `left`) and removes its namespace; with
    /// `remove`, also removes it from the registry, which frees its CIDR.
    pub fn leave(&mut self, name: &str, remove: bool) -> Result<(), LabError> {
        let node = self.state.layout.node(name)?.clone();
        if self.state.daemons.contains_key(name) {
            self.kill_daemon(name, Signal::Term)?;
        }
        if remove {
            let out = self.registry_cli(&["remove", name, "--force"])?;
            if !out.status.success() {
                return Err(LabError::Command {
                    command: format!("wiremesh registry remove {name}"),
                    stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
                });
            }
        }
        self.state.layout.remove_node(name)?;
        network::teardown(std::slice::from_ref(&node.ns))?;
        self.state.namespaces.retain(|ns| *ns != node.ns);
        self.dir.save(&self.state)?;
        let _ = std::fs::remove_file(daemons::socket_path(&node.ifname));
        self.refresh_topology()
    }
}
