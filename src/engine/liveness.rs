//! Per-peer liveness for the data path: which of several carriers of a prefix (the hubs of a
//! region) may carry traffic now. The judgement is [`core::liveness`](crate::core::liveness);
//! this file keeps its state per peer; the tick (`timers.rs`) feeds it the peer's counters and
//! sends the probes it asks for.
//!
//! The data path reads one atomic per candidate ([`PeerLiveness::health`]); it never takes the
//! lock or reads a clock. Anything authenticated from the peer (data, keepalive, handshake,
//! probe answer) counts as heard ([`PeerLiveness::heard`], one relaxed increment).
//!
//! A probe is an MTU probe of minimum size with the top bit of its id set: every wiremesh
//! version answers a probe, so liveness works across a rolling upgrade, and discovery never
//! hands out such ids (they count up from 1).

use crate::core::liveness::{Answers, Health, Liveness, Verdict};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// Marks a probe id as a liveness probe rather than a path-MTU one.
pub const LIVENESS_ID: u32 = 0x8000_0000;

pub struct PeerLiveness {
    heard: AtomicU64,
    health: AtomicU8,
    downs: AtomicU64,
    watch: Mutex<Watch>,
}

#[derive(Default)]
struct Watch {
    machine: Liveness,
    heard_seen: u64,
    sent_seen: u64,
    next_id: u32,
}

impl Default for PeerLiveness {
    fn default() -> Self {
        Self {
            heard: AtomicU64::new(0),
            health: AtomicU8::new(encode(Health::Up)),
            downs: AtomicU64::new(0),
            watch: Mutex::new(Watch::default()),
        }
    }
}

fn encode(h: Health) -> u8 {
    match h {
        Health::Up => 0,
        Health::Returning => 1,
        Health::Down => 2,
    }
}

fn decode(v: u8) -> Health {
    match v {
        0 => Health::Up,
        1 => Health::Returning,
        _ => Health::Down,
    }
}

impl PeerLiveness {
    /// Liveness of a peer not yet known to answer (see [`Liveness::starting_down`]).
    pub fn starting_down() -> Self {
        Self {
            health: AtomicU8::new(encode(Health::Down)),
            watch: Mutex::new(Watch {
                machine: Liveness::starting_down(),
                ..Watch::default()
            }),
            ..Self::default()
        }
    }

    /// Something authenticated arrived from the peer.
    pub fn heard(&self) {
        self.heard.fetch_add(1, Ordering::Relaxed);
    }

    /// Authenticated packets heard so far (a counter to compare between ticks).
    pub fn heard_count(&self) -> u64 {
        self.heard.load(Ordering::Relaxed)
    }

    pub fn health(&self) -> Health {
        decode(self.health.load(Ordering::Relaxed))
    }

    /// Times the peer went down since it was configured.
    pub fn downs(&self) -> u64 {
        self.downs.load(Ordering::Relaxed)
    }

    /// One tick: `sent` is the peer's count of datagrams sent so far, `answers` how it can be
    /// asked. Returns the verdict, and the probe id to send when it asks for a probe.
    pub fn tick(&self, now: Instant, sent: u64, answers: Answers) -> (Verdict, Option<u32>) {
        let mut w = self.watch.lock().unwrap_or_else(|e| e.into_inner());
        let heard = self.heard.load(Ordering::Relaxed);
        let (was_heard, was_sent) = (heard != w.heard_seen, sent != w.sent_seen);
        w.heard_seen = heard;
        w.sent_seen = sent;
        let v = w.machine.tick(now, was_heard, was_sent, answers);
        self.health
            .store(encode(w.machine.health()), Ordering::Relaxed);
        self.downs.store(w.machine.downs(), Ordering::Relaxed);
        let id = v.probe.then(|| {
            w.next_id = w.next_id.wrapping_add(1);
            LIVENESS_ID | (w.next_id & !LIVENESS_ID)
        });
        (v, id)
    }
}

/// Whether a probe answer is a liveness one (it was counted as heard already).
pub fn is_liveness_id(id: u32) -> bool {
    id & LIVENESS_ID != 0
}
