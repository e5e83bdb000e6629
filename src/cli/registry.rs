//! `wiremesh registry`: the administrator's view of an etcd registry (docs/registry.md).
//! `import` loads a topology file, `export` prints the mesh as one, `status` lists nodes with
//! presence, CIDRs and keys, `remove` frees a node's CIDR, `gc` removes long-absent nodes,
//! `grant` gives a node its etcd user and role (`registry_grant.rs`), `policy set | show` the
//! mesh's network policy (`registry_policy.rs`).

use super::registry_args::RegistryArgs;
use super::registry_grant::{grant, GrantRequest};
use super::registry_policy::{self, PolicyCommand};
use crate::core::registry::addr::RegistryAddr;
use crate::core::registry::assemble::{assemble, Assembled};
use crate::core::registry::keys::{Key, Layout};
use crate::core::registry::records::{decode, ClaimValue, RecordValue};
use crate::core::registry::{gc, policy, transfer, Snapshot, TxnOutcome, TxnSpec};
use crate::core::topology::Topology;
use crate::daemon::registry::etcd_config;
use crate::io::etcd::Etcd;
use anyhow::{bail, Context};
use std::path::{Path, PathBuf};

#[derive(Debug, clap::Args)]
pub struct RegistryCmdArgs {
    #[command(subcommand)]
    pub command: RegistryCommand,
    #[command(flatten)]
    pub connect: RegistryArgs,
}

#[derive(Debug, clap::Subcommand)]
pub enum RegistryCommand {
    /// Load a topology file into the registry: settings, records with their labels, claims
    /// pinned to the CIDRs `wiremesh ipam` gives, and the file's policy part (a file without
    /// one removes the registry's). Pools and claims already held are never changed.
    Import {
        #[arg(long, short)]
        topology: PathBuf,
    },
    /// Print the mesh as a topology file with every pod CIDR pinned, its labels and policy.
    Export,
    /// List every node: presence, state, pod CIDRs, key, endpoints; then what is pending, left
    /// or skipped.
    Status,
    /// Remove a node: its record, claim and presence go and its pod CIDRs become free.
    /// Refused while the node is present, unless --force.
    Remove {
        node: String,
        #[arg(long)]
        force: bool,
    },
    /// Mark absent nodes, unmark returned ones, remove nodes absent longer than the settings'
    /// `gc-after`, and drop `alloc/` keys no claim backs.
    Gc {
        /// Show what would change without changing it.
        #[arg(long)]
        dry_run: bool,
    },
    /// Give NODE its etcd user and role (docs/registry.md, section 3): read on the mesh,
    /// read-write on its record, presence and claim, and on alloc/ unless --no-allocate. Run
    /// again, it brings the role back to exactly these permissions.
    Grant {
        node: String,
        /// The node may not write alloc/, so it cannot take its own pod CIDR: the claim is
        /// taken now, with this command's credential.
        #[arg(long)]
        no_allocate: bool,
        /// The node user's password (the file, without its trailing newline). Without it the user has no
        /// password and logs in by a client certificate whose CN is the node's name.
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
    },
    /// The mesh's network policy: `set FILE` (the policy part of a topology file alone),
    /// `show`.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
}

pub fn run(args: RegistryCmdArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(run_async(args))
}

async fn run_async(args: RegistryCmdArgs) -> anyhow::Result<()> {
    let c = &args.connect;
    let registry = c
        .registry
        .clone()
        .or_else(|| std::env::var("WIREMESH_REGISTRY").ok())
        .context("--registry etcd://HOST:PORT is required (or WIREMESH_REGISTRY)")?;
    let members = match RegistryAddr::parse(&registry)? {
        RegistryAddr::Etcd(m) => m,
        RegistryAddr::File(p) => bail!(
            "--registry file:{}: the registry commands work on etcd; a file is edited directly",
            p.display()
        ),
    };
    let password = match &c.etcd_password_file {
        Some(p) => Some(
            std::fs::read_to_string(p)
                .with_context(|| p.display().to_string())?
                .trim_end_matches(['\n', '\r'])
                .to_string(),
        ),
        None => std::env::var("WIREMESH_ETCD_PASSWORD").ok(),
    };
    let config = etcd_config(
        members,
        c.etcd_ca.clone(),
        c.etcd_cert.clone(),
        c.etcd_key.clone(),
        c.etcd_user.clone(),
        password,
    )?;
    let mesh = c.mesh.clone().unwrap_or_else(|| "default".into());
    let layout = Layout::new(&mesh)?;
    let mut etcd = Etcd::connect(&config, &layout.settings()).await?;
    let shown = format!("etcd://{}{}", config.shown(), layout.prefix());
    let (kvs, revision) = etcd.list(layout.prefix()).await?;
    let snapshot = Snapshot::new(revision, kvs);
    match args.command {
        RegistryCommand::Import { topology } => {
            import(&mut etcd, &layout, &snapshot, &topology, &shown).await
        }
        RegistryCommand::Export => export(&layout, &snapshot, &shown),
        RegistryCommand::Policy { command } => {
            registry_policy::run(&mut etcd, &layout, &snapshot, command).await
        }
        RegistryCommand::Status => status(&layout, &snapshot, &shown),
        RegistryCommand::Remove { node, force } => {
            remove(&mut etcd, &layout, &snapshot, &node, force, &shown).await
        }
        RegistryCommand::Gc { dry_run } => gc(&mut etcd, &layout, &snapshot, dry_run).await,
        RegistryCommand::Grant {
            node,
            no_allocate,
            password_file,
        } => {
            let req = GrantRequest {
                node,
                allocate: !no_allocate,
                password_file,
            };
            grant(&mut etcd, &layout, &snapshot, &req, &shown).await
        }
    }
}

