//! A three-member etcd cluster with one member killed: the daemons, given every member, carry
//! on through the other two, and a join still converges.

mod common;

use common::*;
use std::time::Duration;

#[test]
fn a_join_converges_with_one_of_three_etcd_members_dead() {
    if !require_root() {
        return;
    }
    let mut lab = running_registry_lab("three-regions.toml", 3);
    assert_eq!(lab.registry_url().unwrap().matches(':').count(), 4); // etcd:// + 3 members
    assert_all_pairs(&lab, Duration::from_secs(3));
    lab.kill_etcd(0).unwrap();
    let (_, took) = join_and_wait(&mut lab, "e", "eu-west", Duration::from_secs(45));
    println!("with member e1 dead, every node had peer e in {took:?}");
    assert_all_pairs(&lab, Duration::from_secs(3));
}
