//! Starting and stopping the per-node daemons. A daemon is signalled only when its pid still
//! names the process the lab started (same start time in `/proc/<pid>/stat`), so a recycled pid
//! never receives a lab's signal.

use super::layout::NodeLayout;
use super::state::{DaemonPid, StateDir};
use super::{io_at, LabError};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a daemon has to create its UAPI socket.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a daemon has to exit after SIGTERM before it gets SIGKILL.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// How often [`wait_ready`] looks for the sockets: often, because the scale benchmarks start
/// their clock when it returns.
const READY_POLL: Duration = Duration::from_millis(2);
/// Log lines quoted in errors.
const LOG_TAIL_LINES: usize = 20;

/// Signals the lab sends to daemons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Reload the topology.
    Hup,
    /// Clean shutdown.
    Term,
    /// Crash without cleanup.
    Kill,
    /// Freeze (a node that stops answering without going away).
    Stop,
    /// Thaw a stopped daemon.
    Cont,
}

impl Signal {
    fn raw(self) -> libc::c_int {
        match self {
            Signal::Hup => libc::SIGHUP,
            Signal::Term => libc::SIGTERM,
            Signal::Kill => libc::SIGKILL,
            Signal::Stop => libc::SIGSTOP,
            Signal::Cont => libc::SIGCONT,
        }
    }
}

/// The UAPI socket a daemon creates when it is ready.
pub fn socket_path(ifname: &str) -> PathBuf {
    Path::new(crate::constants::UAPI_DIR).join(format!("{ifname}.sock"))
}

/// Start time of a process, or `None` when it is gone or a zombie (dead, only not yet reaped).
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; fields after it follow the last ')'.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    if fields.first() == Some(&"Z") {
        return None;
    }
    fields.get(19)?.parse().ok()
}

/// Whether the recorded daemon is still the same running process.
pub fn alive(d: DaemonPid) -> bool {
    start_time(d.pid) == Some(d.start_time)
}

/// Sends a signal to a recorded daemon if it is still the process the lab started.
pub fn signal(d: DaemonPid, sig: Signal) -> bool {
    if !alive(d) {
        return false;
    }
    let Ok(pid) = libc::pid_t::try_from(d.pid) else {
        return false;
    };
    // SAFETY: kill(2) with a pid verified above to be the process this lab started.
    unsafe { libc::kill(pid, sig.raw()) == 0 }
}

/// Spawns `exe up ...` inside the node's namespace, output appended to its log file; `source`
/// says where the topology comes from (`--topology FILE`, or `--registry URL ...`).
pub fn spawn(
    exe: &Path,
    node: &NodeLayout,
    dir: &StateDir,
    source: &[String],
) -> Result<(Child, DaemonPid), LabError> {
    let socket = socket_path(&node.ifname);
    // A socket left by a crashed daemon of this lab would look like readiness.
    let _ = std::fs::remove_file(&socket);
    let log_path = dir.log(&node.name);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(io_at(&log_path))?;
    let err_log = log.try_clone().map_err(io_at(&log_path))?;
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &node.ns])
        .arg(exe)
        .arg("up")
        .args(source)
        .args(["--node", &node.name])
        .arg("--private-key")
        .arg(dir.key(&node.name))
        .args(["--interface", &node.ifname])
        .arg("--cni-conf-dir")
        .arg(dir.cni(&node.name))
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err_log);
    let child = cmd.spawn().map_err(|e| LabError::Command {
        command: format!("ip netns exec {} {} up", node.ns, exe.display()),
        stderr: e.to_string(),
    })?;
    // `ip netns exec` execs the daemon in place (no fork), so the child's pid is the daemon's.
    let pid = child.id();
    let start_time = start_time(pid).unwrap_or(0);
    Ok((child, DaemonPid { pid, start_time }))
}

/// Waits until every node's socket exists; fails naming the first node that exits or times out.
pub fn wait_ready(
    nodes: &[(&NodeLayout, DaemonPid)],
    dir: &StateDir,
    timeout: Duration,
) -> Result<(), LabError> {
    let deadline = Instant::now() + timeout;
    loop {
        let mut pending = None;
        for (node, pid) in nodes {
            if is_ready(node) {
                continue;
            }
            if !alive(*pid) {
                return Err(daemon_error(
                    dir,
                    &node.name,
                    "exited before creating its UAPI socket",
                ));
            }
            pending.get_or_insert(*node);
        }
        let Some(node) = pending else { return Ok(()) };
        if Instant::now() >= deadline {
            let what = format!(
                "did not create {} within {timeout:?}",
                socket_path(&node.ifname).display()
            );
            return Err(daemon_error(dir, &node.name, &what));
        }
        std::thread::sleep(READY_POLL);
    }
}

/// A daemon is ready once its UAPI socket exists: it creates it after its tun device, routes
/// and sessions are set up.
fn is_ready(node: &NodeLayout) -> bool {
    socket_path(&node.ifname).exists()
}

/// Stops a daemon: SIGTERM, then SIGKILL after [`STOP_TIMEOUT`]. Reaps it when it is our child.
pub fn stop(d: DaemonPid, child: Option<&mut Child>) {
    if signal(d, Signal::Cont) {
        signal(d, Signal::Term);
    }
    let deadline = Instant::now() + STOP_TIMEOUT;
    let mut child = child;
    while Instant::now() < deadline {
        if let Some(c) = child.as_deref_mut() {
            if matches!(c.try_wait(), Ok(Some(_))) {
                return;
            }
        }
        if !alive(d) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    signal(d, Signal::Kill);
    if let Some(c) = child {
        let _ = c.wait();
    }
}

/// Stops many daemons at once: SIGTERM to all, then waits for all (SIGKILL to those still
/// running after [`STOP_TIMEOUT`]), so a 64-node lab stops in the time of its slowest daemon.
pub fn stop_all(daemons: Vec<(DaemonPid, Option<Child>)>) {
    for (d, _) in &daemons {
        if signal(*d, Signal::Cont) {
            signal(*d, Signal::Term);
        }
    }
    let deadline = Instant::now() + STOP_TIMEOUT;
    let mut running = daemons;
    while !running.is_empty() && Instant::now() < deadline {
        running.retain_mut(|(d, child)| match child {
            Some(c) => !matches!(c.try_wait(), Ok(Some(_))),
            None => alive(*d),
        });
        if !running.is_empty() {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    for (d, child) in &mut running {
        signal(*d, Signal::Kill);
        if let Some(c) = child {
            let _ = c.wait();
        }
    }
}

/// The last lines of a node's log.
pub fn log_tail(dir: &StateDir, node: &str) -> String {
    let text = std::fs::read_to_string(dir.log(node)).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
}

fn daemon_error(dir: &StateDir, node: &str, what: &str) -> LabError {
    LabError::Daemon {
        node: node.to_string(),
        what: what.to_string(),
        log_tail: log_tail(dir, node),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_own_process_is_alive_and_a_wrong_start_time_is_not() {
        let pid = std::process::id();
        let t = start_time(pid).expect("own stat");
        assert!(alive(DaemonPid { pid, start_time: t }));
        assert!(!alive(DaemonPid {
            pid,
            start_time: t + 1
        }));
    }
}
