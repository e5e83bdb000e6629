//! Taking a pod CIDR through etcd: `core/registry/alloc` decides, `io/etcd` runs the
//! transactions. Shared by the daemon's first start, `wiremesh registry grant` and the tests.

use crate::core::registry::alloc::{AllocError, Allocator, Decision};
use crate::core::registry::keys::Layout;
use crate::core::registry::validate::{Claim, Settings};
use crate::core::registry::{Snapshot, TxnOutcome};
use crate::io::etcd::{Etcd, EtcdError};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error(transparent)]
    Etcd(#[from] EtcdError),
    #[error(transparent)]
    Alloc(#[from] AllocError),
}

/// What a claim cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Taken {
    pub claim: Claim,
    /// Transactions run: 1 when the first choice was free, 0 when the claim existed.
    pub rounds: u32,
}

/// Takes (or adopts) `name`'s claim over the mesh `snapshot` shows, writing `record` (if any)
/// in the same transaction. A lost round waits a jittered moment so racers spread out.
pub async fn take_claim(
    etcd: &mut Etcd,
    layout: &Layout,
    settings: &Settings,
    snapshot: &Snapshot,
    name: &str,
    record: Option<Vec<u8>>,
) -> Result<Taken, JoinError> {
    let mut allocator = Allocator::new(layout, settings, snapshot, name, record);
    let mut rounds = 0;
    loop {
        match allocator.decide()? {
            Decision::Adopt(claim) => return Ok(Taken { claim, rounds }),
            Decision::Try { claim, txn } => {
                rounds += 1;
                match etcd.txn(&txn).await? {
                    TxnOutcome::Committed(_) => return Ok(Taken { claim, rounds }),
                    TxnOutcome::Conflict(found) => {
                        allocator.handle_conflict(&found);
                        tokio::time::sleep(lost_round_pause(rounds)).await;
                    }
                }
            }
        }
    }
}

/// 0–10 ms times the rounds lost so far, from the OS's random source.
fn lost_round_pause(rounds: u32) -> Duration {
    use rand_core::RngCore;
    let jitter = rand_core::OsRng.next_u64() % 10_000;
    Duration::from_micros(jitter * u64::from(rounds.min(8)))
}
