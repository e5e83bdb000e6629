//! The registry task: drives `core/registry/sync`'s connection state machine with the etcd
//! driver, renews the presence lease, writes the snapshot file and publishes each assembled
//! topology with the policy in force. It owns the client; the daemon talks to it only through
//! [`super::Registry`].

use super::presence::Presence;
use super::start::{assembled, join, unix_now};
use super::{Command, RegistryConfig, RegistryError, Update};
use crate::constants::REGISTRY_KEEPALIVE;
use crate::core::key::PublicKey;
use crate::core::registry::assemble::Assembled;
use crate::core::registry::policy::InForce;
use crate::core::registry::records::NodeState;
use crate::core::registry::records::{decode, encode, RecordValue};
use crate::core::registry::sync::{Action, Connection};
use crate::core::registry::Problem;
use crate::io::etcd::watch::{Watch, WatchItem};
use crate::io::etcd::{Etcd, EtcdError};
use crate::io::registry_snapshot;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, watch};

pub(super) struct Task {
    cfg: RegistryConfig,
    conn: Connection,
    etcd: Option<Etcd>,
    watch: Option<Watch>,
    presence: Presence,
    /// Whether this run wrote its record and presence (false after a start from the snapshot).
    joined: bool,
    /// The key the record should carry; written again after any failure until it lands.
    key: PublicKey,
    key_written: bool,
    updates: watch::Sender<Arc<Update>>,
    /// Problems already logged, so a churning registry does not repeat them every plan.
    reported: BTreeSet<String>,
    /// The policy in force: the last good one while the policy key holds a refused one.
    policy: InForce,
    /// The policy refusal last logged, so it is logged once, not at every plan.
    policy_refused: Option<String>,
}

impl Task {
    pub(super) fn new(
        cfg: RegistryConfig,
        conn: Connection,
        etcd: Option<Etcd>,
        presence: Presence,
        key: PublicKey,
        updates: watch::Sender<Arc<Update>>,
        policy: InForce,
    ) -> Self {
        let joined = etcd.is_some();
        Task {
            cfg,
            conn,
            etcd,
            watch: None,
            presence,
            joined,
            key,
            key_written: true,
            updates,
            reported: BTreeSet::new(),
            policy,
            policy_refused: None,
        }
    }

