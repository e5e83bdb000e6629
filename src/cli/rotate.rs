//! `wiremesh rotate`: asks a running daemon to rotate its static key. The daemon writes the
//! new private key and the topology's public key before using it, announces it to every peer
//! inside their sessions, and refuses the old key once the grace window has passed.

use crate::constants::DEFAULT_INTERFACE;
use crate::io::control_socket::{self, ControlRequest};

#[derive(Debug, clap::Args)]
pub struct RotateArgs {
    /// Interface of the daemon to rotate (default: wm0).
    #[arg(long, short)]
    pub interface: Option<String>,
}

pub fn run(args: RotateArgs) -> anyhow::Result<()> {
    let name = args
        .interface
        .unwrap_or_else(|| DEFAULT_INTERFACE.to_string());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let resp = rt.block_on(control_socket::request(
        &control_socket::socket_path(&name),
        &ControlRequest::Rotate,
    ))?;
    match resp.rotated {
        Some(key) => {
            println!("{key}");
            Ok(())
        }
        None => anyhow::bail!("{name}: the daemon answered without a new key"),
    }
}
