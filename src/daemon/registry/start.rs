//! A daemon's start on an etcd registry: connect, list, write its own record (and take a claim
//! when it has none), put its presence, list again, assemble. With etcd unreachable it starts
//! from the snapshot file instead and joins when etcd returns; with neither it exits naming both.

use super::join::take_claim;
use super::presence::Presence;
use super::task::Task;
use super::{Registry, RegistryConfig, RegistryError, Update};
use crate::core::key::PublicKey;
use crate::core::registry::assemble::{assemble, Assembled};
use crate::core::registry::mirror::Mirror;
use crate::core::registry::own::own_record;
use crate::core::registry::policy::InForce;
use crate::core::registry::records::{decode, encode, PresenceValue, RecordValue, VERSION};
use crate::core::registry::sync::Connection;
use crate::core::registry::validate;
use crate::core::registry::Snapshot;
use crate::io::etcd::{Etcd, EtcdError};
use crate::io::registry_snapshot;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, watch};

/// Joins (or starts from the snapshot) and spawns the registry task; the first topology and
/// policy. A refused policy at start has no earlier good one to keep: an error, as refused
/// settings are.
pub async fn start(
    cfg: RegistryConfig,
    public_key: PublicKey,
) -> Result<(Arc<Update>, Registry), RegistryError> {
    let mut presence = Presence::new(
        cfg.layout.presence(&cfg.node),
        encode(&PresenceValue {
            v: VERSION,
            since: unix_now(),
            version: env!("CARGO_PKG_VERSION").to_string(),
        }),
    );
    let (connection, etcd) = match join(&cfg, &public_key, &mut presence).await {
        Ok((etcd, kvs, revision)) => {
            let mut c = Connection::new(cfg.layout.prefix());
            c.handle_connected();
            c.handle_list(Instant::now(), kvs, revision);
            (c, Some(etcd))
        }
        Err(RegistryError::Etcd(e)) if e.is_transient() => (from_snapshot(&cfg, e)?, None),
        Err(e) => return Err(e),
    };
    let first = assembled(&cfg, connection.mirror().snapshot())?;
    if first.topology.node(&cfg.node).is_err() {
        return Err(not_planned(&cfg, &first));
    }
    for p in &first.problems {
        tracing::warn!(problem = %p, "registry record skipped");
    }
    let mut policy = InForce::default();
    let in_force = policy
        .update(&first)
        .map_err(|source| RegistryError::Policy {
            registry: cfg.shown.clone(),
            source,
        })?;
    let first = Arc::new(Update {
        assembled: first,
        policy: in_force,
    });
    let (updates_tx, updates) = watch::channel(first.clone());
    let (commands, commands_rx) = mpsc::channel(16);
    let task = Task::new(
        cfg, connection, etcd, presence, public_key, updates_tx, policy,
    );
    let task = tokio::spawn(task.run(commands_rx));
    Ok((
        first,
        Registry {
            updates,
            commands,
            task,
            published: public_key,
        },
    ))
}

/// The mirror assembled into a topology, named after the registry and prefix.
pub(super) fn assembled(
    cfg: &RegistryConfig,
    snapshot: &Snapshot,
) -> Result<Assembled, RegistryError> {
    let source = format!("{}{}", cfg.shown, cfg.layout.prefix());
    assemble(&cfg.layout, snapshot, Path::new(&source)).map_err(|source| RegistryError::Assemble {
        registry: cfg.shown.clone(),
        source: Box::new(source),
    })
}

/// Connects and joins; the list taken after the node's own writes.
pub(super) async fn join(
    cfg: &RegistryConfig,
    public_key: &PublicKey,
    presence: &mut Presence,
) -> Result<(Etcd, Vec<crate::core::registry::Kv>, i64), RegistryError> {
    let layout = &cfg.layout;
    let mut etcd = Etcd::connect(&cfg.etcd, &layout.settings()).await?;
    let (kvs, revision) = etcd.list(layout.prefix()).await?;
    let snapshot = Snapshot::new(revision, kvs);
    let settings_key = layout.settings();
    let settings = match snapshot.kvs.get(&settings_key) {
        Some(kv) => {
            validate::settings(&settings_key, &kv.value).map_err(|p| RegistryError::Assemble {
                registry: cfg.shown.clone(),
                source: Box::new(crate::core::registry::assemble::AssembleError::Settings(p)),
            })?
        }
        None => {
            return Err(RegistryError::Assemble {
                registry: cfg.shown.clone(),
                source: Box::new(crate::core::registry::assemble::AssembleError::NoSettings {
                    key: settings_key,
                }),
            })
        }
    };
    let record_key = layout.record(&cfg.node);
    let held_kv = snapshot.kvs.get(&record_key);
    let held = held_kv.and_then(|kv| decode::<RecordValue>(&kv.value).ok());
    let (value, _) = own_record(
        &record_key,
        &cfg.node,
        public_key,
        held,
        &cfg.own,
        &settings,
    )?;
    let value = encode(&value);
    let has_claim = snapshot.kvs.contains_key(&layout.claim(&cfg.node));
    if has_claim {
        if held_kv.map(|kv| &kv.value) != Some(&value) {
            etcd.put(&record_key, value, 0).await?;
        }
    } else {
        let taken = take_claim(
            &mut etcd,
            layout,
            &settings,
            &snapshot,
            &cfg.node,
            Some(value),
        )
        .await?;
        tracing::info!(
            pod_cidr = %taken.claim.pod_cidr,
            rounds = taken.rounds,
            "took a pod CIDR in the registry"
        );
    }
    presence.ensure(&mut etcd).await?;
    let (kvs, revision) = etcd.list(layout.prefix()).await?;
    Ok((etcd, kvs, revision))
}

/// The connection to start with when etcd cannot be reached: the snapshot file's mirror.
fn from_snapshot(cfg: &RegistryConfig, cause: EtcdError) -> Result<Connection, RegistryError> {
    let file = match registry_snapshot::read(&cfg.snapshot)? {
        Some(f) => f,
        None => {
            return Err(RegistryError::NoSnapshot {
                cause,
                snapshot: cfg.snapshot.clone(),
            })
        }
    };
    let (revision, saved_at) = (file.revision, file.saved_at);
    let mirror = Mirror::from_file(file, cfg.layout.prefix()).map_err(|source| {
        RegistryError::SnapshotContent {
            path: cfg.snapshot.clone(),
            source,
        }
    })?;
    tracing::warn!(
        error = %cause,
        snapshot = %cfg.snapshot.display(),
        revision,
        age_s = unix_now().saturating_sub(saved_at),
        "etcd unreachable; starting from the registry snapshot, joining when etcd is back"
    );
    Ok(Connection::from_snapshot(mirror, Instant::now()))
}

/// Why this node is not in the assembled topology, from the problems that name its keys.
fn not_planned(cfg: &RegistryConfig, a: &Assembled) -> RegistryError {
    let own = [
        format!("{}node/{}/", cfg.layout.prefix(), cfg.node),
        cfg.layout.claim(&cfg.node),
    ];
    let mut reasons: Vec<String> = a
        .problems
        .iter()
        .filter(|p| own.iter().any(|k| p.key.starts_with(k.as_str())))
        .map(|p| p.to_string())
        .collect();
    if a.pending.contains(&cfg.node) {
        reasons.push("its record has no claim yet (pending)".into());
    }
    if reasons.is_empty() {
        reasons.push("no record of it".into());
    }
    RegistryError::NotPlanned {
        node: cfg.node.clone(),
        registry: cfg.shown.clone(),
        reasons: reasons.join("; "),
    }
}

pub(super) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
