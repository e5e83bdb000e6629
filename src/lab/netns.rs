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

/// `ip [-n NS] [-force] -batch -`: many `ip` commands (one per line, without the `ip`) for the
/// cost of one process, which is what keeps building and removing a 64-node lab quick. With
/// `force`, `ip` goes on after a failing line (and still reports it).
pub(crate) fn ip_batch(ns: Option<&str>, lines: &[String], force: bool) -> Result<(), LabError> {
    use std::io::Write;
    use std::process::Stdio;
    if lines.is_empty() {
        return Ok(());
    }
    let mut args: Vec<&str> = Vec::new();
    if let Some(ns) = ns {
        args.extend(["-n", ns]);
    }
    if force {
        args.push("-force");
    }
    args.extend(["-batch", "-"]);
    let script = lines.join("\n") + "\n";
    let command = format!("{} <<< {:?}", command_line("ip", &args), script);
    let fail = |stderr: String| LabError::Command {
        command: command.clone(),
        stderr,
    };
    let mut child = Command::new("ip")
        .args(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(e.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(|e| fail(e.to_string()))?;
    }
    let out = child.wait_with_output().map_err(|e| fail(e.to_string()))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        return Err(fail(if stderr.is_empty() {
            format!("exit status {}", out.status)
        } else {
            stderr
        }));
    }
    Ok(())
}

/// Sets several sysctls inside a namespace with one `sysctl` process.
pub(crate) fn sysctls_in(ns: &str, pairs: &[(&str, &str)]) -> Result<(), LabError> {
    let mut args = vec![
        "netns".to_string(),
        "exec".into(),
        ns.into(),
        "sysctl".into(),
        "-qw".into(),
    ];
    args.extend(pairs.iter().map(|(k, v)| format!("{k}={v}")));
    run("ip", &args).map(drop)
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

/// `nft SCRIPT` inside a namespace.
pub(crate) fn nft(ns: &str, script: &str) -> Result<(), LabError> {
    let out = exec_in(ns, &["nft", script])?;
    if out.status.success() {
        Ok(())
    } else {
        Err(LabError::Command {
            command: format!("ip netns exec {ns} nft {script}"),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
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
    fn an_empty_batch_runs_nothing_and_succeeds() {
        ip_batch(Some("no-such-namespace"), &[], false).unwrap();
    }

    #[test]
    fn a_missing_program_is_a_command_error() {
        let err = run::<&str>("/nonexistent/wiremesh-lab-tool", &[]).unwrap_err();
        assert!(matches!(err, LabError::Command { .. }));
    }
}
