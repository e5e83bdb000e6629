//! A real runtime: Debian's podman (4.3, CNI backend) on two lab nodes, with the network
//! `wiremesh cni install` writes. A container on one node pings a container on the other and
//! sends it a checksummed 1 MiB file over the mesh.
//!
//! ```text
//!  <prefix>-a (node a, daemon wm…)              <prefix>-b (node b, daemon wm…)
//!  ┌──────────────────────────────┐             ┌──────────────────────────────┐
//!  │ container a ── wmcni0 ── wm… │◄─ WireGuard ─►│ wm… ── wmcni0 ── container b │
//!  │ (10.244.x.2)                 │   underlay   │                 (10.244.y.2) │
//!  └──────────────────────────────┘             └──────────────────────────────┘
//! ```
//!
//! podman runs as `nsenter --net=/run/netns/NODE podman --runtime runc …`, so the CNI plugins
//! run in the node's namespace and the bridge is made there (`ip netns exec` would remount /sys
//! and hide the cgroup mounts). Each node has its own podman state (`--root`, `--runroot`,
//! `--tmpdir` in a temporary directory), its own containers.conf (CNI backend, the plugin
//! directories, the network directory `wiremesh cni install --dir` wrote) and a network named
//! after the test's prefix, so nothing is shared with another test or the machine's podman.

mod common;

use common::{require_root, running_lab, text, wait_for};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use wiremesh::lab::Lab;

const FILE_BYTES: u64 = 1 << 20;
const PORT: &str = "5000";

/// One node's podman: state, configuration and network of its own, removed when dropped.
struct Podman {
    ns: String,
    network: String,
    image: String,
    dir: tempfile::TempDir,
    containers: Vec<String>,
}

impl Podman {
    /// Installs the CNI network for `node`'s daemon into a fresh directory and imports a
    /// busybox image (no registry is reachable, so the image is built from busybox-static).
    fn new(lab: &Lab, node: &str) -> Podman {
        let dir = tempfile::tempdir().unwrap();
        let network = format!("{}-{node}", lab.prefix());
        let p = Podman {
            ns: lab.node_ns(node).unwrap().to_string(),
            image: format!("localhost/wmbusy-{}:test", network),
            network,
            dir,
            containers: Vec::new(),
        };
        let out = common::wiremesh(&[
            "cni",
            "install",
            "--dir",
            p.path("net.d").to_str().unwrap(),
            "--bin-dir",
            p.path("bin").to_str().unwrap(),
            "--interface",
            lab.ifname(node).unwrap(),
            "--name",
            &p.network,
        ]);
        assert!(out.status.success(), "cni install: {}", text(&out));
        std::fs::write(
            p.path("containers.conf"),
            format!(
                "[network]\nnetwork_backend = \"cni\"\ncni_plugin_dirs = [{:?}, \"/usr/lib/cni\"]\n\
                 network_config_dir = {:?}\n\
                 [engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n\
                 runtime = \"runc\"\n",
                p.path("bin"),
                p.path("net.d")
            ),
        )
        .unwrap();
        p.import_image();
        p
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `podman` with this node's state and configuration, inside the node's namespace.
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{}", self.ns))
            .arg("podman")
            .arg("--root")
            .arg(self.path("root"))
            .arg("--runroot")
            .arg(self.path("runroot"))
            .arg("--tmpdir")
            .arg(self.path("tmp"))
            .args(["--storage-driver", "vfs", "--runtime", "runc"])
            .args(args)
            .env("CONTAINERS_CONF", self.path("containers.conf"));
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run podman")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "podman {args:?}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn import_image(&self) {
        let rootfs = self.path("rootfs");
        std::fs::create_dir_all(rootfs.join("bin")).unwrap();
        std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
        for applet in [
            "sh",
            "ping",
            "nc",
            "sha256sum",
            "ip",
            "head",
            "wc",
            "sleep",
            "cat",
        ] {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
        }
        let mut tar = Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .args(["-c", "."])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let out = self
            .cmd(&["import", "-", &self.image])
            .stdin(tar.stdout.take().unwrap())
            .output()
            .unwrap();
        assert!(
            tar.wait().unwrap().success(),
            "tar of the busybox rootfs failed"
        );
        assert!(out.status.success(), "podman import: {}", text(&out));
    }

    /// Starts a container `name` on the wiremesh network that sleeps until removed.
    fn start(&mut self, name: &str) {
        self.containers.push(name.to_string());
        self.ok(&[
            "run",
            "-d",
            "--name",
            name,
            "--network",
            &self.network,
            // the sandbox has no CAP_SYS_RESOURCE to raise limits past its own
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=1024:1024",
            "--cap-add",
            "NET_RAW",
            &self.image,
            "sleep",
            "3600",
        ]);
    }

    /// The container's IPv4 address on eth0.
    fn ipv4(&self, name: &str) -> String {
        let out = self.ok(&["exec", name, "ip", "-o", "-4", "addr", "show", "eth0"]);
        let cidr = out
            .split_whitespace()
            .skip_while(|w| *w != "inet")
            .nth(1)
            .unwrap_or_else(|| panic!("no IPv4 address on eth0 of {name}: {out}"));
        cidr.split('/').next().unwrap().to_string()
    }

    fn exec(&self, name: &str, script: &str) -> Output {
        self.run(&["exec", name, "sh", "-c", script])
    }

    fn spawn_exec(&self, name: &str, script: &str) -> Child {
        self.cmd(&["exec", name, "sh", "-c", script])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        for c in &self.containers {
            let _ = self.run(&["rm", "-f", "-t", "0", c]);
        }
        let _ = self.run(&["rmi", "-f", &self.image]);
        // what the plugin and host-local keep per network name, shared with the host
        for store in ["/var/lib/cni/networks", "/var/lib/cni/wiremesh"] {
            let _ = std::fs::remove_dir_all(Path::new(store).join(&self.network));
        }
    }
}

fn podman_present() -> bool {
    let found = Command::new("podman")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "podman is missing under CI=true (scripts/install-deps installs it)"
        );
        eprintln!("SKIPPED: podman is not installed (scripts/install-deps)");
    }
    found
}

