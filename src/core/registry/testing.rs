//! Values and snapshots for the registry's tests.

use super::keys::Layout;
use super::{Kv, Revision, Snapshot, TxnOutcome, TxnSpec};
use crate::core::key::PublicKey;

/// A valid public key, distinct for each `i` (from 2: 0 and 1 are low-order points).
pub(crate) fn key_text(i: u32) -> String {
    let mut b = [0u8; 32];
    b[..4].copy_from_slice(&(i + 2).to_le_bytes());
    PublicKey::from_bytes(b).to_string()
}

/// Settings of a full mesh in 10.244.0.0/16 (and fd10:244::/56 when `dual`).
pub(crate) fn settings_json(dual: bool) -> String {
    let v6 = if dual {
        r#","cluster-cidr-v6":"fd10:244::/56""#
    } else {
        ""
    };
    format!(r#"{{"v":1,"mode":"full","cluster-cidr":"10.244.0.0/16"{v6}}}"#)
}

/// A snapshot being built: each key written at the next revision, as etcd would.
pub(crate) struct Builder {
    pub(crate) layout: Layout,
    revision: Revision,
    kvs: Vec<Kv>,
}

impl Builder {
    pub(crate) fn new() -> Self {
        Builder {
            layout: Layout::new("prod").unwrap(),
            revision: 1,
            kvs: Vec::new(),
        }
    }

    /// Puts `value` at `key` at the next revision (keeping its create revision if it exists).
    pub(crate) fn put(&mut self, key: &str, value: &str) -> &mut Self {
        self.revision += 1;
        let created = self
            .kvs
            .iter()
            .find(|kv| kv.key == key)
            .map_or(self.revision, |kv| kv.create_revision);
        self.kvs.retain(|kv| kv.key != key);
        self.kvs.push(Kv {
            key: key.to_string(),
            value: value.as_bytes().to_vec(),
            create_revision: created,
            mod_revision: self.revision,
            lease: 0,
        });
        self
    }

    pub(crate) fn settings(&mut self, json: &str) -> &mut Self {
        let key = self.layout.settings();
        self.put(&key, json)
    }

    /// A node `name` in region `r` with key `i`, and its claim.
    pub(crate) fn node(&mut self, name: &str, i: u32, pod_cidr: &str) -> &mut Self {
        self.record(name, i, "").claim(name, pod_cidr)
    }

    /// A record with `extra` fields (`,"hub":true`).
    pub(crate) fn record(&mut self, name: &str, i: u32, extra: &str) -> &mut Self {
        let key = self.layout.record(name);
        let json = format!(
            r#"{{"v":1,"name":"{name}","cloud":"c","region":"r","public-key":"{}"{extra}}}"#,
            key_text(i)
        );
        self.put(&key, &json)
    }

    pub(crate) fn claim(&mut self, name: &str, pod_cidr: &str) -> &mut Self {
        let key = self.layout.claim(name);
        self.put(&key, &format!(r#"{{"v":1,"pod-cidr":"{pod_cidr}"}}"#))
    }

    pub(crate) fn snapshot(&self) -> Snapshot {
        Snapshot::new(self.revision, self.kvs.clone())
    }
}

/// A fake etcd: runs transactions against a snapshot, one revision each.
pub(crate) fn run_txn(snapshot: &mut Snapshot, txn: &TxnSpec) -> TxnOutcome {
    let stands_in_way = txn
        .compare_absent
        .iter()
        .any(|k| snapshot.kvs.contains_key(k))
        || txn
            .compare_unchanged
            .iter()
            .any(|(k, rev)| snapshot.kvs.get(k).map_or(0, |kv| kv.mod_revision) != *rev);
    if stands_in_way {
        let got = txn
            .gets_on_failure
            .iter()
            .map(|k| snapshot.kvs.get(k).cloned())
            .collect();
        return TxnOutcome::Conflict(got);
    }
    snapshot.revision += 1;
    let revision: Revision = snapshot.revision;
    for (key, value) in &txn.puts {
        let create_revision = snapshot
            .kvs
            .get(key)
            .map_or(revision, |kv| kv.create_revision);
        let kv = Kv {
            key: key.clone(),
            value: value.clone(),
            create_revision,
            mod_revision: revision,
            lease: 0,
        };
        snapshot.kvs.insert(key.clone(), kv);
    }
    for key in &txn.deletes {
        snapshot.kvs.remove(key);
    }
    TxnOutcome::Committed(revision)
}

/// Runs transactions that must all commit.
pub(crate) fn run_all(snapshot: &mut Snapshot, txns: &[TxnSpec]) {
    for txn in txns {
        assert!(txn.fits());
        assert!(matches!(run_txn(snapshot, txn), TxnOutcome::Committed(_)));
    }
}
