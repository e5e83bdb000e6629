//! The device's network policy (docs/policy.md, section 9): the compiled [`Policy`], swapped
//! whole on reload, and the connection table it keeps, which the inbound, fast-lane and
//! outbound threads share.
//!
//! While the policy is permissive (no rule, default allow) a packet costs one atomic load here
//! and no table exists: a mesh without policy pays nothing for the feature. The table is made
//! when the first enforcing policy arrives and kept after, so a reload to a permissive policy
//! and back does not forget the flows.
//!
//! The table is one, behind one lock, held for a lookup and an update (tens of nanoseconds).
//! Shards chosen by address pair were tried and dropped: one busy pair of hosts could then use
//! only its shard's share of the bound, and a flood between two hosts (the lab's) filled an
//! eighth of the table and evicted from it. A packet's keys (its flow, its fragments, the flow
//! an ICMP error quotes) must meet in one table, so finer locking would be per bucket.

use crate::constants::{CONNTRACK_CAPACITY, POLICY_NOTICES_PER_SECOND, POLICY_REJECTS_PER_SECOND};
use crate::core::policy::flow::Flow;
use crate::core::policy::{reject, ConnTrack, Decision, Policy, Reason, Verdict};
use arc_swap::ArcSwap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// What the data path does with a packet the policy judged.
pub(super) enum Filtered {
    Pass,
    Drop,
    /// Drop, and send this ICMP "administratively prohibited" to the packet's sender.
    Reject(Vec<u8>),
}

/// Which way a packet crosses the node, for log lines.
#[derive(Debug, Clone, Copy)]
pub(super) enum Direction {
    /// Read from the tun device, about to be encrypted (the sender's early check).
    Out,
    /// Decrypted, about to be written to the tun device (the receiver's authoritative check).
    In,
}

/// The policy one I/O loop judges with, kept in its [`Scratch`](super::Scratch) and refreshed
/// only when a reload changed it: a packet then costs one plain load of the version instead of
/// the `ArcSwap` guard's atomic read-modify-writes (measured: the guard and the table's lock
/// were most of the policy's 3 % of the daemons' CPU at 3 Gbit/s).
#[derive(Default)]
pub struct PolicyView {
    version: u64,
    policy: Option<Arc<Policy>>,
}

pub(super) struct Firewall {
    policy: ArcSwap<Policy>,
    /// One more at each [`Firewall::set`], after the store: what a [`PolicyView`] compares.
    version: AtomicU64,
    table: OnceLock<Mutex<ConnTrack>>,
    /// Keys the table's hash, so a sender cannot aim its flows at one bucket.
    seed: [u64; 2],
    /// The table's epoch: the first `now` the device saw.
    epoch: Instant,
    rejects: Budget,
    notices: Budget,
}

impl Firewall {
    /// A firewall with the permissive policy: nothing is judged until [`Firewall::set`].
    pub(super) fn new(seed: [u64; 2], now: Instant) -> Firewall {
        Firewall {
            policy: ArcSwap::from_pointee(Policy::permissive()),
            version: AtomicU64::new(1),
            table: OnceLock::new(),
            seed,
            epoch: now,
            rejects: Budget::new(POLICY_REJECTS_PER_SECOND, now),
            notices: Budget::new(POLICY_NOTICES_PER_SECOND, now),
        }
    }

    /// Puts `policy` in force for every packet judged after this returns. Flows it no longer
    /// allows are revoked on their next packet; flows it still allows go on untouched.
    pub(super) fn set(&self, policy: Arc<Policy>) {
        if !policy.is_permissive() {
            self.table.get_or_init(|| {
                Mutex::new(ConnTrack::new(CONNTRACK_CAPACITY, self.seed, self.epoch))
            });
        }
        self.policy.store(policy);
        self.version.fetch_add(1, Ordering::Release);
    }

    pub(super) fn policy(&self) -> Arc<Policy> {
        self.policy.load_full()
    }

