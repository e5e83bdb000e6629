//! A joiner's pod CIDR (docs/registry.md, "Allocation: 20 joiners, 20 CIDRs").
//!
//! *Taken* is every claim's CIDR and every `alloc/` key's, whether or not they agree: an orphaned
//! or forged `alloc/` key then only removes a slot, never hands out a held one. The choice is
//! `core/ipam.rs`'s rule through the same [`Pool`] (the slot the name's hash prefers, probing
//! upwards), not the lowest free slot, on which every simultaneous joiner would fight. One
//! transaction creates the claim and the `alloc/` keys only if all are absent; a conflict's
//! answer shows what stood in the way, which joins *taken* for the next round.
//!
//! Call order: [`Allocator::new`] with a listed snapshot; then [`Allocator::decide`]; run its
//! transaction; on a conflict, [`Allocator::handle_conflict`] and decide again.

use super::keys::{Key, Layout};
use super::records::{encode, AllocValue, ClaimValue, VERSION};
use super::validate::{self, Claim, Settings};
use super::{Kv, Problem, Snapshot, TxnSpec};
use crate::constants::REGISTRY_ALLOC_ROUNDS;
use crate::constants::REGISTRY_VALUE_MAX;
use crate::core::ipam::Pool;
use crate::core::topology::Claims;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// Why no claim could be taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocError {
    #[error(
        "no free pod CIDR left: {field} {pool} holds {slots} /{prefix} slot(s) and every one is \
         taken; declare a larger pool in a new mesh (10.0.0.0/8 holds 65,536 /24s) or \
         `registry remove` nodes that are gone"
    )]
    PoolFull {
        field: &'static str,
        pool: String,
        prefix: u8,
        slots: u128,
    },
    #[error("no pod CIDR after {0} rounds: each chosen slot was taken by another joiner first")]
    TooManyRounds(u32),
    #[error("the node's own claim is invalid:\n  {}",
            .0.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n  "))]
    OwnClaim(Vec<Problem>),
}

/// The CIDRs a claim value names, read leniently: whatever else is wrong with the value (an
/// unknown field, a newer version, host bits), its CIDRs count as held, for joiners (never
/// hand them out) and for gc (never remove their `alloc/` locks).
pub(crate) fn claimed_cidrs(value: &[u8]) -> Vec<IpNet> {
    if value.len() > REGISTRY_VALUE_MAX {
        return Vec::new();
    }
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(value) else {
        return Vec::new();
    };
    ["pod-cidr", "pod-cidr-v6"]
        .iter()
        .filter_map(|field| value.get(field)?.as_str()?.trim().parse::<IpNet>().ok())
        .map(|net| net.trunc())
        .collect()
}

/// What to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The node holds this claim already (a restart, or a retry after a lost answer).
    Adopt(Claim),
    /// Run `txn`; if it commits, the node holds `claim`.
    Try { claim: Claim, txn: TxnSpec },
}

/// One node's attempt to take a claim.
pub struct Allocator {
    layout: Layout,
    name: String,
    /// The node's record, written in the same transaction; `None` when an administrator takes
    /// the claim for a node that has not joined (`registry grant --no-allocate`).
    record: Option<Vec<u8>>,
    pool: Pool,
    pool_v6: Option<Pool>,
    settings: Settings,
    taken: Claims<()>,
    taken_v6: Claims<()>,
    own: Option<Vec<u8>>,
    rounds: u32,
}

impl Allocator {
    /// An allocator for `name` over the mesh `snapshot` shows; `record` is the node's record
    /// value, put in the same transaction as its claim (none: the claim alone).
    pub fn new(
        layout: &Layout,
        settings: &Settings,
        snapshot: &Snapshot,
        name: &str,
        record: Option<Vec<u8>>,
    ) -> Self {
        let mut a = Allocator {
            layout: layout.clone(),
            name: name.to_string(),
            record,
            pool: Pool::v4(settings.mesh.cluster_cidr, settings.mesh.node_prefix),
            pool_v6: settings
                .mesh
                .cluster_cidr_v6
                .map(|c| Pool::v6(c, settings.mesh.node_prefix_v6)),
            settings: settings.clone(),
            taken: Claims::v4(),
            taken_v6: Claims::v6(),
            own: None,
            rounds: 0,
        };
        for kv in snapshot.kvs.values() {
            a.learn(kv);
        }
        a
    }

