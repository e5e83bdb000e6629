//! `wiremesh registry grant NODE`: the node's etcd user and role (docs/registry.md, section 3),
//! created or brought back to exactly the permissions of its kind, so running it twice, or
//! again with or without `--no-allocate`, leaves one correct role.
//!
//! With `--no-allocate` the node may not write `alloc/`, so it cannot take its own CIDR: the
//! claim is taken here, with the administrator's credential, by the rule a joiner uses
//! (`core/registry/alloc`). The node's record is not written (its key and place are the node's
//! to say); until its first start, `registry status` reports the claim as one without a record.

use crate::core::registry::grant::{permissions, plan, role_name};
use crate::core::registry::keys::Layout;
use crate::core::registry::{validate, Snapshot};
use crate::daemon::registry::join::take_claim;
use crate::io::etcd::Etcd;
use anyhow::{bail, Context};
use std::path::{Path, PathBuf};

/// What `registry grant` was asked.
pub struct GrantRequest {
    pub node: String,
    pub allocate: bool,
    pub password_file: Option<PathBuf>,
}

pub async fn grant(
    etcd: &mut Etcd,
    layout: &Layout,
    snapshot: &Snapshot,
    req: &GrantRequest,
    shown: &str,
) -> anyhow::Result<()> {
    let node = req.node.as_str();
    if !crate::core::topology::valid_name(node) {
        bail!(
            "node '{}' {}",
            crate::core::topology::shown(node),
            crate::core::topology::NAME_RULE
        );
    }
    if node == "root" {
        bail!(
            "node 'root' has the name of etcd's administrator user; a node of that name cannot \
             be given a user of its own: rename the node"
        );
    }
    let password = req
        .password_file
        .as_deref()
        .map(read_password)
        .transpose()?;
    let role = role_name(layout, node);
    let held = etcd.role_permissions(&role).await?;
    let wanted = permissions(layout, node, req.allocate);
    // Refused before anything is written when the role belongs to another mesh.
    let changes = plan(layout, &role, held.as_deref().unwrap_or_default(), &wanted)?;
    if !req.allocate {
        claim(etcd, layout, snapshot, node, shown).await?;
    }
    if held.is_none() {
        etcd.add_role(&role).await?;
    }
    for p in &changes.revoke {
        etcd.revoke_permission(&role, p).await?;
        println!("revoked from role {role}: {:?} on {}", p.access, p.shown());
    }
    for p in &changes.grant {
        etcd.grant_permission(&role, p).await?;
        println!("granted to role {role}: {:?} on {}", p.access, p.shown());
    }
    let added = etcd.ensure_user(node, password.as_deref()).await?;
    etcd.grant_role(node, &role).await?;
    let user = match (added, &password) {
        (true, Some(_)) => "added with the password given",
        (true, None) => {
            "added without a password: it logs in by a client certificate whose CN is its name"
        }
        (false, Some(_)) => "existed; its password is now the one given",
        (false, None) => "existed; its password, if it has one, is unchanged",
    };
    println!(
        "node '{node}' of {shown}: role {role} holds {} permission(s) ({} granted, {} revoked \
         now); user '{node}' {user}",
        wanted.len(),
        changes.grant.len(),
        changes.revoke.len()
    );
    Ok(())
}

/// Takes `node`'s claim (or finds it taken) with this command's credential.
async fn claim(
    etcd: &mut Etcd,
    layout: &Layout,
    snapshot: &Snapshot,
    node: &str,
    shown: &str,
) -> anyhow::Result<()> {
    let key = layout.settings();
    let Some(kv) = snapshot.kvs.get(&key) else {
        bail!(
            "{shown} has no settings ({key}): --no-allocate takes the node's claim from the \
             mesh's pools, so run `registry import` first"
        );
    };
    let settings = validate::settings(&key, &kv.value).map_err(|problems| {
        let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
        anyhow::anyhow!("the mesh's settings are invalid:\n  {}", lines.join("\n  "))
    })?;
    let taken = take_claim(etcd, layout, &settings, snapshot, node, None).await?;
    let v6 = taken
        .claim
        .pod_cidr_v6
        .map(|c| format!(", {c}"))
        .unwrap_or_default();
    let how = if taken.rounds == 0 {
        "held already"
    } else {
        "taken now"
    };
    println!(
        "claim of node '{node}': {}{v6} ({how})",
        taken.claim.pod_cidr
    );
    Ok(())
}

/// The node user's password: the file's text without its trailing newline; never empty.
fn read_password(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--password-file {}", path.display()))?;
    let password = text.trim_end_matches(['\n', '\r']).to_string();
    if password.is_empty() {
        bail!(
            "--password-file {}: the file is empty; leave the flag out for a user known by its \
             client certificate alone",
            path.display()
        );
    }
    Ok(password)
}