    /// Entries alive at `now` and the table's capacity (both 0 until a policy is enforced); a
    /// walk over the table: for metrics and status, not per packet.
    pub(super) fn table_use(&self, now: Instant) -> TableUse {
        let Some(table) = self.table.get() else {
            return TableUse::default();
        };
        let t = lock(table);
        let stats = t.stats();
        TableUse {
            live: t.live(now),
            capacity: t.capacity(),
            evicted: stats.evicted,
            full: stats.full,
        }
    }

    /// Judges `pkt` at `now` with the loop's `view` of the policy; `dir` only names the check
    /// in log lines.
    pub(super) fn filter(
        &self,
        view: &mut PolicyView,
        pkt: &[u8],
        now: Instant,
        dir: Direction,
    ) -> Filtered {
        let version = self.version.load(Ordering::Acquire);
        let policy = match &view.policy {
            Some(p) if view.version == version => p,
            _ => {
                view.version = version;
                view.policy.insert(self.policy.load_full())
            }
        };
        if policy.is_permissive() {
            return Filtered::Pass;
        }
        let decision = match Flow::parse(pkt) {
            Ok(flow) => {
                let Some(table) = self.table.get() else {
                    // set() makes the table before it stores an enforcing policy
                    return Filtered::Drop;
                };
                policy.check(&mut lock(table), &flow, now)
            }
            Err(_) => policy.unreadable(),
        };
        self.note(policy, &decision, pkt, now, dir);
        match decision.verdict {
            Verdict::Pass => Filtered::Pass,
            Verdict::Drop => Filtered::Drop,
            Verdict::Reject if self.rejects.take(now) => match reject::answer(pkt) {
                Some(answer) => Filtered::Reject(answer),
                None => Filtered::Drop,
            },
            Verdict::Reject => Filtered::Drop,
        }
    }

    /// Log lines for what an operator asked to see (a `log` rule) or should know (audit mode's
    /// "would deny"), within a budget per second: a flood must not become a flood of lines.
    fn note(&self, policy: &Policy, d: &Decision, pkt: &[u8], now: Instant, dir: Direction) {
        if d.logged.is_none() && !d.would_deny {
            return;
        }
        if !self.notices.take(now) {
            return;
        }
        let Ok(flow) = Flow::parse(pkt) else { return };
        let t = flow.tuple;
        let name = |id: u32| policy.rules.get(id as usize).map(|r| r.name.as_str());
        if let Some(id) = d.logged {
            tracing::info!(
                rule = name(id).unwrap_or("?"),
                ?dir,
                src = %t.src, dst = %t.dst, proto = t.proto, port = t.dst_port,
                "policy log"
            );
        }
        if d.would_deny {
            let rule = match d.reason {
                Reason::Rule(id) => name(id).unwrap_or("?"),
                Reason::Default => "default-action",
                _ => "",
            };
            tracing::info!(
                rule, reason = ?d.reason, ?dir,
                src = %t.src, dst = %t.dst, proto = t.proto, port = t.dst_port,
                "policy would deny (audit mode)"
            );
        }
    }
}

/// How full the connection tables are.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TableUse {
    pub live: usize,
    pub capacity: usize,
    /// Unanswered flows pushed out by new ones.
    pub evicted: u64,
    /// New flows refused for want of room (failed closed).
    pub full: u64,
}

/// A table whose holder panicked is still a consistent table: every change to it is a few
/// stores, none of which can panic halfway.
fn lock(t: &Mutex<ConnTrack>) -> std::sync::MutexGuard<'_, ConnTrack> {
    t.lock().unwrap_or_else(|e| e.into_inner())
}

/// At most `per_second` events in each second.
struct Budget {
    per_second: u32,
    window: Mutex<(Instant, u32)>,
}

impl Budget {
    fn new(per_second: u32, now: Instant) -> Budget {
        Budget {
            per_second,
            window: Mutex::new((now, 0)),
        }
    }

    fn take(&self, now: Instant) -> bool {
        let mut w = self.window.lock().unwrap_or_else(|e| e.into_inner());
        if now.saturating_duration_since(w.0) >= Duration::from_secs(1) {
            *w = (now, 0);
        }
        if w.1 >= self.per_second {
            return false;
        }
        w.1 += 1;
        true
    }
}
