//! A lab on an etcd registry (`lab up --registry etcd`): real etcd members (Debian's
//! `etcd-server`) in the core namespace at `172.29.0.N`, on its `lo`, which every node reaches
//! through its default route; the derived topology imported as mesh `P` (the lab prefix); and
//! every daemon started with `--registry` instead of `--topology`.

use super::daemons::Signal;
use super::etcd::{Member, MemberSpec, ETCD_READY_TIMEOUT};
use super::harness::Lab;
use super::netns;
use super::state::DaemonPid;
use super::LabError;
use crate::core::topology::Topology;
use serde::{Deserialize, Serialize};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::Output;

/// The most members a lab runs (etcd clusters are 1, 3 or 5).
pub const MAX_MEMBERS: usize = 5;

/// The members of a lab's etcd, as `state.json` records them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabRegistry {
    pub members: Vec<RecordedMember>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedMember {
    pub spec: MemberSpec,
    /// While it runs.
    pub pid: Option<DaemonPid>,
}

impl LabRegistry {
    /// `etcd://172.29.0.1:2379,…`: what the daemons and `wiremesh registry` are given.
    pub fn url(&self) -> String {
        let members: Vec<String> = self
            .members
            .iter()
            .map(|m| m.spec.client.to_string())
            .collect();
        format!("etcd://{}", members.join(","))
    }
}

/// Member `i` (0-based) of the lab's core namespace.
fn member_addr(i: usize, port: u16) -> SocketAddr {
    let host = u8::try_from(i + 1).expect("at most MAX_MEMBERS");
    SocketAddr::from((Ipv4Addr::new(172, 29, 0, host), port))
}

impl Lab {
    /// Starts `members` etcd members in the core namespace, waits until they are healthy and
    /// imports the derived topology as mesh `<prefix>`.
    pub(super) fn start_registry(&mut self, members: usize) -> Result<(), LabError> {
        if members == 0 || members > MAX_MEMBERS || members.is_multiple_of(2) {
            return Err(LabError::Layout(format!(
                "{members} etcd members: a lab runs 1, 3 or 5"
            )));
        }
        let core = self.state.layout.core_ns.clone();
        let lines: Vec<String> = (0..members)
            .map(|i| format!("addr add {}/32 dev lo", member_addr(i, 0).ip()))
            .collect();
        netns::ip_batch(Some(&core), &lines, false)?;
        let cluster: Vec<(String, SocketAddr)> = (0..members)
            .map(|i| (format!("e{}", i + 1), member_addr(i, 2380)))
            .collect();
        let specs: Vec<MemberSpec> = cluster
            .iter()
            .enumerate()
            .map(|(i, (name, peer))| MemberSpec {
                name: name.clone(),
                client: member_addr(i, 2379),
                peer: *peer,
                data_dir: self.dir.etcd().join(name),
                log: self.dir.log(&format!("etcd-{name}")),
                netns: Some(core.clone()),
                cluster: cluster.clone(),
                token: self.state.layout.prefix.clone(),
                tls: None,
            })
            .collect();
        self.state.registry = Some(LabRegistry {
            members: specs
                .iter()
                .map(|spec| RecordedMember {
                    spec: spec.clone(),
                    pid: None,
                })
                .collect(),
        });
        let mut started = Vec::new();
        for (i, spec) in specs.into_iter().enumerate() {
            let member = Member::start(spec)?;
            self.set_member_pid(i, Some(member.pid))?;
            started.push(member);
        }
        for m in &mut started {
            m.wait_healthy(ETCD_READY_TIMEOUT)?;
        }
        let topology = self.dir.topology();
        let out = self.registry_cli(&["import", "-t", &topology.display().to_string()])?;
        if !out.status.success() {
            return Err(LabError::Command {
                command: "wiremesh registry import".into(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(())
    }

    fn set_member_pid(&mut self, i: usize, pid: Option<DaemonPid>) -> Result<(), LabError> {
        if let Some(r) = self.state.registry.as_mut() {
            if let Some(m) = r.members.get_mut(i) {
                m.pid = pid;
            }
        }
        self.dir.save(&self.state)
    }

    /// The registry URL of a lab on etcd.
    pub fn registry_url(&self) -> Option<String> {
        self.state.registry.as_ref().map(LabRegistry::url)
    }

    /// Runs `wiremesh registry ARGS --registry URL --mesh PREFIX` in the core namespace.
    pub fn registry_cli(&self, args: &[&str]) -> Result<Output, LabError> {
        let url = self
            .registry_url()
            .ok_or_else(|| LabError::Layout("this lab does not run on a registry".into()))?;
        let exe = self.exe.display().to_string();
        let mut all = vec![exe.as_str(), "registry"];
        all.extend_from_slice(args);
        all.extend(["--registry", &url, "--mesh", &self.state.layout.prefix]);
        netns::exec_in(&self.state.layout.core_ns, &all)
    }

    /// The recorded member `i` (0-based).
    fn member(&self, i: usize) -> Result<Member, LabError> {
        let m = self
            .state
            .registry
            .as_ref()
            .and_then(|r| r.members.get(i))
            .ok_or_else(|| LabError::Layout(format!("no etcd member {i} in this lab")))?;
        let pid = m.pid.unwrap_or(DaemonPid {
            pid: 0,
            start_time: 0,
        });
        Ok(Member::recorded(m.spec.clone(), pid))
    }

    /// Signals member `i`: `Stop` freezes it (an etcd that hangs), `Cont` thaws it.
    pub fn signal_etcd(&self, i: usize, sig: Signal) -> Result<bool, LabError> {
        Ok(self.member(i)?.signal(sig))
    }

    /// Kills member `i` (its data directory stays).
    pub fn kill_etcd(&mut self, i: usize) -> Result<(), LabError> {
        self.member(i)?.kill();
        self.set_member_pid(i, None)
    }

    /// Starts member `i` again on its data directory and waits until it is healthy.
    pub fn start_etcd(&mut self, i: usize) -> Result<(), LabError> {
        let spec = self.member(i)?.spec;
        let mut member = Member::start(spec)?;
        self.set_member_pid(i, Some(member.pid))?;
        member.wait_healthy(ETCD_READY_TIMEOUT)
    }

    /// Kills every member (teardown, after the daemons are stopped).
    pub(super) fn stop_registry(&mut self) {
        let n = self.state.registry.as_ref().map_or(0, |r| r.members.len());
        for i in 0..n {
            if let Ok(mut m) = self.member(i) {
                if m.pid.pid != 0 {
                    m.kill();
                }
            }
        }
    }

    /// Reads the topology back from the registry (`registry export`), after a join or leave.
    pub fn refresh_topology(&mut self) -> Result<(), LabError> {
        let out = self.registry_cli(&["export"])?;
        if !out.status.success() {
            return Err(LabError::Command {
                command: "wiremesh registry export".into(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let source = std::path::Path::new(&self.registry_url().unwrap_or_default()).to_path_buf();
        self.set_topology(Topology::parse(&text, &source)?);
        Ok(())
    }
}