    /// Adds what `kv` takes; remembers the node's own claim.
    fn learn(&mut self, kv: &Kv) {
        match self.layout.parse(&kv.key) {
            Ok(Key::Claim(name)) if name == self.name => self.own = Some(kv.value.clone()),
            Ok(Key::Claim(_)) => {
                for net in claimed_cidrs(&kv.value) {
                    self.take(net);
                }
            }
            Ok(Key::Alloc(net)) => self.take(net),
            _ => {}
        }
    }

    fn take(&mut self, net: IpNet) {
        match net {
            IpNet::V4(n) => self.taken.insert(n, ()),
            IpNet::V6(n) => self.taken_v6.insert(n, ()),
        }
    }

    /// The claim to adopt, or the next one to try.
    pub fn decide(&mut self) -> Result<Decision, AllocError> {
        if let Some(own) = &self.own {
            let key = self.layout.claim(&self.name);
            return validate::claim(&key, own, &self.settings)
                .map(Decision::Adopt)
                .map_err(AllocError::OwnClaim);
        }
        if self.rounds >= REGISTRY_ALLOC_ROUNDS {
            return Err(AllocError::TooManyRounds(self.rounds));
        }
        self.rounds += 1;
        let full = |field, pool: String, p: &Pool, prefix| AllocError::PoolFull {
            field,
            pool,
            prefix,
            slots: p.slots(),
        };
        let s = &self.settings;
        let v4: Ipv4Net = self
            .pool
            .pick(&self.name, &self.taken)
            .ok_or_else(|| {
                full(
                    "cluster-cidr",
                    s.mesh.cluster_cidr.to_string(),
                    &self.pool,
                    s.mesh.node_prefix,
                )
            })?
            .to_v4();
        let v6: Option<Ipv6Net> = match (&self.pool_v6, s.mesh.cluster_cidr_v6) {
            (Some(pool), Some(cluster)) => Some(
                pool.pick(&self.name, &self.taken_v6)
                    .ok_or_else(|| {
                        full(
                            "cluster-cidr-v6",
                            cluster.to_string(),
                            pool,
                            s.mesh.node_prefix_v6,
                        )
                    })?
                    .to_v6(),
            ),
            _ => None,
        };
        let claim = Claim {
            pod_cidr: v4,
            pod_cidr_v6: v6,
        };
        Ok(Decision::Try {
            claim,
            txn: self.txn(claim),
        })
    }

    /// Claim, `alloc/` keys and record (if any), if the claim and the `alloc/` keys are all
    /// absent.
    fn txn(&self, claim: Claim) -> TxnSpec {
        let claim_key = self.layout.claim(&self.name);
        let value = encode(&ClaimValue {
            v: VERSION,
            pod_cidr: claim.pod_cidr.to_string(),
            pod_cidr_v6: claim.pod_cidr_v6.map(|c| c.to_string()),
        });
        let alloc = encode(&AllocValue {
            v: VERSION,
            node: self.name.clone(),
        });
        let mut txn = TxnSpec::default();
        let locks = [
            Some(IpNet::V4(claim.pod_cidr)),
            claim.pod_cidr_v6.map(IpNet::V6),
        ];
        for net in locks.into_iter().flatten() {
            let key = self.layout.alloc(net);
            txn.compare_absent.push(key.clone());
            txn.puts.push((key, alloc.clone()));
        }
        txn.compare_absent.push(claim_key.clone());
        txn.puts.push((claim_key, value));
        if let Some(record) = &self.record {
            txn.puts
                .push((self.layout.record(&self.name), record.clone()));
        }
        txn.gets_on_failure = txn.compare_absent.clone();
        txn
    }