    pub(super) async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut keepalive = tokio::time::interval(REGISTRY_KEEPALIVE);
        keepalive.reset();
        loop {
            self.drive().await;
            if self.publish() == Published::Removed {
                // the daemon sees the updates end and stops; it does not register again
                tracing::warn!("removed from the registry by an administrator; stopping");
                return;
            }
            let timeout = self
                .conn
                .poll_timeout()
                .map(tokio::time::Instant::from_std)
                .unwrap_or_else(|| tokio::time::Instant::now() + REGISTRY_KEEPALIVE);
            tokio::select! {
                item = next_item(&mut self.watch) => self.handle_watch(item),
                _ = keepalive.tick() => self.keep_alive().await,
                cmd = commands.recv() => match cmd {
                    Some(Command::PublishKey(key)) => {
                        if key != self.key {
                            self.key = key;
                            self.key_written = false;
                            self.write_key().await;
                        }
                    }
                    Some(Command::Relist) => {
                        self.watch = None;
                        self.conn.handle_compacted();
                    }
                    Some(Command::Leave(done)) => {
                        self.leave().await;
                        let _ = done.send(());
                        return;
                    }
                    None => return,
                },
                _ = tokio::time::sleep_until(timeout) => {}
            }
        }
    }

    /// Runs the actions the connection asks for until it waits.
    async fn drive(&mut self) {
        while let Some(action) = self.conn.poll_action(Instant::now()) {
            let result = match action {
                Action::Wait { .. } => return,
                Action::Connect => self.connect().await,
                Action::List => self.list().await,
                Action::Watch { from } => self.start_watch(from).await,
            };
            if let Err(e) = result {
                tracing::warn!(error = %e, "registry connection lost; the mesh keeps its last topology");
                self.broken();
            }
        }
    }

    fn broken(&mut self) {
        self.watch = None;
        self.etcd = None;
        let jitter =
            (rand_core::RngCore::next_u32(&mut rand_core::OsRng) as f64) / f64::from(u32::MAX);
        self.conn.handle_broken(Instant::now(), jitter);
    }

    async fn connect(&mut self) -> Result<(), RegistryError> {
        if !self.joined {
            let (etcd, kvs, revision) = join(&self.cfg, &self.key, &mut self.presence).await?;
            tracing::info!(revision, "registry reachable again; joined and relisted");
            self.etcd = Some(etcd);
            self.joined = true;
            self.key_written = true;
            self.conn.handle_connected();
            self.conn.handle_list(Instant::now(), kvs, revision);
            return Ok(());
        }
        let mut etcd = Etcd::connect(&self.cfg.etcd, &self.cfg.layout.settings()).await?;
        if let Err(e) = self.presence.renew(&mut etcd).await {
            tracing::debug!(error = %e, "presence not renewed yet");
        }
        self.etcd = Some(etcd);
        self.conn.handle_connected();
        if !self.key_written {
            self.write_key().await;
        }
        Ok(())
    }

    async fn list(&mut self) -> Result<(), RegistryError> {
        let etcd = self.etcd.as_mut().ok_or_else(|| gone(&self.cfg))?;
        let (kvs, revision) = etcd.list(self.cfg.layout.prefix()).await?;
        self.conn.handle_list(Instant::now(), kvs, revision);
        Ok(())
    }

    async fn start_watch(&mut self, from: i64) -> Result<(), RegistryError> {
        let etcd = self.etcd.as_ref().ok_or_else(|| gone(&self.cfg))?;
        self.watch = Some(Watch::start(etcd, self.cfg.layout.prefix(), from).await?);
        Ok(())
    }

    fn handle_watch(&mut self, item: Result<Option<WatchItem>, EtcdError>) {
        let now = Instant::now();
        match item {
            Ok(Some(WatchItem::Events { events, revision })) => {
                self.conn.handle_events(now, events, revision)
            }
            Ok(Some(WatchItem::Progress(revision))) => self.conn.handle_progress(revision),
            Ok(Some(WatchItem::Compacted(revision))) => {
                tracing::warn!(
                    compacted = revision,
                    had = self.conn.mirror().revision(),
                    "registry watch revision was compacted; relisting"
                );
                self.watch = None;
                self.conn.handle_compacted();
            }
            Ok(Some(WatchItem::Canceled(reason))) => {
                tracing::warn!(%reason, "registry watch cancelled by etcd; reconnecting");
                self.broken();
            }
            Ok(None) => {
                tracing::warn!("registry watch closed; reconnecting");
                self.broken();
            }
            Err(e) => {
                tracing::warn!(error = %e, "registry watch failed; reconnecting; the mesh keeps its last topology");
                self.broken();
            }
        }
    }

    /// Assembles the mirror when the debounce allows, hands it to the daemon and saves it.
    fn publish(&mut self) -> Published {
        let Some(snapshot) = self.conn.poll_publish(Instant::now()) else {
            return Published::Nothing;
        };
        // Our record gone from a list or watch of etcd itself (not from the snapshot file, and
        // not before we wrote it): an administrator removed this node.
        let own = self.cfg.layout.record(&self.cfg.node);
        if self.joined && !snapshot.kvs.contains_key(&own) {
            return Published::Removed;
        }
        match assembled(&self.cfg, &snapshot) {
            Ok(a) => {
                self.report(&a.problems);
                self.report_policy(&a);
                match self.policy.update(&a) {
                    Ok(policy) => {
                        let _ = self.updates.send(Arc::new(Update {
                            assembled: a,
                            policy,
                        }));
                    }
                    // only before a first good policy, which `start` refuses: never here
                    Err(e) => {
                        tracing::error!(error = %e, "registry policy refused; topology not applied")
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "registry refused; still running the previous topology")
            }
        }
        let file = self.conn.mirror().to_file(&self.cfg.shown, unix_now());
        if let Err(e) = registry_snapshot::write(&self.cfg.snapshot, &file) {
            tracing::warn!(error = %e, "could not save the registry snapshot");
        }
        Published::Topology
    }

    fn report(&mut self, problems: &[Problem]) {
        let now: BTreeSet<String> = problems.iter().map(|p| p.to_string()).collect();
        for p in now.difference(&self.reported) {
            tracing::warn!(problem = %p, "registry record skipped");
        }
        self.reported = now;
    }

    /// Logs a refused policy once (with key, line, policy and field), and its repair.
    fn report_policy(&mut self, a: &Assembled) {
        let now = a.policy.as_ref().err().map(|e| e.to_string());
        if now == self.policy_refused {
            return;
        }
        match &now {
            Some(e) => tracing::error!(
                error = %e,
                "registry policy refused; the last good policy stays in force"
            ),
            None => tracing::info!("registry policy valid again; it is in force"),
        }
        self.policy_refused = now;
    }

    async fn keep_alive(&mut self) {
        if let Some(etcd) = self.etcd.as_mut() {
            if let Err(e) = self.presence.renew(etcd).await {
                tracing::debug!(error = %e, "presence keep-alive failed");
            }
        }
        if !self.key_written {
            self.write_key().await;
        }
    }

    /// Rewrites the node's record with `self.key`, if it holds another.
    async fn write_key(&mut self) {
        let key = self.key.to_string();
        let result = self
            .update_record(|r| {
                let changed = r.public_key != key;
                r.public_key = key.clone();
                changed
            })
            .await;
        match result {
            Ok(()) => {
                self.key_written = true;
                tracing::info!(key = %self.key, "published the node's public key in the registry");
            }
            Err(e) => tracing::warn!(error = %e, "could not publish the new key yet; retrying"),
        }
    }

    async fn leave(&mut self) {
        let result = self
            .update_record(|r| {
                let changed = r.state != NodeState::Left;
                r.state = NodeState::Left;
                changed
            })
            .await;
        match result {
            Ok(()) => tracing::info!("left the registry: peers remove this node, its CIDR stays"),
            Err(e) => {
                tracing::warn!(error = %e, "could not mark the node left; peers keep it until it returns")
            }
        }
        if let Some(etcd) = &self.etcd {
            self.presence.revoke(etcd).await;
        }
    }

    /// Reads the node's record, applies `edit`, and writes it back when `edit` changed it.
    async fn update_record(
        &mut self,
        edit: impl FnOnce(&mut RecordValue) -> bool,
    ) -> Result<(), RegistryError> {
        let key = self.cfg.layout.record(&self.cfg.node);
        let etcd = self.etcd.as_mut().ok_or_else(|| gone(&self.cfg))?;
        let Some(kv) = etcd.get(&key).await? else {
            return Ok(());
        };
        let Ok(mut record) = decode::<RecordValue>(&kv.value) else {
            return Ok(());
        };
        if edit(&mut record) {
            etcd.put(&key, encode(&record), 0).await?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Published {
    Nothing,
    Topology,
    Removed,
}

/// A request while the connection is down (the task reconnects first; this is the message if
/// it ever does not).
fn gone(cfg: &RegistryConfig) -> RegistryError {
    RegistryError::Etcd(EtcdError::Unreachable {
        endpoints: cfg.etcd.shown(),
        reason: "not connected".into(),
    })
}

/// The watch's next answer, or never when there is no watch.
async fn next_item(watch: &mut Option<Watch>) -> Result<Option<WatchItem>, EtcdError> {
    match watch {
        Some(w) => w.next().await,
        None => std::future::pending().await,
    }
}
