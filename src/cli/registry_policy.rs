//! `wiremesh registry policy set FILE | show`: the mesh's network policy in the registry
//! (docs/registry.md, section 1; docs/policy.md). FILE holds the policy part of a topology file
//! alone, exactly what the policy key stores and `show` prints, so show → edit → set round-trips.
//! It is checked by the file's checker before anything is written; a refusal names the file,
//! line, policy and field and leaves the registry's policy as it was.

use super::registry::run_txn;
use crate::core::policy::spec::{DefaultAction, Mode};
use crate::core::policy::MeshPolicy;
use crate::core::registry::keys::Layout;
use crate::core::registry::policy::{check, PolicyRefused};
use crate::core::registry::{Snapshot, TxnSpec};
use crate::io::etcd::Etcd;
use anyhow::{bail, Context};
use std::path::Path;

#[derive(Debug, clap::Subcommand)]
pub enum PolicyCommand {
    /// Check FILE (only `default-action`, `policy-mode`, `[cidr-set.NAME]` and `[[policy]]`, as
    /// in a topology file) and make it the mesh's policy. Nothing is written if it is invalid.
    Set {
        #[arg(value_name = "FILE")]
        file: std::path::PathBuf,
    },
    /// Print the mesh's policy as stored (the text `set` takes); fails if it is invalid.
    Show,
}

pub async fn run(
    etcd: &mut Etcd,
    layout: &Layout,
    snapshot: &Snapshot,
    command: PolicyCommand,
) -> anyhow::Result<()> {
    match command {
        PolicyCommand::Set { file } => set(etcd, layout, snapshot, &file).await,
        PolicyCommand::Show => show(layout, snapshot),
    }
}

async fn set(
    etcd: &mut Etcd,
    layout: &Layout,
    snapshot: &Snapshot,
    file: &Path,
) -> anyhow::Result<()> {
    let text = std::fs::read(file).with_context(|| format!("{}: cannot read", file.display()))?;
    let policy = check(&file.display().to_string(), &text).map_err(refusal)?;
    let key = layout.policy();
    // written only if nobody changed the policy since it was listed: never a silent overwrite
    let held = snapshot.kvs.get(&key).map_or(0, |kv| kv.mod_revision);
    let txn = TxnSpec {
        compare_unchanged: vec![(key.clone(), held)],
        puts: vec![(key.clone(), text)],
        ..TxnSpec::default()
    };
    let revision = run_txn(etcd, &txn, "policy set").await?;
    println!("{key}: {} (revision {revision})", summary(&policy));
    Ok(())
}

fn show(layout: &Layout, snapshot: &Snapshot) -> anyhow::Result<()> {
    let key = layout.policy();
    let Some(kv) = snapshot.kvs.get(&key) else {
        eprintln!("{key}: no policy; the mesh is permissive");
        return Ok(());
    };
    print!("{}", String::from_utf8_lossy(&kv.value));
    match check(&key, &kv.value) {
        Ok(policy) => {
            eprintln!("{key}: {}", summary(&policy));
            Ok(())
        }
        Err(refused) => bail!(
            "{refused}\ndaemons keep their last good policy until `registry policy set` \
             writes a valid one"
        ),
    }
}

/// A refusal, with a hint when FILE looks like a whole topology file.
fn refusal(refused: PolicyRefused) -> anyhow::Error {
    let whole = refused.problems.iter().any(|p| {
        p.message.starts_with("unknown field")
            && matches!(
                p.field.as_deref(),
                Some("mode" | "cluster-cidr" | "node" | "region")
            )
    });
    if whole {
        anyhow::anyhow!(
            "{refused}\ngive only the policy part (default-action, policy-mode, [cidr-set.NAME], \
             [[policy]]); `wiremesh registry import` takes a whole topology file"
        )
    } else {
        anyhow::anyhow!("{refused}\nnothing was written; the registry's policy is unchanged")
    }
}

/// One line about a checked policy.
fn summary(policy: &MeshPolicy) -> String {
    let default = match policy.default_action {
        DefaultAction::Allow => "allow",
        DefaultAction::Deny => "deny",
    };
    let mode = match policy.mode {
        Mode::Enforce => "enforce",
        Mode::Audit => "audit",
    };
    format!(
        "{} rule(s), {} cidr-set(s), default-action {default}, policy-mode {mode}",
        policy.rules.len(),
        policy.cidr_sets.len(),
    )
}
