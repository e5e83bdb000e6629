//! At start, before the node state is published, the addresses of containers that went without
//! a DEL are freed in every CNI network of this node (`cni::conflists`, `cni::stale`). An ADD may
//! still run meanwhile against the node state a crashed predecessor left: `stale::sweep_network`
//! holds host-local's lock, so it is never mistaken for an orphan. Nothing here stops the
//! daemon: the mesh does not depend on it, so a failure is logged, naming the file.

use crate::cni::{conflists, stale};
use std::path::Path;

pub fn sweep(conf_dir: &Path, subnet_file: &Path) {
    let (networks, problems) = conflists::networks_of(conf_dir, subnet_file);
    for p in problems {
        tracing::warn!("CNI configuration skipped: {p}");
    }
    let boot = stale::boot_id();
    for net in networks {
        match stale::sweep_network(&net, boot.as_deref()) {
            Ok(s) => {
                for e in &s.errors {
                    tracing::warn!(network = %net.name, "CNI sweep: {e}");
                }
                if !s.gone.is_empty() || !s.reservations.is_empty() {
                    tracing::info!(
                        network = %net.name,
                        containers_gone = s.gone.len(),
                        addresses_freed = s.reservations.len(),
                        "CNI sweep freed the addresses of containers gone without a DEL"
                    );
                }
            }
            Err(e) => tracing::warn!(network = %net.name, "CNI sweep failed: {e}"),
        }
    }
}