fn assembled(layout: &Layout, snapshot: &Snapshot, shown: &str) -> anyhow::Result<Assembled> {
    Ok(assemble(layout, snapshot, Path::new(shown))?)
}

fn report_problems(a: &Assembled) {
    for p in &a.problems {
        eprintln!("skipped: {p}");
    }
}

/// The mesh as a topology file; refused while the policy key is invalid, so an export never
/// drops the policy unnoticed.
fn export(layout: &Layout, snapshot: &Snapshot, shown: &str) -> anyhow::Result<()> {
    let a = assembled(layout, snapshot, shown)?;
    report_problems(&a);
    if let Err(refused) = &a.policy {
        bail!(
            "{refused}
not exported: fix the policy with `wiremesh registry policy set`"
        );
    }
    let part = snapshot
        .kvs
        .get(&layout.policy())
        .map(|kv| String::from_utf8_lossy(&kv.value).into_owned());
    let file = transfer::export_with_policy(&a.topology, &a.labels, part.as_deref())
        .context("the policy key's text")?;
    print!("{file}");
    Ok(())
}

async fn import(
    etcd: &mut Etcd,
    layout: &Layout,
    snapshot: &Snapshot,
    file: &Path,
    shown: &str,
) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("{}: cannot read", file.display()))?;
    let doc = Topology::parse_with_policy(&text, file)?;
    let part = policy::part_of(&text).with_context(|| file.display().to_string())?;
    let txns = transfer::import(layout, &doc, part.as_deref(), snapshot)?;
    let mut last = snapshot.revision;
    for txn in &txns {
        last = run_txn(etcd, txn, "import").await?;
    }
    println!(
        "imported {} node(s) from {} into {shown} (revision {last})",
        doc.topology.nodes.len(),
        file.display()
    );
    let key = layout.policy();
    match part {
        Some(_) => println!("{key}: {} rule(s)", doc.policy.rules.len()),
        None if snapshot.kvs.contains_key(&key) => {
            println!("{key}: removed (the file has no policy part: the mesh is permissive)")
        }
        None => {}
    }
    Ok(())
}

/// Runs one transaction; a conflict means someone wrote in between, named by the keys found.
pub(super) async fn run_txn(etcd: &mut Etcd, txn: &TxnSpec, what: &str) -> anyhow::Result<i64> {
    match etcd.txn(txn).await? {
        TxnOutcome::Committed(rev) => Ok(rev),
        TxnOutcome::Conflict(found) => {
            let keys: Vec<String> = found.iter().flatten().map(|kv| kv.key.clone()).collect();
            bail!(
                "{what}: the registry changed while this ran ({}); nothing of this step was \
                 written, run it again",
                if keys.is_empty() {
                    "a compared key changed".to_string()
                } else {
                    format!("now held: {}", keys.join(", "))
                }
            )
        }
    }
}

