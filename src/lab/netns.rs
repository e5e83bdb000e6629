//! The lab's only contact with the kernel's network configuration: `ip`, `sysctl` and `nft` run as
//! commands, the way `wireguard-go/tests/netns.sh` does it. Every failure becomes
//! [`LabError::Command`] carrying the full command line and its stderr.

use super::LabError;
use std::ffi::OsStr;
use std::process::{Command, Output};

/// Runs a command, returning its stdout when it exits 0.
pub(crate) fn run<S: AsRef<OsStr>>(program: &str, args: &[S]) -> Result<String, LabError> {
    let out = Command::new(program).args(args).output();
    let command = command_line(program, args);
    let out = out.map_err(|e| LabError::Command {
        command: command.clone(),
        stderr: e.to_string(),
    })?;
    if !out.status.success() {
        let mut stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if stderr.is_empty() {
            stderr = format!("exit status {}", out.status);
        }
        return Err(LabError::Command { command, stderr });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn command_line<S: AsRef<OsStr>>(program: &str, args: &[S]) -> String {
    let mut s = program.to_string();
    for a in args {
        s.push(' ');
        s.push_str(&a.as_ref().to_string_lossy());
    }
    s
}

/// `ip ARGS...`.
pub(crate) fn ip(args: &[&str]) -> Result<(), LabError> {
    run("ip", args).map(drop)
}

/// `ip -n NS ARGS...`: an `ip` command inside a namespace.
pub(crate) fn ip_in(ns: &str, args: &[&str]) -> Result<(), LabError> {
    let mut all = vec!["-n", ns];
    all.extend_from_slice(args);
    ip(&all)
}

/// Sets a sysctl inside a namespace (`ip netns exec NS sysctl -qw KEY=VALUE`).
pub(crate) fn sysctl_in(ns: &str, key: &str, value: &str) -> Result<(), LabError> {
    let kv = format!("{key}={value}");
    run("ip", &["netns", "exec", ns, "sysctl", "-qw", &kv]).map(drop)
}

/// Runs any command inside a namespace and returns its output whatever its exit status, so the
/// caller can inspect failures too (`ping` to a black hole is supposed to fail).
pub(crate) fn exec_in<S: AsRef<OsStr>>(ns: &str, args: &[S]) -> Result<Output, LabError> {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns]).args(args);
    cmd.output().map_err(|e| LabError::Command {
        command: command_line("ip netns exec", args),
        stderr: e.to_string(),
    })
}

/// Names of all network namespaces (`ip netns list` prints `name (id: N)`).
pub(crate) fn list() -> Result<Vec<String>, LabError> {
    let out = run::<&str>("ip", &["netns", "list"])?;
    Ok(out
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect())
}

/// Creates a namespace and brings its loopback up.
pub(crate) fn add(ns: &str) -> Result<(), LabError> {
    ip(&["netns", "add", ns])?;
    ip_in(ns, &["link", "set", "lo", "up"])
}

/// Deletes a namespace; one that does not exist is not an error, so teardown is idempotent.
pub(crate) fn delete(ns: &str) -> Result<(), LabError> {
    if !list()?.iter().any(|n| n == ns) {
        return Ok(());
    }
    ip(&["netns", "delete", ns])
}

/// Whether a namespace exists.
pub(crate) fn exists(ns: &str) -> Result<bool, LabError> {
    Ok(list()?.iter().any(|n| n == ns))
}

/// The MTU of a link inside a namespace, read from `/sys` through `ip -o link show`.
pub(crate) fn link_mtu(ns: &str, dev: &str) -> Result<u32, LabError> {
    let out = run("ip", &["-n", ns, "-o", "link", "show", "dev", dev])?;
    let mut words = out.split_whitespace();
    while let Some(w) = words.next() {
        if w == "mtu" {
            if let Some(v) = words.next().and_then(|v| v.parse().ok()) {
                return Ok(v);
            }
        }
    }
    Err(LabError::Command {
        command: format!("ip -n {ns} -o link show dev {dev}"),
        stderr: format!("no mtu in output: {out}"),
    })
}

/// Moves the calling thread into namespace `ns` (only this thread: `setns` is per thread).
pub(crate) fn enter_netns(ns: &str) -> Result<(), String> {
    use std::os::fd::AsRawFd;
    let path = format!("/var/run/netns/{ns}");
    let file = std::fs::File::open(&path).map_err(|e| format!("{path}: {e}"))?;
    // SAFETY: `file` is an open namespace file descriptor; setns affects only this thread.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(format!("setns {path}: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Runs `f` on a fresh thread inside namespace `ns`, so the sockets it opens live there.
/// `f` never runs if the thread cannot enter the namespace.
pub fn in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<Result<T, LabError>> {
    let ns = ns.to_string();
    std::thread::spawn(move || {
        enter_netns(&ns).map_err(|stderr| LabError::Command {
            command: format!("setns into {ns}"),
            stderr,
        })?;
        Ok(f())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_command_names_itself_and_its_stderr() {
        let err = run("sh", &["-c", "echo boom >&2; exit 3"]).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("sh -c"), "{text}");
        assert!(text.contains("boom"), "{text}");
    }

    #[test]
    fn a_missing_program_is_a_command_error() {
        let err = run::<&str>("/nonexistent/wiremesh-lab-tool", &[]).unwrap_err();
        assert!(matches!(err, LabError::Command { .. }));
    }
}
