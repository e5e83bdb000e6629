//! A prefix watch as a stream of [`WatchItem`]s: events with their revision, progress
//! notifications (the revision moved on without a change of ours), and the two ends a watch can
//! meet: history compacted (relist) or cancelled by the server.

use super::{prefix_end, to_kv, Etcd, EtcdError};
use crate::core::registry::mirror::Event;
use crate::core::registry::Revision;
use etcd_client::{EventType, WatchOptions, WatchStream};

/// One answer of a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchItem {
    /// Changes, all at or below `revision`.
    Events {
        events: Vec<Event>,
        revision: Revision,
    },
    /// Nothing of ours changed up to `revision`.
    Progress(Revision),
    /// The start revision is older than the history etcd keeps (it has compacted up to this
    /// one): events were lost and the caller must relist.
    Compacted(Revision),
    /// The server ended the watch (e.g. its member lost the leader): reconnect.
    Canceled(String),
}

/// A watch of one prefix.
pub struct Watch {
    stream: WatchStream,
    etcd: Etcd,
    prefix: String,
}

impl Watch {
    /// Watches every key under `prefix` from revision `from` on, with progress notifications.
    pub async fn start(etcd: &Etcd, prefix: &str, from: Revision) -> Result<Self, EtcdError> {
        let options = WatchOptions::new()
            .with_range(prefix_end(prefix))
            .with_start_revision(from)
            .with_progress_notify();
        let stream = etcd
            .client()
            .watch(prefix, Some(options))
            .await
            .map_err(|e| etcd.error(prefix, e))?;
        Ok(Watch {
            stream,
            etcd: etcd.clone(),
            prefix: prefix.to_string(),
        })
    }

    /// The next answer; `Ok(None)` when the server closed the stream.
    pub async fn next(&mut self) -> Result<Option<WatchItem>, EtcdError> {
        loop {
            let answer = self
                .stream
                .message()
                .await
                .map_err(|e| self.etcd.error(&self.prefix, e))?;
            let Some(answer) = answer else {
                return Ok(None);
            };
            let revision = answer.header().map_or(0, |h| h.revision());
            if answer.compact_revision() > 0 {
                return Ok(Some(WatchItem::Compacted(answer.compact_revision())));
            }
            if answer.canceled() {
                return Ok(Some(WatchItem::Canceled(
                    answer.cancel_reason().to_string(),
                )));
            }
            if answer.events().is_empty() {
                if answer.created() {
                    continue;
                }
                return Ok(Some(WatchItem::Progress(revision)));
            }
            let events = answer
                .events()
                .iter()
                .filter_map(|event| {
                    let kv = event.kv()?;
                    match event.event_type() {
                        EventType::Put => to_kv(kv.clone()).map(Event::Put),
                        EventType::Delete => Some(Event::Delete {
                            key: String::from_utf8(kv.key().to_vec()).ok()?,
                            mod_revision: kv.mod_revision(),
                        }),
                    }
                })
                .collect();
            return Ok(Some(WatchItem::Events { events, revision }));
        }
    }
}