    /// The answer of a failed transaction: what exists now joins *taken*; the node's own claim
    /// (its earlier attempt committed after all) is adopted at the next [`Allocator::decide`].
    pub fn handle_conflict(&mut self, found: &[Option<Kv>]) {
        for kv in found.iter().flatten() {
            self.learn(kv);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::registry::testing::{key_text, run_txn, settings_json, Builder};
    use crate::core::registry::TxnOutcome;
    use crate::core::topology::Topology;
    use std::path::Path;

    fn settings(dual: bool) -> Settings {
        validate::settings("s", settings_json(dual).as_bytes()).unwrap()
    }

    /// Joins `name` into `etcd` the way the daemon does; returns its claim and the rounds.
    fn join(etcd: &mut Snapshot, s: &Settings, name: &str) -> Result<(Claim, u32), AllocError> {
        let layout = Layout::new("prod").unwrap();
        let mut a = Allocator::new(&layout, s, etcd, name, Some(b"{}".to_vec()));
        loop {
            match a.decide()? {
                Decision::Adopt(c) => return Ok((c, a.rounds)),
                Decision::Try { claim, txn } => match run_txn(etcd, &txn) {
                    TxnOutcome::Committed(_) => return Ok((claim, a.rounds)),
                    TxnOutcome::Conflict(found) => a.handle_conflict(&found),
                },
            }
        }
    }

    #[test]
    fn joiners_into_an_empty_registry_get_what_wiremesh_ipam_gives_them() {
        let names: Vec<String> = (0..40).map(|i| format!("node-{i}")).collect();
        let mut text = String::from(
            "mode = \"full\"\ncluster-cidr = \"10.244.0.0/16\"\ncluster-cidr-v6 = \"fd10:244::/56\"\n",
        );
        for (i, n) in names.iter().enumerate() {
            text.push_str(&format!(
                "[[node]]\nname = \"{n}\"\ncloud = \"c\"\nregion = \"r\"\npublic-key = \"{}\"\n",
                key_text(i as u32)
            ));
        }
        let file = Topology::parse(&text, Path::new("t.toml")).unwrap();
        let s = settings(true);
        let mut etcd = Snapshot::default();
        for n in &file.nodes {
            let (claim, _) = join(&mut etcd, &s, &n.name).unwrap();
            assert_eq!(claim.pod_cidr, n.pod_cidr, "{}", n.name);
            assert_eq!(claim.pod_cidr_v6, n.pod_cidr_v6, "{}", n.name);
        }
    }

    #[test]
    fn a_claim_and_its_locks_are_written_in_one_transaction_with_the_record() {
        let layout = Layout::new("prod").unwrap();
        let mut a = Allocator::new(
            &layout,
            &settings(true),
            &Snapshot::default(),
            "n",
            Some(b"R".to_vec()),
        );
        let Decision::Try { claim, txn } = a.decide().unwrap() else {
            panic!("an empty registry holds no claim of n");
        };
        let keys: Vec<&str> = txn.puts.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                layout.alloc(IpNet::V4(claim.pod_cidr)).as_str(),
                layout.alloc(IpNet::V6(claim.pod_cidr_v6.unwrap())).as_str(),
                "/wiremesh/prod/claims/n",
                "/wiremesh/prod/node/n/record",
            ]
        );
        assert_eq!(txn.compare_absent, keys[..3]);
        assert_eq!(txn.gets_on_failure, keys[..3]);
        assert_eq!(txn.puts[3].1, b"R");
    }

