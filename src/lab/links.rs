//! Limits on the links between two regions, set in the core router namespace:
//! - `mtu`: policy routing sends traffic between the two regions' subnets through a route with
//!   `mtu lock N`, so the router refuses larger DF packets with ICMP "fragmentation needed",
//!   as a real smaller-MTU link does;
//! - `black-hole-above`: an nftables rule drops larger packets without any ICMP, as paths whose
//!   middleboxes filter ICMP do (the case that breaks naive path-MTU discovery).
//!
//! Both can be changed while the mesh runs (`wiremesh lab link`).

use super::layout::{Layout, RegionLayout};
use super::netns::{exec_in, ip_in, nft};
use super::LabError;

/// The nftables table every lab's router uses for its black holes.
const NFT_TABLE: &str = "wmlab";

/// A limit on one inter-region link; `None` fields are lifted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkLimit {
    pub mtu: Option<u16>,
    pub black_hole_above: Option<u16>,
}

fn regions<'a>(
    layout: &'a Layout,
    a: &str,
    b: &str,
) -> Result<(&'a RegionLayout, &'a RegionLayout), LabError> {
    let find = |r: &str| {
        layout.region(r).ok_or_else(|| LabError::Command {
            command: format!("lab link {a} {b}"),
            stderr: format!("no region '{r}' in this lab"),
        })
    };
    Ok((find(a)?, find(b)?))
}

/// Sets (or lifts) the limits of the link between regions `a` and `b`, both directions.
pub fn set(layout: &Layout, a: &str, b: &str, limit: LinkLimit) -> Result<(), LabError> {
    let (ra, rb) = regions(layout, a, b)?;
    let ns = layout.core_ns.as_str();
    for (from, to) in [(ra, rb), (rb, ra)] {
        set_mtu(ns, from, to, limit.mtu)?;
    }
    set_black_hole(ns, ra, rb, limit.black_hole_above)
}

/// A routing table per ordered pair of regions.
fn table(from: &RegionLayout, to: &RegionLayout) -> String {
    (10_000 + u32::from(from.index) * 256 + u32::from(to.index)).to_string()
}

fn set_mtu(
    ns: &str,
    from: &RegionLayout,
    to: &RegionLayout,
    mtu: Option<u16>,
) -> Result<(), LabError> {
    let t = table(from, to);
    let nets = [
        (
            "-4",
            format!("172.31.{}.0/24", from.index),
            format!("172.31.{}.0/24", to.index),
        ),
        (
            "-6",
            format!("fd31:{}::/64", from.index),
            format!("fd31:{}::/64", to.index),
        ),
    ];
    for (fam, src, dst) in &nets {
        // remove any earlier rule for this pair; absent is fine
        let _ = ip_in(
            ns,
            &[fam, "rule", "del", "from", src, "to", dst, "table", &t],
        );
        if let Some(mtu) = mtu {
            let m = mtu.to_string();
            ip_in(
                ns,
                &[
                    fam, "route", "replace", dst, "dev", &to.bridge, "mtu", "lock", &m, "table", &t,
                ],
            )?;
            ip_in(
                ns,
                &[
                    fam, "rule", "add", "from", src, "to", dst, "table", &t, "priority", "100",
                ],
            )?;
        }
    }
    Ok(())
}

fn set_black_hole(
    ns: &str,
    a: &RegionLayout,
    b: &RegionLayout,
    above: Option<u16>,
) -> Result<(), LabError> {
    let (lo, hi) = if a.index < b.index { (a, b) } else { (b, a) };
    let chain = format!("link_{}_{}", lo.index, hi.index);
    nft(ns, &format!(
        "add table inet {NFT_TABLE}; add chain inet {NFT_TABLE} forward {{ type filter hook forward priority 0; policy accept; }}; add chain inet {NFT_TABLE} {chain}; flush chain inet {NFT_TABLE} {chain}"
    ))?;
    let jump_exists = exec_in(ns, &["nft", "list", "chain", "inet", NFT_TABLE, "forward"])
        .map(|o| String::from_utf8_lossy(&o.stdout).contains(&format!("jump {chain}")))
        .unwrap_or(false);
    if !jump_exists {
        nft(
            ns,
            &format!("add rule inet {NFT_TABLE} forward jump {chain}"),
        )?;
    }
    if let Some(above) = above {
        let (i, j) = (lo.index, hi.index);
        let mut rules = Vec::new();
        for (x, y) in [(i, j), (j, i)] {
            rules.push(format!("add rule inet {NFT_TABLE} {chain} ip saddr 172.31.{x}.0/24 ip daddr 172.31.{y}.0/24 meta length > {above} drop"));
            rules.push(format!("add rule inet {NFT_TABLE} {chain} ip6 saddr fd31:{x}::/64 ip6 daddr fd31:{y}::/64 meta length > {above} drop"));
        }
        nft(ns, &rules.join("; "))?;
    }
    Ok(())
}
