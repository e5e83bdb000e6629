//! Lab nodes that look like separate machines to Ansible: each runs its own `sshd` inside the
//! node's network namespace *and* its own mount namespace, where per-host directories are
//! bind-mounted over `/etc/wiremesh`, `/run/wiremesh` and `/usr/local/bin`. Whatever Ansible
//! starts over SSH (the daemon, through the role's pid-file wrapper) inherits both namespaces.
//!
//! ```text
//!  root ns:  cargo test ──► ip netns exec P-core ansible-playbook  (controller; routes to all)
//!                                   │ ssh root@172.31.r.h (generated client key)
//!  P-<node>: ip netns exec … unshare --mount --propagation private
//!              mount --bind <tmp>/<node>/etc → /etc/wiremesh      (keys, mesh.toml, settings)
//!              mount --bind <tmp>/<node>/run → /run/wiremesh      (pid file, daemon log)
//!              mount --bind <tmp>/<node>/bin → /usr/local/bin     (wiremesh, wiremesh-service)
//!              exec sshd -D -f <tmp>/<node>/sshd_config            (ListenAddress = underlay)
//! ```
//!
//! Dropping the bed stops what it started, by pid only: each host's daemon (from the pid file
//! the role writes) and each sshd; the mount namespaces go with their last process. Mount
//! points it had to create on the real file system are removed again.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use wiremesh::lab::Lab;

/// Directories bind-mounted per host: (name under the host's directory, mount point).
const MOUNTS: [(&str, &str); 3] = [
    ("etc", "/etc/wiremesh"),
    ("run", "/run/wiremesh"),
    ("bin", "/usr/local/bin"),
];

pub struct Host {
    pub node: String,
    pub addr: Ipv4Addr,
    pub ifname: String,
    /// `<tmp>/<node>`: etc/, run/, bin/, sshd_config, host key, sshd.log.
    pub dir: PathBuf,
    sshd: Child,
}

pub struct SshBed {
    dir: tempfile::TempDir,
    client_key: PathBuf,
    pub hosts: Vec<Host>,
    /// Mount points (and /run/sshd) this bed created on the real file system.
    created: Vec<PathBuf>,
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("spawn");
    assert!(out.status.success(), "{cmd:?}: {out:?}");
    out
}

fn keygen(path: &Path) {
    run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "bed", "-f"])
        .arg(path));
}

