//! A node's etcd role (docs/registry.md, section 3): which key ranges it may read and write, and
//! what `wiremesh registry grant` must change so that a role already in etcd holds exactly those.
//!
//! etcd permissions are ranges `[key, range_end)`; an empty `range_end` is the one key. There is
//! no create-only permission, so a node writes its own record, presence and claim (one exact
//! key: `claims/<name>` must not also cover `claims/<name>.b`), reads the whole mesh, and, when it
//! allocates its own CIDR, writes the shared `alloc/` range.

use super::keys::{prefix_end, Layout};
use super::shown_key;

/// What a permission allows. Numbered as etcd's `authpb.Permission.Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    Read,
    Write,
    ReadWrite,
}

/// One permission of a role: `access` on `[key, range_end)`, or on `key` alone when
/// `range_end` is empty.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Perm {
    pub access: Access,
    pub key: Vec<u8>,
    pub range_end: Vec<u8>,
}

impl Perm {
    fn prefix(access: Access, prefix: &str) -> Self {
        Perm {
            access,
            key: prefix.as_bytes().to_vec(),
            range_end: prefix_end(prefix),
        }
    }

    fn exact(access: Access, key: &str) -> Self {
        Perm {
            access,
            key: key.as_bytes().to_vec(),
            range_end: Vec::new(),
        }
    }

    /// Whether `other` covers the same keys (whatever the access).
    fn same_range(&self, other: &Perm) -> bool {
        self.key == other.key && self.range_end == other.range_end
    }

    /// The range for messages: `/wiremesh/prod/node/a/ (prefix)` or the key itself.
    pub fn shown(&self) -> String {
        let key = shown_key(&String::from_utf8_lossy(&self.key));
        match self.range_end.as_slice() {
            [] => key,
            end if *end == prefix_end(&String::from_utf8_lossy(&self.key))[..] => {
                format!("{key} (prefix)")
            }
            end => format!("{key} .. {}", shown_key(&String::from_utf8_lossy(end))),
        }
    }
}

/// The role of node `node` in the mesh of `layout`: `wiremesh-<mesh>-<node>`.
///
/// The name alone is ambiguous (mesh `a-b` with node `c`, mesh `a` with node `b-c`); [`plan`]
/// refuses a role that holds permissions outside this mesh instead of rewriting it.
pub fn role_name(layout: &Layout, node: &str) -> String {
    format!("wiremesh-{}-{node}", layout.mesh())
}

/// The permissions of `node`'s role, in the order `registry grant` applies them: read on the
/// mesh, read-write on `node/<node>/`, on exactly `claims/<node>`, and on `alloc/` when the node
/// takes its own CIDR (`allocate`).
pub fn permissions(layout: &Layout, node: &str, allocate: bool) -> Vec<Perm> {
    let p = layout.prefix();
    let mut perms = vec![
        Perm::prefix(Access::Read, p),
        Perm::prefix(Access::ReadWrite, &format!("{p}node/{node}/")),
        Perm::exact(Access::ReadWrite, &layout.claim(node)),
    ];
    if allocate {
        perms.push(Perm::prefix(Access::ReadWrite, &format!("{p}alloc/")));
    }
    perms
}

/// What to change in a role that holds `held` so that it holds exactly `wanted`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoleChanges {
    /// Held ranges `wanted` does not name (an `alloc/` grant under `--no-allocate`, a grant
    /// added by hand inside the mesh).
    pub revoke: Vec<Perm>,
    /// Wanted permissions not held with that access (etcd replaces the access of a range it
    /// holds, so a grant also corrects a held range's access).
    pub grant: Vec<Perm>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    #[error(
        "etcd role '{}' already holds {} outside {prefix}: another mesh and node spell the same \
         role name (mesh 'a-b' with node 'c' and mesh 'a' with node 'b-c'), or it was extended by \
         hand; not changed. Rename the node or the mesh, or remove the role first",
        shown_key(role), foreign.shown()
    )]
    Foreign {
        role: String,
        prefix: String,
        foreign: Perm,
    },
}