#[test]
fn podman_containers_on_two_nodes_ping_each_other_and_move_a_file_intact() {
    if !require_root() || !podman_present() {
        return;
    }
    let lab = running_lab("cni-two-regions.toml");
    // Declared after the lab, so they go first: containers before the namespaces.
    let mut a = Podman::new(&lab, "a");
    let mut b = Podman::new(&lab, "b");
    let prefix = lab.prefix().to_string();
    let (ca, cb) = (format!("{prefix}-ca"), format!("{prefix}-cb"));
    let started = Instant::now();
    a.start(&ca);
    b.start(&cb);
    println!("two containers up in {:?}", started.elapsed());
    let (ip_a, ip_b) = (a.ipv4(&ca), b.ipv4(&cb));
    println!("container a {ip_a}, container b {ip_b}");
    assert_ne!(ip_a, ip_b);

    let ping = wait_for(
        Duration::from_secs(20),
        Duration::from_millis(500),
        "ping from container a to container b",
        || {
            let out = a.exec(&ca, &format!("ping -c 3 -W 2 {ip_b}"));
            if out.status.success() {
                Ok(String::from_utf8_lossy(&out.stdout).into_owned())
            } else {
                Err(text(&out))
            }
        },
    );
    println!("{ping}");
    assert!(ping.contains("3 packets received"), "{ping}");
    let out = b.exec(&cb, &format!("ping -c 2 -W 2 {ip_a}"));
    assert!(out.status.success(), "ping b → a: {}", text(&out));

    // The listener's stdin never ends (busybox nc stops at its stdin's end).
    let mut listener = b.spawn_exec(&cb, &format!("sleep 600 | nc -l -p {PORT} > /recv"));
    let made = a.exec(&ca, &format!("head -c {FILE_BYTES} /dev/urandom > /send"));
    assert!(made.status.success(), "{}", text(&made));
    let sent_at = Instant::now();
    let send = wait_for(
        Duration::from_secs(20),
        Duration::from_millis(300),
        "a connection to the listener in container b",
        || {
            let out = a.exec(&ca, &format!("nc {ip_b} {PORT} < /send"));
            if out.status.success() {
                Ok(out)
            } else {
                Err(text(&out))
            }
        },
    );
    let received = wait_for(
        Duration::from_secs(30),
        Duration::from_millis(200),
        "the whole file in container b",
        || {
            let out = b.exec(&cb, "wc -c < /recv");
            let n: u64 = String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse()
                .unwrap_or(0);
            if n == FILE_BYTES {
                Ok(n)
            } else {
                Err(format!("{n} bytes so far; sender: {}", text(&send)))
            }
        },
    );
    let elapsed = sent_at.elapsed();
    let _ = listener.kill();
    let _ = listener.wait();
    let sum = |p: &Podman, c: &str, f: &str| {
        let out = p.exec(c, &format!("sha256sum {f}"));
        assert!(out.status.success(), "{}", text(&out));
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    };
    let (sent, got) = (sum(&a, &ca, "/send"), sum(&b, &cb, "/recv"));
    println!("{received} bytes a → b in {elapsed:?}: sha256 sent {sent} received {got}");
    assert_eq!(sent, got, "the file changed on its way");
}
