//! The key layout of docs/registry.md, section 1: building keys and reading them back.
//!
//! Every key of mesh `M` lies under `/wiremesh/M/`; the trailing `/` keeps mesh `prod` apart from
//! `prod2` (and node `a` from `a.b`) in etcd's byte-ordered ranges. A CIDR in a key writes its
//! `/` as `-`, as flannel does: `alloc/v4/10.244.7.0-24`.

use crate::core::topology::{shown, valid_name, NAME_RULE};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// Where every mesh lives.
pub const ROOT: &str = "/wiremesh/";

/// Why a key or a mesh name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("mesh name '{}' {}", shown(.0), NAME_RULE)]
    Mesh(String),
    #[error("not under this mesh's prefix")]
    Outside,
    #[error("not a key of the registry's layout (written by a newer wiremesh?)")]
    Unknown,
    #[error("'{}' is not a node name: {}", shown(.0), NAME_RULE)]
    Name(String),
    #[error("'{}' is not a CIDR written ADDRESS-LENGTH in canonical form", shown(.0))]
    Cidr(String),
}

/// What a key is, read from its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    Settings,
    /// The mesh's network policy: the policy part of a topology file, as TOML text.
    Policy,
    Record(String),
    Presence(String),
    Claim(String),
    /// An `alloc/v4/` or `alloc/v6/` key, with the CIDR it locks.
    Alloc(IpNet),
    Absent(String),
}

/// The keys of one mesh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    prefix: String,
}

impl Layout {
    /// The layout of mesh `mesh`, a name by the node-name rules.
    pub fn new(mesh: &str) -> Result<Self, KeyError> {
        if !valid_name(mesh) {
            return Err(KeyError::Mesh(mesh.to_string()));
        }
        Ok(Layout {
            prefix: format!("{ROOT}{mesh}/"),
        })
    }

    /// The mesh's name.
    pub fn mesh(&self) -> &str {
        self.prefix[ROOT.len()..].trim_end_matches('/')
    }

    /// `/wiremesh/<mesh>/`: what a list or a watch covers.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn settings(&self) -> String {
        format!("{}settings", self.prefix)
    }

    /// The policy key: like the settings, the administrator's alone (no node's role reaches it).
    pub fn policy(&self) -> String {
        format!("{}policy", self.prefix)
    }

    pub fn record(&self, node: &str) -> String {
        format!("{}node/{node}/record", self.prefix)
    }

    pub fn presence(&self, node: &str) -> String {
        format!("{}node/{node}/presence", self.prefix)
    }

    pub fn claim(&self, node: &str) -> String {
        format!("{}claims/{node}", self.prefix)
    }

    pub fn absent(&self, node: &str) -> String {
        format!("{}absent/{node}", self.prefix)
    }

    /// The `alloc/` key that locks `cidr`.
    pub fn alloc(&self, cidr: IpNet) -> String {
        let family = match cidr {
            IpNet::V4(_) => "v4",
            IpNet::V6(_) => "v6",
        };
        format!("{}alloc/{family}/{}", self.prefix, segment(cidr))
    }

    /// What `key` is. Names must be valid node names and CIDRs canonical network addresses,
    /// so that one node or one CIDR has exactly one key of each kind.
    pub fn parse(&self, key: &str) -> Result<Key, KeyError> {
        let rest = key.strip_prefix(&self.prefix).ok_or(KeyError::Outside)?;
        let parts: Vec<&str> = rest.splitn(4, '/').collect();
        match parts.as_slice() {
            ["settings"] => Ok(Key::Settings),
            ["policy"] => Ok(Key::Policy),
            ["node", n, "record"] => Ok(Key::Record(name(n)?)),
            ["node", n, "presence"] => Ok(Key::Presence(name(n)?)),
            ["claims", n] => Ok(Key::Claim(name(n)?)),
            ["absent", n] => Ok(Key::Absent(name(n)?)),
            ["alloc", "v4", s] => parse_segment::<Ipv4Net>(s).map(|n| Key::Alloc(IpNet::V4(n))),
            ["alloc", "v6", s] => parse_segment::<Ipv6Net>(s).map(|n| Key::Alloc(IpNet::V6(n))),
            _ => Err(KeyError::Unknown),
        }
    }
}

/// The first key after every key that starts with `prefix`: etcd's `range_end` of a prefix, in
/// a range read, a watch and a role's permission alike.
pub fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// A node name from a key, by the node-name rules.
fn name(s: &str) -> Result<String, KeyError> {
    valid_name(s)
        .then(|| s.to_string())
        .ok_or_else(|| KeyError::Name(s.to_string()))
}