/// The changes that turn `held` (the role's permissions in etcd; empty for a new role) into
/// `wanted`; refused when `held` reaches outside the mesh's prefix.
pub fn plan(
    layout: &Layout,
    role: &str,
    held: &[Perm],
    wanted: &[Perm],
) -> Result<RoleChanges, GrantError> {
    let prefix = layout.prefix();
    let end = prefix_end(prefix);
    if let Some(foreign) = held
        .iter()
        .find(|h| !h.key.starts_with(prefix.as_bytes()) || !within(&h.range_end, &end))
    {
        return Err(GrantError::Foreign {
            role: role.to_string(),
            prefix: prefix.to_string(),
            foreign: foreign.clone(),
        });
    }
    Ok(RoleChanges {
        revoke: held
            .iter()
            .filter(|h| !wanted.iter().any(|w| w.same_range(h)))
            .cloned()
            .collect(),
        grant: wanted
            .iter()
            .filter(|w| !held.contains(w))
            .cloned()
            .collect(),
    })
}

/// Whether a range ending at `range_end` stays inside a prefix that ends at `end`.
fn within(range_end: &[u8], end: &[u8]) -> bool {
    // empty: one key (its start was checked); "\0": every key from the start on.
    range_end.is_empty() || (range_end != [0] && range_end <= end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prod() -> Layout {
        Layout::new("prod").unwrap()
    }

    #[test]
    fn a_self_allocating_node_gets_the_four_ranges_of_section_3() {
        let listed: Vec<(Access, String)> = permissions(&prod(), "gcp-c", true)
            .iter()
            .map(|p| (p.access, p.shown()))
            .collect();
        assert_eq!(
            listed,
            [
                (Access::Read, "/wiremesh/prod/ (prefix)".to_string()),
                (
                    Access::ReadWrite,
                    "/wiremesh/prod/node/gcp-c/ (prefix)".into()
                ),
                (Access::ReadWrite, "/wiremesh/prod/claims/gcp-c".into()),
                (Access::ReadWrite, "/wiremesh/prod/alloc/ (prefix)".into()),
            ]
        );
        assert_eq!(role_name(&prod(), "gcp-c"), "wiremesh-prod-gcp-c");
    }

    #[test]
    fn the_claim_grant_is_one_key_so_it_does_not_cover_a_longer_name() {
        let perms = permissions(&prod(), "a", false);
        assert_eq!(perms.len(), 3, "no alloc/ grant without allocation");
        assert_eq!(perms[2].key, b"/wiremesh/prod/claims/a");
        assert!(perms[2].range_end.is_empty());
        // the node range ends before node/a.b/ and node/a0
        assert_eq!(perms[1].range_end, b"/wiremesh/prod/node/a0");
    }

    #[test]
    fn a_new_role_gets_every_permission_and_a_converged_one_nothing() {
        let wanted = permissions(&prod(), "a", true);
        let first = plan(&prod(), "r", &[], &wanted).unwrap();
        assert_eq!(first.grant, wanted);
        assert!(first.revoke.is_empty());
        assert_eq!(
            plan(&prod(), "r", &wanted, &wanted).unwrap(),
            RoleChanges::default()
        );
    }

    #[test]
    fn no_allocate_on_a_self_allocating_role_revokes_its_alloc_range() {
        let held = permissions(&prod(), "a", true);
        let wanted = permissions(&prod(), "a", false);
        let changes = plan(&prod(), "r", &held, &wanted).unwrap();
        assert_eq!(changes.revoke, [held[3].clone()]);
        assert!(changes.grant.is_empty());
    }

    #[test]
    fn a_held_range_with_other_access_is_granted_again_not_revoked() {
        let wanted = permissions(&prod(), "a", false);
        let mut held = wanted.clone();
        held[0].access = Access::ReadWrite; // the whole mesh writable, by hand
        let changes = plan(&prod(), "r", &held, &wanted).unwrap();
        assert!(changes.revoke.is_empty());
        assert_eq!(changes.grant, [wanted[0].clone()]);
    }

    #[test]
    fn a_role_reaching_outside_the_mesh_is_refused_naming_the_range() {
        // mesh "prod-x" with node "a" and mesh "prod" with node "x-a" share a role name
        let other = Layout::new("prod-x").unwrap();
        assert_eq!(role_name(&other, "a"), role_name(&prod(), "x-a"));
        let held = permissions(&other, "a", true);
        let err = plan(&prod(), "wiremesh-prod-x-a", &held, &[]).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("/wiremesh/prod-x/ (prefix) outside /wiremesh/prod/"),
            "{text}"
        );
        // a range that starts inside but runs past the mesh's end is as foreign
        let mut wide = permissions(&prod(), "a", false)[0].clone();
        wide.range_end = vec![0];
        assert!(plan(&prod(), "r", &[wide], &[]).is_err());
    }
}
