//! Keeps the kernel's routes into the tun device equal to the plan, each with the MTU of its
//! path: the discovered MTU towards the first hop, bounded by the plan's estimate of the hops
//! behind it. Only routes whose destination or MTU changed are touched, and after start-up only
//! the routes a change concerns are even looked at: a reload's diff, or the routes through the
//! peers whose path MTU moved. With 10,000 routes, recomputing them all per event is wasted work.

use crate::core::diff::PlanDiff;
use crate::core::plan::{Plan, RoutePlan};
use crate::engine::Device;
use crate::engine::PathEvent;
use crate::io::netlink::{NetlinkError, Routes};
use ipnet::IpNet;
use std::collections::{BTreeMap, HashMap, HashSet};

pub struct RouteSync {
    routes: Routes,
    applied: BTreeMap<IpNet, u16>,
}

/// Each peer's discovered path MTU, by name.
pub(super) fn path_mtus(device: &Device) -> HashMap<String, u16> {
    device
        .peers()
        .iter()
        .map(|p| (p.name(), p.path.mtu()))
        .collect()
}

/// What the routes should be: destination → MTU.
fn desired(plan: &Plan, device: &Device) -> BTreeMap<IpNet, u16> {
    let by_name = path_mtus(device);
    plan.routes
        .iter()
        .map(|r| {
            (
                r.destination,
                r.mtu_with_first_hop(by_name.get(&r.via).copied()),
            )
        })
        .collect()
}

impl RouteSync {
    pub fn new(routes: Routes) -> Self {
        Self {
            routes,
            applied: BTreeMap::new(),
        }
    }

    /// Applies the difference between what is installed and what `plan` and the discovered
    /// MTUs want. Returns how many routes were added, changed or removed.
    pub async fn sync(&mut self, plan: &Plan, device: &Device) -> Result<usize, NetlinkError> {
        let want = desired(plan, device);
        let set: Vec<(IpNet, u16)> = want
            .iter()
            .filter(|(dest, mtu)| self.applied.get(*dest) != Some(*mtu))
            .map(|(d, m)| (*d, *m))
            .collect();
        let stale: Vec<IpNet> = self
            .applied
            .keys()
            .filter(|d| !want.contains_key(d))
            .copied()
            .collect();
        self.install(&set).await?;
        self.uninstall(&stale).await?;
        Ok(set.len() + stale.len())
    }

    /// Installs routes (destination, MTU) many at a time, recording each.
    async fn install(&mut self, set: &[(IpNet, u16)]) -> Result<(), NetlinkError> {
        let result = self.routes.set_many(set).await;
        if result.is_ok() {
            self.applied.extend(set.iter().copied());
        }
        result
    }

    /// Removes routes many at a time.
    async fn uninstall(&mut self, dests: &[IpNet]) -> Result<(), NetlinkError> {
        let result = self.routes.remove_many(dests).await;
        if result.is_ok() {
            for d in dests {
                self.applied.remove(d);
            }
        }
        result
    }

    /// Applies a reload's diff: removes the routes it drops, installs the ones it adds and moves
    /// the MTUs it changes; every other route is left alone, unread. Returns how many routes
    /// were added, changed or removed.
    pub async fn apply(&mut self, diff: &PlanDiff, device: &Device) -> Result<usize, NetlinkError> {
        let set: Vec<&RoutePlan> = diff
            .routes_added
            .iter()
            .chain(&diff.routes_changed)
            .collect();
        // a destination that only changed its first hop stays installed
        let kept: HashSet<IpNet> = set.iter().map(|r| r.destination).collect();
        let removed: Vec<IpNet> = diff
            .routes_removed
            .iter()
            .map(|r| r.destination)
            .filter(|d| !kept.contains(d) && self.applied.contains_key(d))
            .collect();
        self.uninstall(&removed).await?;
        let by_name = path_mtus(device);
        let set: Vec<(IpNet, u16)> = set
            .into_iter()
            .map(|r| {
                (
                    r.destination,
                    r.mtu_with_first_hop(by_name.get(&r.via).copied()),
                )
            })
            .filter(|(d, m)| self.applied.get(d) != Some(m))
            .collect();
        self.install(&set).await?;
        Ok(removed.len() + set.len())
    }

    /// Moves the MTUs of the routes whose first hop is a peer in `events`, to that peer's
    /// discovered path MTU. Returns how many routes changed.
    pub async fn follow_paths(
        &mut self,
        plan: &Plan,
        device: &Device,
        events: &[PathEvent],
    ) -> Result<usize, NetlinkError> {
        let table = device.peers();
        let moved: HashMap<&str, u16> = events
            .iter()
            .filter_map(|e| Some((e.peer.as_str(), table.by_key(&e.public_key)?.path.mtu())))
            .collect();
        let set: Vec<(IpNet, u16)> = plan
            .routes
            .iter()
            .filter_map(|r| Some((r, *moved.get(r.via.as_str())?)))
            .map(|(r, mtu)| (r.destination, r.mtu_with_first_hop(Some(mtu))))
            .filter(|(d, m)| self.applied.get(d) != Some(m))
            .collect();
        self.install(&set).await?;
        Ok(set.len())
    }

    /// Removes every route this daemon installed.
    pub async fn clear(&mut self) {
        let all: Vec<IpNet> = std::mem::take(&mut self.applied).into_keys().collect();
        if let Err(e) = self.routes.remove_many(&all).await {
            tracing::warn!(error = %e, "route removal failed");
        }
    }
}
