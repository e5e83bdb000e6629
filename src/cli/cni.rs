//! `wiremesh cni install`: puts a node's CNI set-up in place, the conflist and the plugin, so a
//! runtime (podman, containerd, CRI-O) finds a network whose pods the mesh carries. Both files
//! are replaced atomically (a runtime reading the directory never sees half a file) and only
//! when their content or mode differs, so a second run changes nothing and says so: the Ansible
//! role reports a change from the `written` lines.

use crate::constants::{CNI_CONF_DIR, CNI_STATE_DIR, DEFAULT_INTERFACE};
use anyhow::{bail, Context as _};
use std::fs::{OpenOptions, Permissions};
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

/// The plugin's file name: also its `type` in the conflist.
const PLUGIN: &str = "wiremesh-cni";
/// Debian's `portmap` (containernetworking-plugins 1.1.1) speaks no version after 1.0.0, and
/// every plugin of a conflist is called with the conflist's version.
const CNI_VERSION: &str = "1.0.0";

#[derive(Debug, clap::Args)]
pub struct CniArgs {
    #[command(subcommand)]
    pub command: CniCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum CniCommand {
    /// Write the conflist and place the plugin; a second run changes nothing.
    Install(InstallArgs),
}

#[derive(Debug, clap::Args)]
pub struct InstallArgs {
    /// The runtime's network configuration directory; the conflist is `<DIR>/10-<name>.conflist`.
    #[arg(long, value_name = "DIR", default_value = CNI_CONF_DIR)]
    pub dir: PathBuf,
    /// The runtime's plugin directory; `wiremesh-cni` is copied into it (mode 0755).
    #[arg(long, value_name = "DIR", default_value = "/opt/cni/bin")]
    pub bin_dir: PathBuf,
    /// The daemon's tun device: its node state is `<state-dir>/<interface>/subnet.json`.
    #[arg(long, short, default_value = DEFAULT_INTERFACE)]
    pub interface: String,
    /// The daemon's `cni_state_dir`.
    #[arg(long, value_name = "DIR", default_value = CNI_STATE_DIR)]
    pub state_dir: PathBuf,
    /// The network's name, as runtimes list it (`podman network ls`).
    #[arg(long, default_value = "wiremesh")]
    pub name: String,
    /// Masquerade pod traffic that leaves the cluster CIDRs.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub ip_masq: bool,
    /// The plugin to install (default: `wiremesh-cni` beside this `wiremesh` executable).
    #[arg(long, value_name = "FILE")]
    pub plugin: Option<PathBuf>,
}

pub fn run(args: CniArgs) -> anyhow::Result<()> {
    match args.command {
        CniCommand::Install(a) => install(&a),
    }
}

/// The conflist for `args`: our plugin pointed at the daemon's node state, then `portmap`.
pub fn conflist(args: &InstallArgs) -> serde_json::Value {
    let subnet_file = crate::io::node_state_file::path(&args.state_dir, &args.interface);
    serde_json::json!({
        "cniVersion": CNI_VERSION,
        "name": args.name,
        "plugins": [
            {
                "type": PLUGIN,
                "subnetFile": subnet_file,
                "ipMasq": args.ip_masq,
            },
            { "type": "portmap", "capabilities": { "portMappings": true } },
        ],
    })
}

fn install(args: &InstallArgs) -> anyhow::Result<()> {
    if !crate::cni::spec::is_valid_identifier(&args.name) {
        bail!(
            "--name {:?}: a network name is an alphanumeric followed by [A-Za-z0-9_.-]",
            args.name
        );
    }
    let plugin = match &args.plugin {
        Some(p) => p.clone(),
        None => std::env::current_exe()
            .context("find the running wiremesh executable")?
            .with_file_name(PLUGIN),
    };
    let binary = std::fs::read(&plugin).with_context(|| {
        format!(
            "read the plugin {} (build it with `cargo build --release`, or say where it is with --plugin)",
            plugin.display()
        )
    })?;
    let mut text = serde_json::to_string_pretty(&conflist(args)).expect("JSON values serialize");
    text.push('\n');
    // Both directories are checked before either file is written: no half-done install.
    writable_dir(&args.bin_dir)?;
    writable_dir(&args.dir)?;
    report(&replace(&args.bin_dir.join(PLUGIN), &binary, 0o755)?);
    report(&replace(
        &args.dir.join(format!("10-{}.conflist", args.name)),
        text.as_bytes(),
        0o644,
    )?);
    Ok(())
}

fn report((path, written): &(PathBuf, bool)) {
    let what = if *written { "written" } else { "unchanged" };
    println!("{what} {}", path.display());
}

/// Creates `dir` when missing and refuses, naming it, when it cannot hold a new file.
fn writable_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("{} is not a directory we can create", dir.display()))?;
    let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
        .with_context(|| format!("{}: a NUL in the path", dir.display()))?;
    // SAFETY: `c` is a valid NUL-terminated path that lives across the call.
    if unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) } != 0 {
        let e = std::io::Error::last_os_error();
        bail!("{} is not writable: {e} (run as root?)", dir.display());
    }
    Ok(())
}

/// Puts `bytes` at `path` with `mode` through a temporary file in the same directory and a
/// rename, unless the file already holds exactly that; returns the path and whether it wrote.
fn replace(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<(PathBuf, bool)> {
    let same_mode = |m: &std::fs::Metadata| m.permissions().mode() & 0o7777 == mode;
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.is_file() && same_mode(&meta) && std::fs::read(path).ok().as_deref() == Some(bytes)
        {
            return Ok((path.to_path_buf(), false));
        }
    }
    let name = path.file_name().expect("a file name").to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        // the umask may have narrowed the mode given at creation
        f.set_permissions(Permissions::from_mode(mode))?;
        f.write_all(bytes)?;
        f.sync_all()?;
        // a busy executable cannot be opened for writing, but it can be renamed over
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(path.parent().unwrap_or(Path::new(".")))?.sync_all()
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("write {}", path.display()));
    }
    Ok((path.to_path_buf(), true))
}
