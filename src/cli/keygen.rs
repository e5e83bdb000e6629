//! `wiremesh keygen`: a private key file (0600) and the matching public key, in the base64 form
//! `wg pubkey` produces, so keys move freely between wiremesh and stock WireGuard.

use crate::io::keyfile;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct KeygenArgs {
    /// Write `<dir>/<node>.key` and `<dir>/<node>.pub`.
    #[arg(long)]
    pub node: Option<String>,
    /// Directory for `--node` (default `keys`).
    #[arg(long, default_value = "keys")]
    pub dir: PathBuf,
    /// Private key path (instead of --node).
    #[arg(long, short, conflicts_with = "node")]
    pub out: Option<PathBuf>,
    /// Replace an existing key file.
    #[arg(long)]
    pub force: bool,
}

pub fn run(args: KeygenArgs) -> anyhow::Result<()> {
    let key = crate::io::keyfile::generate();
    let private = match (&args.node, &args.out) {
        (Some(node), _) => {
            std::fs::create_dir_all(&args.dir)?;
            Some(args.dir.join(format!("{node}.key")))
        }
        (None, Some(out)) => Some(out.clone()),
        (None, None) => None,
    };
    match private {
        Some(path) => {
            keyfile::write_private(&path, &key, args.force)?;
            let public = path.with_extension("pub");
            std::fs::write(&public, format!("{}\n", key.public_key()))?;
            eprintln!("wrote {} (0600) and {}", path.display(), public.display());
        }
        None => {
            anyhow::bail!("say where the private key goes: --node NAME [--dir DIR] or --out FILE")
        }
    }
    println!("{}", key.public_key());
    Ok(())
}
