//! The etcd registry's decisions (docs/registry.md): what the keys mean, which records are
//! planned, which pod CIDR a joiner takes, when a mirror is assembled, what `gc` removes.
//!
//! Sans-IO like the rest of `core`: no etcd client, no tokio, no clock. The driver (`io/etcd`)
//! lists, watches and runs transactions and hands the results in as the plain types below;
//! `now` and the wall time are arguments. Crossing the boundary are only [`Kv`], [`TxnSpec`] and
//! [`TxnOutcome`]; what leaves for the daemon is an [`assemble::Assembled`], whose `Topology`
//! goes to `core/plan` exactly as a file's does.

pub mod addr;
pub mod alloc;
pub mod assemble;
pub mod gc;
pub mod grant;
pub mod keys;
pub mod mirror;
pub mod own;
pub mod policy;
pub mod records;
pub mod sync;
pub mod transfer;
pub mod validate;

use std::collections::BTreeMap;
use std::fmt;

/// An etcd revision: signed 64 bits as etcd has it; 0 in `create_revision` means "absent".
pub type Revision = i64;

/// One key as etcd holds it. Keys and values are bytes in etcd; the driver turns a key into
/// text (a key that is not UTF-8 cannot be ours and is reported as unknown), while the value
/// stays bytes so that validation, not the driver, refuses what is not UTF-8.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kv {
    pub key: String,
    pub value: Vec<u8>,
    /// The revision that created the key: a claim's is the moment it was taken.
    pub create_revision: Revision,
    /// The revision of the last write: the age by which an older claim or record wins.
    pub mod_revision: Revision,
    /// The lease the key is attached to, 0 for none (only presence keys have one).
    pub lease: i64,
}

/// The mesh's keys as one revision shows them: what `assemble` and `gc` read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The revision the keys were read at (or the last event applied).
    pub revision: Revision,
    pub kvs: BTreeMap<String, Kv>,
}

impl Snapshot {
    /// A snapshot of `kvs` at `revision`; a key given twice keeps its last value.
    pub fn new(revision: Revision, kvs: impl IntoIterator<Item = Kv>) -> Self {
        Snapshot {
            revision,
            kvs: kvs.into_iter().map(|kv| (kv.key.clone(), kv)).collect(),
        }
    }
}

/// One transaction for the driver to run: if every `compare_absent` key is absent and every
/// `compare_unchanged` key still has its mod revision, do the puts and deletes; else read
/// `gets_on_failure`, so the caller sees what stood in the way.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TxnSpec {
    pub compare_absent: Vec<String>,
    /// Keys that must still carry this mod revision (a key read as absent is compared absent).
    pub compare_unchanged: Vec<(String, Revision)>,
    pub puts: Vec<(String, Vec<u8>)>,
    pub deletes: Vec<String>,
    pub gets_on_failure: Vec<String>,
}

impl TxnSpec {
    /// Whether the transaction fits etcd's default `--max-txn-ops` (compares and operations are
    /// counted apart, as etcd counts them).
    pub fn fits(&self) -> bool {
        let max = crate::constants::REGISTRY_TXN_OPS;
        self.compare_absent.len() + self.compare_unchanged.len() <= max
            && self.puts.len() + self.deletes.len() <= max
            && self.gets_on_failure.len() <= max
    }
}

/// What the driver saw of a [`TxnSpec`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnOutcome {
    /// Every compare held; the writes carry this revision.
    Committed(Revision),
    /// A compare failed; the values of `gets_on_failure`, in order (`None`: absent).
    Conflict(Vec<Option<Kv>>),
}

/// One problem in the registry, named by its etcd key and field, as `registry status`, the log
/// and the skipped-records metric show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The etcd key, escaped and cut like every user string in a message (a hostile writer
    /// chooses keys under `alloc/` freely).
    pub key: String,
    /// The field of the value, in the value's spelling (`public-key`), when there is one.
    pub field: Option<String>,
    pub message: String,
}

impl Problem {
    /// A problem of `key`'s `field`; `key` is shown escaped and cut.
    pub fn new(key: &str, field: Option<&str>, message: impl Into<String>) -> Self {
        Problem {
            key: shown_key(key),
            field: field.map(str::to_string),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.key)?;
        if let Some(field) = &self.field {
            write!(f, "field '{field}': ")?;
        }
        f.write_str(&self.message)
    }
}

/// The longest key a message shows: the longest honest key (a 63-character mesh and node name,
/// or an IPv6 CIDR segment) fits whole.
const SHOWN_KEY_MAX: usize = 160;

/// A key as a message shows it: escaped and cut like any user string.
pub(crate) fn shown_key(key: &str) -> String {
    crate::core::topology::clip(key, SHOWN_KEY_MAX)
}

#[cfg(test)]
pub(crate) mod testing;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_problem_names_its_key_and_field() {
        let p = Problem::new("/wiremesh/prod/node/x/record", Some("public-key"), "bad");
        assert_eq!(
            p.to_string(),
            "/wiremesh/prod/node/x/record: field 'public-key': bad"
        );
    }

    #[test]
    fn a_hostile_key_is_escaped_and_cut_in_a_message() {
        let key = format!("/wiremesh/p/alloc/\u{1b}[2J{}", "x".repeat(10_000));
        let shown = Problem::new(&key, None, "bad").to_string();
        assert!(shown.starts_with("/wiremesh/p/alloc/\\u{1b}[2J"), "{shown}");
        assert!(shown.len() < 250, "{}", shown.len());
        assert!(!shown.chars().any(char::is_control));
    }

    #[test]
    fn a_transaction_over_etcds_limit_does_not_fit() {
        let mut txn = TxnSpec {
            puts: (0..128).map(|i| (i.to_string(), Vec::new())).collect(),
            ..TxnSpec::default()
        };
        assert!(txn.fits());
        txn.deletes.push("one more".into());
        assert!(!txn.fits());
    }
}