fn status(layout: &Layout, snapshot: &Snapshot, shown: &str) -> anyhow::Result<()> {
    let mut present = std::collections::BTreeSet::new();
    let mut records = std::collections::BTreeMap::new();
    let mut claims = std::collections::BTreeMap::new();
    for (key, kv) in &snapshot.kvs {
        match layout.parse(key) {
            Ok(Key::Claim(n)) => {
                if let Ok(c) = decode::<ClaimValue>(&kv.value) {
                    let v6 = c.pod_cidr_v6.map(|v| format!(",{v}")).unwrap_or_default();
                    claims.insert(n, format!("{}{v6}", c.pod_cidr));
                }
            }
            Ok(Key::Presence(n)) => {
                present.insert(n);
            }
            Ok(Key::Record(n)) => {
                if let Ok(r) = decode::<RecordValue>(&kv.value) {
                    records.insert(n, r);
                }
            }
            _ => {}
        }
    }
    println!("registry {shown} at revision {}", snapshot.revision);
    let a = match assemble(layout, snapshot, Path::new(shown)) {
        Ok(a) => Some(a),
        Err(e) => {
            println!("cannot plan: {e}");
            None
        }
    };
    println!(
        "{:<20} {:<8} {:<8} {:<14} {:<14} {:<18} {:<45} endpoints",
        "node", "present", "state", "region", "cloud", "pod-cidr", "public-key"
    );
    let planned: std::collections::BTreeMap<&str, &crate::core::topology::Node> = a
        .as_ref()
        .map(|a| {
            a.topology
                .nodes
                .iter()
                .map(|n| (n.name.as_str(), n))
                .collect()
        })
        .unwrap_or_default();
    for (name, r) in &records {
        // a planned node's CIDRs, else what its claim holds (a left node keeps its CIDR)
        let cidr = planned.get(name.as_str()).map_or_else(
            || claims.get(name).cloned().unwrap_or_else(|| "-".to_string()),
            |n| match n.pod_cidr_v6 {
                Some(v6) => format!("{},{v6}", n.pod_cidr),
                None => n.pod_cidr.to_string(),
            },
        );
        let state = if planned.contains_key(name.as_str()) {
            "planned".to_string()
        } else {
            format!("{:?}", r.state).to_lowercase()
        };
        println!(
            "{:<20} {:<8} {:<8} {:<14} {:<14} {:<18} {:<45} {}",
            crate::core::topology::shown(name),
            if present.contains(name) { "yes" } else { "no" },
            state,
            crate::core::topology::shown(&r.region),
            crate::core::topology::shown(&r.cloud),
            cidr,
            crate::core::topology::shown(&r.public_key),
            r.endpoints
                .iter()
                .map(|e| crate::core::topology::shown(&e.to_string()))
                .collect::<Vec<_>>()
                .join(",")
        );
    }
    if let Some(a) = &a {
        match &a.policy {
            Ok(p) if snapshot.kvs.contains_key(&layout.policy()) => {
                println!("policy: {} rule(s)", p.rules.len())
            }
            Ok(_) => println!("policy: none (permissive)"),
            Err(refused) => {
                println!("policy refused (daemons keep their last good one): {refused}")
            }
        }
        if !a.pending.is_empty() {
            println!("pending (no claim yet): {}", a.pending.join(", "));
        }
        if !a.left.is_empty() {
            println!("left (CIDR kept): {}", a.left.join(", "));
        }
        for p in &a.problems {
            println!("skipped: {p}");
        }
    }
    Ok(())
}

async fn remove(
    etcd: &mut Etcd,
    layout: &Layout,
    snapshot: &Snapshot,
    node: &str,
    force: bool,
    shown: &str,
) -> anyhow::Result<()> {
    if !force && snapshot.kvs.contains_key(&layout.presence(node)) {
        bail!("node '{node}' is present (its daemon runs); stop it first, or use --force");
    }
    let Some(txn) = gc::remove(layout, snapshot, node, force) else {
        bail!("node '{node}' is not in {shown}");
    };
    let rev = run_txn(etcd, &txn, "remove").await?;
    println!(
        "removed node '{node}' from {shown} ({} key(s), revision {rev}); its pod CIDRs are free",
        txn.deletes.len()
    );
    Ok(())
}

async fn gc(
    etcd: &mut Etcd,
    layout: &Layout,
    snapshot: &Snapshot,
    dry_run: bool,
) -> anyhow::Result<()> {
    let gc_after = snapshot
        .kvs
        .get(&layout.settings())
        .and_then(|kv| crate::core::registry::validate::settings(&kv.key, &kv.value).ok())
        .and_then(|s| s.gc_after);
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let steps = gc::plan(layout, snapshot, gc_after, wall);
    if steps.is_empty() {
        println!("nothing to collect");
    }
    for step in steps {
        let what = format!("{:?}", step.what).to_lowercase();
        if dry_run {
            println!("would {what} {}", step.subject);
            continue;
        }
        match etcd.txn(&step.txn).await? {
            TxnOutcome::Committed(_) => println!("{what} {}", step.subject),
            TxnOutcome::Conflict(_) => {
                println!("{what} {}: skipped, it changed meanwhile", step.subject)
            }
        }
    }
    Ok(())
}
