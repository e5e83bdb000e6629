//! Keeps the kernel's routes into the tun device equal to the plan, each with the MTU of its
//! path: the discovered MTU towards the first hop, bounded by the plan's estimate of the hops
//! behind it. Only routes whose destination or MTU changed are touched.

use crate::core::plan::Plan;
use crate::engine::Device;
use crate::io::netlink::{NetlinkError, Routes};
use ipnet::IpNet;
use std::collections::BTreeMap;

pub struct RouteSync {
    routes: Routes,
    applied: BTreeMap<IpNet, u16>,
}

/// What the routes should be: destination → MTU.
fn desired(plan: &Plan, device: &Device) -> BTreeMap<IpNet, u16> {
    let table = device.peers();
    let by_name: BTreeMap<String, u16> = table.iter().map(|p| (p.name(), p.path.mtu())).collect();
    plan.routes
        .iter()
        .map(|r| {
            let first = by_name.get(&r.via).copied().unwrap_or(r.mtu);
            (r.destination, first.min(r.beyond_mtu.unwrap_or(u16::MAX)))
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
        let mut changes = 0;
        for (dest, mtu) in &want {
            if self.applied.get(dest) != Some(mtu) {
                self.routes.set(*dest, Some(*mtu)).await?;
                self.applied.insert(*dest, *mtu);
                changes += 1;
            }
        }
        let stale: Vec<IpNet> = self
            .applied
            .keys()
            .filter(|d| !want.contains_key(d))
            .copied()
            .collect();
        for dest in stale {
            self.routes.remove(dest).await?;
            self.applied.remove(&dest);
            changes += 1;
        }
        Ok(changes)
    }

    /// Removes every route this daemon installed.
    pub async fn clear(&mut self) {
        for dest in std::mem::take(&mut self.applied).into_keys() {
            if let Err(e) = self.routes.remove(dest).await {
                tracing::warn!(error = %e, "route removal failed");
            }
        }
    }
}
