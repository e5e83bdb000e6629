use super::*;

fn key() -> PublicKey {
    crate::io::keyfile::generate().public_key()
}

fn timing() -> RotationTiming {
    RotationTiming {
        grace: Duration::from_secs(120),
        announce_timeout: Duration::from_secs(10),
        announce_retry: Duration::from_secs(1),
    }
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn drain(r: &mut NodeRotation, now: Instant) -> Vec<NodeAction> {
    std::iter::from_fn(|| r.poll(now)).collect()
}

#[test]
fn a_rotation_announces_switches_when_every_peer_acked_and_retires_after_the_grace_window() {
    let (old, new) = (key(), key());
    let t0 = Instant::now();
    let mut r = NodeRotation::new(old, timing());
    r.start(new, ["b".to_string(), "c".to_string()], t0)
        .unwrap();
    assert_eq!(r.accepted(), vec![new, old]);
    let actions = drain(&mut r, t0);
    assert_eq!(
        actions,
        vec![NodeAction::Announce {
            peers: vec!["b".into(), "c".into()],
            new,
            effective: secs(130),
        }]
    );
    // not repeated before the retry interval
    assert_eq!(r.poll(t0 + Duration::from_millis(500)), None);
    r.handle_ack("b", new);
    r.handle_ack("c", old); // a stale ack does not count
    assert!(matches!(
        r.poll(t0 + secs(1)),
        Some(NodeAction::Announce { peers, .. }) if peers == vec!["c".to_string()]
    ));
    r.handle_ack("c", new);
    let t1 = t0 + secs(2);
    assert_eq!(
        r.poll(t1),
        Some(NodeAction::Switch {
            old,
            new,
            grace: secs(120)
        })
    );
    assert_eq!(
        r.state(),
        NodeState::Switched {
            old,
            new,
            grace_until: t1 + secs(120)
        }
    );
    assert_eq!(r.effective(t1 + secs(20)), secs(100));
    assert_eq!(r.poll(t1 + secs(119)), None);
    assert_eq!(
        r.accepted(),
        vec![new, old],
        "both keys during the grace window"
    );
    assert_eq!(r.poll(t1 + secs(120)), Some(NodeAction::Retire { old }));
    assert_eq!(r.state(), NodeState::Stable { key: new });
    assert_eq!(r.accepted(), vec![new], "the old key is refused afterwards");
    assert_eq!(r.poll(t1 + secs(500)), None);
    assert_eq!(r.rotations(), 1);
}

#[test]
fn a_peer_that_never_acks_delays_the_switch_only_until_the_announce_timeout() {
    let (old, new) = (key(), key());
    let t0 = Instant::now();
    let mut r = NodeRotation::new(old, timing());
    r.start(new, ["wireguard-go".to_string()], t0).unwrap();
    let announces = (0..10)
        .filter(|s| matches!(r.poll(t0 + secs(*s)), Some(NodeAction::Announce { .. })))
        .count();
    assert_eq!(announces, 10, "re-announced every second");
    assert_eq!(
        r.poll(t0 + secs(10)),
        Some(NodeAction::Switch {
            old,
            new,
            grace: secs(120)
        })
    );
}

#[test]
fn a_second_rotation_is_refused_until_the_first_one_is_stable() {
    let (old, new) = (key(), key());
    let t0 = Instant::now();
    let mut r = NodeRotation::new(old, timing());
    assert_eq!(r.start(old, [], t0), Err(RotationError::SameKey(old)));
    r.start(new, [], t0).unwrap();
    assert_eq!(
        r.start(key(), [], t0),
        Err(RotationError::Busy { old, new })
    );
    drain(&mut r, t0);
    drain(&mut r, t0 + secs(121));
    assert!(r.start(key(), [], t0 + secs(122)).is_ok());
}

#[test]
fn a_peer_holds_both_keys_for_the_announced_window_then_only_the_new_one() {
    let (old, new) = (key(), key());
    let t0 = Instant::now();
    let mut p = PeerKeys::new(old);
    assert_eq!(
        p.handle_announce(old, new, secs(60), t0),
        AnnounceVerdict::Accepted
    );
    assert_eq!(p.accepted(), vec![new, old]);
    assert_eq!(p.newest(), new);
    // the switch's re-announcement brings the end of the window forward
    assert_eq!(
        p.handle_announce(old, new, secs(30), t0 + secs(1)),
        AnnounceVerdict::Repeated
    );
    assert_eq!(p.poll(t0 + secs(30)), None);
    assert_eq!(p.poll(t0 + secs(31)), Some(old));
    assert_eq!(p.accepted(), vec![new]);
    assert!(!p.accepts(&old));
    assert_eq!(p.poll(t0 + secs(61)), None);
}

#[test]
fn an_announcement_from_the_wrong_session_is_ignored() {
    let (old, new, mallory) = (key(), key(), key());
    let t0 = Instant::now();
    let mut p = PeerKeys::new(old);
    assert_eq!(
        p.handle_announce(mallory, new, secs(60), t0),
        AnnounceVerdict::Refused
    );
    assert_eq!(p.accepted(), vec![old]);
    // nor may a session under the announced key vouch for yet another key before it is known
    assert_eq!(
        p.handle_announce(new, mallory, secs(60), t0),
        AnnounceVerdict::Refused
    );
    assert_eq!(p.poll(t0 + secs(600)), None);
}

#[test]
fn a_node_restarted_during_rotation_comes_back_stable_with_the_new_key_which_peers_accept() {
    let (old, new) = (key(), key());
    let t0 = Instant::now();
    let mut r = NodeRotation::new(old, timing());
    r.start(new, ["b".to_string()], t0).unwrap();
    let Some(NodeAction::Announce { effective, .. }) = r.poll(t0) else {
        panic!("no announcement")
    };
    let mut b = PeerKeys::new(old);
    b.handle_announce(old, new, effective, t0);
    // the key file was written before the announcement, so the restarted process has `new`
    let restarted = NodeRotation::new(new, timing());
    assert_eq!(restarted.accepted(), vec![new]);
    assert!(b.accepts(&restarted.newest()));
    assert_eq!(
        b.newest(),
        restarted.newest(),
        "new sessions meet on the new key"
    );
}

#[test]
fn two_nodes_rotating_at_once_converge_on_both_new_keys() {
    let (a_old, a_new, b_old, b_new) = (key(), key(), key(), key());
    let t0 = Instant::now();
    let mut a = NodeRotation::new(a_old, timing());
    let mut b = NodeRotation::new(b_old, timing());
    let mut a_sees_b = PeerKeys::new(b_old);
    let mut b_sees_a = PeerKeys::new(a_old);
    a.start(a_new, ["b".to_string()], t0).unwrap();
    b.start(b_new, ["a".to_string()], t0).unwrap();
    let Some(NodeAction::Announce { effective: ea, .. }) = a.poll(t0) else {
        panic!()
    };
    let Some(NodeAction::Announce { effective: eb, .. }) = b.poll(t0) else {
        panic!()
    };
    // both announcements travel over the old (a_old, b_old) session
    assert_eq!(
        b_sees_a.handle_announce(a_old, a_new, ea, t0),
        AnnounceVerdict::Accepted
    );
    assert_eq!(
        a_sees_b.handle_announce(b_old, b_new, eb, t0),
        AnnounceVerdict::Accepted
    );
    a.handle_ack("b", a_new);
    b.handle_ack("a", b_new);
    assert!(matches!(
        a.poll(t0 + secs(1)),
        Some(NodeAction::Switch { .. })
    ));
    assert!(matches!(
        b.poll(t0 + secs(1)),
        Some(NodeAction::Switch { .. })
    ));
    // each side's preferred session is (our newest, their newest): the same pair
    assert_eq!(
        (a.newest(), a_sees_b.newest()),
        (b_sees_a.newest(), b.newest())
    );
    assert_eq!((a.newest(), b.newest()), (a_new, b_new));
    let late = t0 + secs(200);
    assert_eq!(a.poll(late), Some(NodeAction::Retire { old: a_old }));
    assert_eq!(a_sees_b.poll(late), Some(b_old));
    assert_eq!(b_sees_a.poll(late), Some(a_old));
    assert_eq!(a_sees_b.accepted(), vec![b_new]);
}