    #[test]
    fn an_administrators_claim_for_a_node_not_yet_joined_writes_no_record() {
        let layout = Layout::new("prod").unwrap();
        let mut a = Allocator::new(&layout, &settings(false), &Snapshot::default(), "n", None);
        let Decision::Try { txn, .. } = a.decide().unwrap() else {
            panic!("an empty registry holds no claim of n");
        };
        let keys: Vec<&str> = txn.puts.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys.len(), 2, "{keys:?}");
        assert_eq!(keys[1], "/wiremesh/prod/claims/n");
    }

    #[test]
    fn joiners_that_all_prefer_one_slot_still_get_distinct_cidrs() {
        // names whose hash prefers the same slot of a /19 of /24s (32 slots)
        let s = validate::settings(
            "s",
            br#"{"v":1,"mode":"full","cluster-cidr":"10.244.0.0/19"}"#,
        )
        .unwrap();
        let pool = Pool::v4(s.mesh.cluster_cidr, 24);
        let empty: Claims<()> = Claims::v4();
        let want = pool.pick("n0", &empty).unwrap();
        let names: Vec<String> = (0..10_000)
            .map(|i| format!("n{i}"))
            .filter(|n| pool.pick(n, &empty) == Some(want))
            .take(20)
            .collect();
        assert_eq!(names.len(), 20);
        // each joiner lists before any other commits, as 20 simultaneous ones do
        let layout = Layout::new("prod").unwrap();
        let listed = Snapshot::default();
        let mut etcd = Snapshot::default();
        let mut joiners: Vec<Allocator> = names
            .iter()
            .map(|n| Allocator::new(&layout, &s, &listed, n, Some(b"{}".to_vec())))
            .collect();
        let mut claims = Vec::new();
        for a in &mut joiners {
            loop {
                match a.decide().unwrap() {
                    Decision::Adopt(c) => break claims.push(c.pod_cidr),
                    Decision::Try { claim, txn } => match run_txn(&mut etcd, &txn) {
                        TxnOutcome::Committed(_) => break claims.push(claim.pod_cidr),
                        TxnOutcome::Conflict(found) => a.handle_conflict(&found),
                    },
                }
            }
        }
        let distinct: std::collections::BTreeSet<_> = claims.iter().collect();
        assert_eq!(distinct.len(), 20, "{claims:?}");
        // the last joiner lost a round to each before it
        assert_eq!(joiners[19].rounds, 20);
    }

    #[test]
    fn a_retry_after_a_lost_answer_adopts_its_own_claim() {
        let s = settings(false);
        let mut etcd = Snapshot::default();
        let (first, _) = join(&mut etcd, &s, "n").unwrap();
        // the answer was lost: the node lists again and finds its claim
        let (again, rounds) = join(&mut etcd, &s, "n").unwrap();
        assert_eq!((again, rounds), (first, 0));
        // or it did not list again: the conflict shows the claim
        let layout = Layout::new("prod").unwrap();
        let mut a = Allocator::new(&layout, &s, &Snapshot::default(), "n", Some(b"{}".to_vec()));
        let Decision::Try { txn, .. } = a.decide().unwrap() else {
            panic!("nothing listed");
        };
        let TxnOutcome::Conflict(found) = run_txn(&mut etcd, &txn) else {
            panic!("the claim exists");
        };
        a.handle_conflict(&found);
        assert_eq!(a.decide().unwrap(), Decision::Adopt(first));
    }

    #[test]
    fn forged_locks_and_claims_only_remove_slots() {
        let s = settings(false);
        let mut b = Builder::new();
        let n_slot = Pool::v4(s.mesh.cluster_cidr, 24)
            .pick("n", &Claims::<()>::v4())
            .unwrap()
            .to_v4();
        // a forged lock on n's slot, a claim (with an unknown field) on the next
        let third = (u16::from(n_slot.network().octets()[2]) + 1) % 256;
        let next: Ipv4Net = format!("10.244.{third}.0/24").parse().unwrap();
        let lock = b.layout.alloc(IpNet::V4(n_slot));
        b.put(&lock, "garbage").put(
            "/wiremesh/prod/claims/x",
            &format!(r#"{{"v":1,"pod-cidr":"{next}","odd":1}}"#),
        );
        let mut etcd = b.snapshot();
        let (claim, _) = join(&mut etcd, &s, "n").unwrap();
        assert_ne!(claim.pod_cidr, n_slot);
        assert_ne!(claim.pod_cidr, next);
    }

    #[test]
    fn a_full_pool_fails_at_once_naming_cluster_cidr_and_its_size() {
        let s = validate::settings(
            "s",
            br#"{"v":1,"mode":"full","cluster-cidr":"10.244.0.0/22"}"#,
        )
        .unwrap();
        let mut etcd = Snapshot::default();
        for i in 0..4 {
            join(&mut etcd, &s, &format!("n{i}")).unwrap();
        }
        let err = join(&mut etcd, &s, "n4").unwrap_err();
        assert_eq!(
            err,
            AllocError::PoolFull {
                field: "cluster-cidr",
                pool: "10.244.0.0/22".into(),
                prefix: 24,
                slots: 4
            }
        );
        assert!(err
            .to_string()
            .starts_with("no free pod CIDR left: cluster-cidr 10.244.0.0/22 holds 4 /24 slot(s)"));
    }

    #[test]
    fn a_joiner_gives_up_after_the_round_limit() {
        let s = settings(false);
        let layout = Layout::new("prod").unwrap();
        let mut a = Allocator::new(&layout, &s, &Snapshot::default(), "n", Some(b"{}".to_vec()));
        for _ in 0..REGISTRY_ALLOC_ROUNDS {
            assert!(matches!(a.decide(), Ok(Decision::Try { .. })));
            // an answer that shows nothing: the keys were deleted again meanwhile
            a.handle_conflict(&[None, None]);
        }
        assert_eq!(a.decide(), Err(AllocError::TooManyRounds(64)));
    }
}