impl SshBed {
    pub fn new() -> SshBed {
        let dir = tempfile::Builder::new()
            .prefix("wm-ssh-bed")
            .tempdir()
            .unwrap();
        let client_key = dir.path().join("client_key");
        keygen(&client_key);
        let mut created = Vec::new();
        for p in ["/etc/wiremesh", "/run/wiremesh", "/run/sshd"] {
            if !Path::new(p).exists() {
                std::fs::create_dir(p).unwrap();
                created.push(PathBuf::from(p));
            }
        }
        SshBed {
            dir,
            client_key,
            hosts: Vec::new(),
            created,
        }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Starts an sshd for `node` in its namespace and a fresh mount namespace; waits until it
    /// listens.
    pub fn add_host(&mut self, lab: &Lab, node: &str) {
        let hdir = self.dir.path().join(node);
        for (sub, _) in MOUNTS {
            std::fs::create_dir_all(hdir.join(sub)).unwrap();
        }
        let host_key = hdir.join("host_key");
        keygen(&host_key);
        let auth = hdir.join("authorized_keys");
        std::fs::copy(self.client_key.with_extension("pub"), &auth).unwrap();
        let addr = lab.underlay_addr(node).unwrap();
        let config = hdir.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "ListenAddress {addr}:22\nHostKey {}\nPidFile none\nAuthorizedKeysFile {}\n\
                 PermitRootLogin yes\nPubkeyAuthentication yes\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n\
                 Subsystem sftp /usr/lib/openssh/sftp-server\n",
                host_key.display(),
                auth.display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(hdir.join("sshd.log")).unwrap();
        let mut script = String::new();
        for (i, (_, target)) in MOUNTS.iter().enumerate() {
            script.push_str(&format!("mount --bind \"${}\" {target} && ", i + 1));
        }
        script.push_str("exec /usr/sbin/sshd -D -e -f \"$4\"");
        let ns = lab.node_ns(node).unwrap().to_string();
        // `ip netns exec`, `unshare` (without --fork) and `sh -c 'exec …'` all exec, so the
        // child's pid is sshd's.
        let sshd = Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns,
                "unshare",
                "--mount",
                "--propagation",
                "private",
            ])
            .args(["sh", "-c", &script, "bed-sshd"])
            .args(MOUNTS.map(|(sub, _)| hdir.join(sub)))
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let host = Host {
            node: node.into(),
            addr,
            ifname: lab.ifname(node).unwrap().into(),
            dir: hdir.clone(),
            sshd,
        };
        self.hosts.push(host);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = std::fs::read_to_string(hdir.join("sshd.log")).unwrap_or_default();
            if text.contains("Server listening") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "sshd of {node} did not start: {text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn host(&self, node: &str) -> &Host {
        self.hosts.iter().find(|h| h.node == node).unwrap()
    }

    /// The pid the role's wrapper recorded for the host's daemon, if the file exists.
    pub fn daemon_pid(&self, node: &str) -> Option<u32> {
        let text = std::fs::read_to_string(self.host(node).dir.join("run/wiremesh.pid")).ok()?;
        text.trim().parse().ok()
    }

    /// An inventory of `nodes` (in this order) with the bed's connection settings and `vars`.
    pub fn write_inventory(
        &self,
        nodes: &[&str],
        vars: serde_json::Value,
        host_vars: impl Fn(&Host) -> serde_json::Value,
    ) -> PathBuf {
        let mut hosts = serde_json::Map::new();
        for n in nodes {
            let h = self.host(n);
            let mut v = host_vars(h);
            v["ansible_host"] = h.addr.to_string().into();
            hosts.insert(h.node.clone(), v);
        }
        let mut all_vars = vars;
        all_vars["ansible_user"] = "root".into();
        all_vars["ansible_python_interpreter"] = "/usr/bin/python3".into();
        all_vars["ansible_ssh_private_key_file"] = self.client_key.display().to_string().into();
        all_vars["ansible_ssh_common_args"] =
            "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null".into();
        let inventory = serde_json::json!({
            "all": { "vars": all_vars, "children": { "wiremesh": { "hosts": hosts } } }
        });
        let path = self.dir.path().join("inventory.yml");
        // JSON is YAML, and Ansible's YAML inventory plugin reads it.
        std::fs::write(&path, serde_json::to_string_pretty(&inventory).unwrap()).unwrap();
        path
    }

    /// Runs `ansible-playbook` from the lab's core namespace, which routes to every region.
    pub fn playbook(&self, lab: &Lab, playbook: &Path, inventory: &Path) -> Output {
        let local_tmp = self.dir.path().join("ansible-local");
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &lab.layout().core_ns,
                "ansible-playbook",
                "-i",
            ])
            .arg(inventory)
            .arg(playbook)
            .current_dir(playbook.parent().unwrap())
            // No ControlPersist: a lingering SSH master would outlive the test.
            .env(
                "ANSIBLE_SSH_ARGS",
                "-o ControlMaster=no -o ControlPersist=no",
            )
            .env("ANSIBLE_PIPELINING", "True")
            .env("ANSIBLE_HOST_KEY_CHECKING", "False")
            .env("ANSIBLE_NOCOLOR", "1")
            .env("ANSIBLE_RETRY_FILES_ENABLED", "False")
            .env("ANSIBLE_LOCAL_TEMP", &local_tmp)
            .env("ANSIBLE_FORKS", "5")
            .stdin(Stdio::null())
            .output()
            .expect("ansible-playbook")
    }
}

/// Sends `sig` to `pid` and waits up to `wait` for it to go away.
fn kill_and_wait(pid: u32, sig: libc::c_int, wait: Duration) -> bool {
    // SAFETY: kill(2) on a pid this bed started (read from its own pid file or Child).
    unsafe { libc::kill(pid as libc::pid_t, sig) };
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        let gone = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| {
                s.rsplit_once(')')
                    .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
            })
            .unwrap_or(true);
        if gone {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

impl Drop for SshBed {
    fn drop(&mut self) {
        for i in 0..self.hosts.len() {
            let node = self.hosts[i].node.clone();
            if let Some(pid) = self.daemon_pid(&node) {
                // Only if it is still the wiremesh daemon the wrapper started.
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                if String::from_utf8_lossy(&cmdline).contains("wiremesh")
                    && !kill_and_wait(pid, libc::SIGTERM, Duration::from_secs(5))
                {
                    kill_and_wait(pid, libc::SIGKILL, Duration::from_secs(2));
                }
            }
            let _ =
                std::fs::remove_file(format!("/var/run/wireguard/{}.sock", self.hosts[i].ifname));
        }
        for h in &mut self.hosts {
            let _ = h.sshd.kill();
            let _ = h.sshd.wait();
        }
        for p in self.created.iter().rev() {
            let _ = std::fs::remove_dir(p);
        }
    }
}