/// A CIDR as a key segment: `10.244.7.0-24`, `fd10:244:0:7::-64`.
pub fn segment(cidr: IpNet) -> String {
    format!("{}-{}", cidr.network(), cidr.prefix_len())
}

/// A key segment back to its CIDR; only the canonical form [`segment`] writes is accepted, so a
/// CIDR cannot hide behind a second spelling (`fd10:244:0:7:0:0:0:0-64`).
fn parse_segment<N>(s: &str) -> Result<N, KeyError>
where
    N: std::str::FromStr + Copy + Into<IpNet>,
{
    let err = || KeyError::Cidr(s.to_string());
    let (addr, len) = s.rsplit_once('-').ok_or_else(err)?;
    let net: N = format!("{addr}/{len}").parse().map_err(|_| err())?;
    if segment(net.into()) != s {
        return Err(err());
    }
    Ok(net)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prod() -> Layout {
        Layout::new("prod").unwrap()
    }

    #[test]
    fn the_end_of_a_prefix_is_its_last_byte_plus_one() {
        assert_eq!(prefix_end("/wiremesh/p/"), b"/wiremesh/p0".to_vec());
    }

    #[test]
    fn a_layout_knows_its_mesh_name() {
        assert_eq!(prod().mesh(), "prod");
    }

    #[test]
    fn every_key_kind_reads_back_as_what_built_it() {
        let l = prod();
        let v4: IpNet = "10.244.7.0/24".parse().unwrap();
        let v6: IpNet = "fd10:244:0:7::/64".parse().unwrap();
        let cases = [
            (l.settings(), Key::Settings),
            (l.policy(), Key::Policy),
            (l.record("gcp-c"), Key::Record("gcp-c".into())),
            (l.presence("gcp-c"), Key::Presence("gcp-c".into())),
            (l.claim("gcp-c"), Key::Claim("gcp-c".into())),
            (l.absent("gcp-c"), Key::Absent("gcp-c".into())),
            (l.alloc(v4), Key::Alloc(v4)),
            (l.alloc(v6), Key::Alloc(v6)),
        ];
        for (key, want) in cases {
            assert_eq!(l.parse(&key), Ok(want), "{key}");
        }
    }

    #[test]
    fn keys_are_spelled_as_the_design_spells_them() {
        let l = prod();
        assert_eq!(l.prefix(), "/wiremesh/prod/");
        assert_eq!(l.record("a"), "/wiremesh/prod/node/a/record");
        assert_eq!(l.policy(), "/wiremesh/prod/policy");
        assert_eq!(
            l.alloc("10.244.7.0/24".parse().unwrap()),
            "/wiremesh/prod/alloc/v4/10.244.7.0-24"
        );
        assert_eq!(
            l.alloc("fd10:244:0:7::/64".parse().unwrap()),
            "/wiremesh/prod/alloc/v6/fd10:244:0:7::-64"
        );
    }

    #[test]
    fn a_mesh_whose_name_is_a_prefix_of_another_is_kept_apart() {
        let prod2 = Layout::new("prod2").unwrap();
        assert_eq!(prod().parse(&prod2.settings()), Err(KeyError::Outside));
    }

    #[test]
    fn bad_keys_say_what_is_wrong() {
        let l = prod();
        let cases = [
            ("/wiremesh/prod/node/a/record/extra", KeyError::Unknown),
            ("/wiremesh/prod/settings2", KeyError::Unknown),
            ("/wiremesh/prod/node/a", KeyError::Unknown),
            ("/wiremesh/prod/claims/", KeyError::Name(String::new())),
            ("/wiremesh/prod/claims/a b", KeyError::Name("a b".into())),
            (
                "/wiremesh/prod/alloc/v4/10.244.7.1-24",
                KeyError::Cidr("10.244.7.1-24".into()),
            ),
            (
                "/wiremesh/prod/alloc/v4/fd10::-64",
                KeyError::Cidr("fd10::-64".into()),
            ),
            (
                "/wiremesh/prod/alloc/v6/fd10:244:0:7:0:0:0:0-64",
                KeyError::Cidr("fd10:244:0:7:0:0:0:0-64".into()),
            ),
            ("/wiremesh/prod/alloc/v4/10.244.7.0/24", KeyError::Unknown),
            ("/other/prod/settings", KeyError::Outside),
        ];
        for (key, want) in cases {
            assert_eq!(l.parse(key), Err(want), "{key}");
        }
    }

    #[test]
    fn a_mesh_name_follows_the_node_name_rules() {
        assert!(Layout::new("prod_2.eu-1").is_ok());
        let long = "m".repeat(64);
        for bad in ["", "a/b", long.as_str(), "prod\n"] {
            let err = Layout::new(bad).unwrap_err();
            assert!(err.to_string().starts_with("mesh name '"), "{err}");
        }
    }
}
