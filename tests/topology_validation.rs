//! Every way a topology file can be wrong, and what the error must say about it: the file, the
//! line, the node and the field, so a person can go straight to the mistake. Then garbage: the
//! loader must answer every input with `Ok` or `Err`, never a panic.

use std::path::Path;
use wiremesh::core::topology::{Problem, Topology};

const A: &str = "vwwedG9QRsbpDCN1IbWwPlVTd2/9GzdJHX0ltjTPPHQ=";
const B: &str = "iptotQ7iItj2zxNi1AnZ1SO9pdx53uVj51g3rzli9kc=";

/// A bad topology (`{A}`, `{B}` stand for two valid public keys) and what its error must contain
/// besides the file name.
struct Case {
    name: &'static str,
    text: &'static str,
    want: &'static [&'static str],
}

const HEAD: &str = "mode = \"full\"\ncluster-cidr = \"10.244.0.0/16\"\n";

const CASES: &[Case] = &[
    Case {
        name: "syntax-error",
        text: "mode = \"full\"\ncluster-cidr = \"10.244.0.0/16\n",
        want: &["line 2"],
    },
    Case {
        name: "unknown-top-level-field",
        text: "mode = \"full\"\ncluster-cidr = \"10.244.0.0/16\"\ncolour = \"blue\"\n",
        want: &["line 3", "field 'colour'"],
    },
    Case {
        name: "node-field-typo",
        text: "@[[node]]\nname = \"a\"\ncloud = \"c\"\nregion = \"r\"\npublic-key = \"{A}\"\nendpiont = \"192.0.2.1:51820\"\n",
        want: &["line 8", "node 'a'", "field 'endpiont'", "unknown field"],
    },
    Case {
        name: "missing-node-field",
        text: "@[[node]]\nname = \"a\"\nregion = \"r\"\npublic-key = \"{A}\"\n",
        want: &["line 3", "node 'a'", "field 'cloud'", "missing field"],
    },
    Case {
        name: "wrong-value-type",
        text: "@listen-port = \"51820\"\n[[node]]\nname = \"a\"\ncloud = \"c\"\nregion = \"r\"\npublic-key = \"{A}\"\n",
        want: &["line 3", "field 'listen-port'"],
    },
    Case {
        name: "wrong-node-value-type",
        text: "@[[node]]\nname = \"a\"\ncloud = \"c\"\nregion = \"r\"\npublic-key = \"{B}\"\n[region.r]\n[[node]]\nname = \"b\"\nhub = \"yes\"\ncloud = \"c\"\nregion = \"r\"\npublic-key = \"{A}\"\n",
        want: &["line 11", "node 'b'", "field 'hub'"],
    },
    Case {
        name: "bad-mode",
        text: "mode = \"star\"\ncluster-cidr = \"10.244.0.0/16\"\n[[node]]\nname = \"a\"\ncloud = \"c\"\nregion = \"r\"\npublic-key = \"{A}\"\n",
        want: &["line 1", "field 'mode'", "'star'"],
    },
    Case {
        name: "duplicate-node-name",
        text: "@[[node]]\nname = \"a\"\ncloud = \"c\"\nregion = \"r\"\npublic-key = \"{A}\"\n\n[[node]]\nname = \"a\"\ncloud = \"c\"\nregion = \"r\"\npublic-key = \"{B}\"\n",
        want: &["line 10", "node 'a'", "field 'name'", "duplicate node name (first at line 4)"],
    },
    Case {
        name: "duplicate-public-key",
        text: "@[[node]]\nname = \"a\"\ncloud = \"c\"\nregion = \"r\"\npublic-key = \"{A}\"\n[[node]]\nname = \"b\"\ncloud = \"c\"\nregion = \"r\"\npublic-key = \"{A}\"\n",
        want: &["line 12", "node 'b'", "field 'public-key'", "same key as node 'a'"],
    },
    Case {
        name: "bad-base64-key",
        text: "@[[node]]\nname = \"a\"\ncloud = \"c\"\nregion = \"r\"\npublic-key = \"not*base64!\"\n",
        want: &["line 7", "node 'a'", "field 'public-key'", "not valid base64"],
    },
    Case {
        name: "wrong-length-key",
        text: "@[[node]]\nname = \"a\"\ncloud = \"c\"\nregion = \"r\"\npublic-key = \"AAAA\"\n",
        want: &["line 7", "node 'a'", "field 'public-key'", "3 bytes"],
    },
    Case {
        name: "endpoint-port-zero",
        text: "@[[node]]\nname = \"a\"\ncloud = \"c\"\nregion = \"r\"\nendpoint = \"192.0.2.1:0\"\npublic-key = \"{A}\"\n",
        want: &["line 7", "node 'a'", "field 'endpoint'", "bad port '0'"],
    },
    Case {
        name: "endpoint-bad-host",
        text: "@[[node]]\nname = \"a\"\ncloud = \"c\"\nregion = \"r\"\nendpoint = \"bad_host:51820\"\npublic-key = \"{A}\"\n",
        want: &["line 7", "node 'a'", "field 'endpoint'", "'bad_host' is neither"],
    },
    Case {
        name: "endpoint-unbracketed-ipv6",
        text: "@[[node]]\nname = \"a\"\ncloud = \"c\"\nregion = \"r\"\npublic-key = \"{A}\"\nendpoint = \"2001:db8::1:51820\"\n",
        want: &["line 8", "node 'a'", "field 'endpoint'", "brackets"],
    },
    Case {
        name: "pod-cidr-outside-cluster",
        text: "@[[node]]\nname = \"a\"\ncloud = \"c\"\nregion = \"r\"\npublic-key = \"{A}\"\npod-cidr = \"10.99.1.0/24\"\n",
        want: &["line 8", "node 'a'", "field 'pod-cidr'", "outside the cluster CIDR 10.244.0.0/16"],
    },
    Case {
        name: "overlapping-pinned-pod-cidrs",
        text: "@[[node]]\nname = \"a\"\ncloud = \"c\"\nregion = \"r\"\npublic-key = \"{A}\"\npod-cidr = \"10.244.1.0/24\"\n[[node]]\nname = \"b\"\ncloud = \"c\"\nregion = \"r\"\npublic-key = \"{B}\"\npod-cidr = \"10.244.1.128/25\"\n",
        want: &["line 14", "node 'b'", "field 'pod-cidr'", "overlaps node 'a'"],
    },
    Case {
        name: "pod-cidr-host-bits",
        text: "@[[node]]\nname = \"a\"\ncloud = \"c\"\nregion = \"r\"\npublic-key = \"{A}\"\npod-cidr = \"10.244.1.5/24\"\n",
        want: &["line 8", "node 'a'", "field 'pod-cidr'", "host bits", "10.244.1.0/24"],
    },
    Case {
        name: "node-prefix-not-longer-than-cluster",
        text: "@node-prefix = 16\n[[node]]\nname = \"a\"\ncloud = \"c\"\nregion = \"r\"\npublic-key = \"{A}\"\n",
        want: &["line 3", "field 'node-prefix'", "/16 must be longer"],
    },
    Case {
        name: "hub-region-without-hub",
        text: "mode = \"hub\"\ncluster-cidr = \"10.244.0.0/16\"\n[[node]]\nname = \"h\"\ncloud = \"c\"\nregion = \"r1\"\npublic-key = \"{A}\"\nhub = true\n[[node]]\nname = \"s\"\ncloud = \"c\"\nregion = \"r2\"\npublic-key = \"{B}\"\n",
        want: &["line 12", "node 's'", "field 'hub'", "region 'r2' has no hub"],
    },
    Case {
        name: "pod-cidr-v6-without-cluster-v6",
        text: "@[[node]]\nname = \"a\"\ncloud = \"c\"\nregion = \"r\"\npublic-key = \"{A}\"\npod-cidr-v6 = \"fd10::/64\"\n",
        want: &["line 8", "node 'a'", "field 'pod-cidr-v6'", "no cluster-cidr-v6"],
    },
    Case {
        name: "no-nodes",
        text: "@",
        want: &["field 'node'", "no [[node]] entries"],
    },
    Case {
        name: "region-mtu-out-of-range",
        text: "@[region.r]\nunderlay-mtu = 100\n[[node]]\nname = \"a\"\ncloud = \"c\"\nregion = \"r\"\npublic-key = \"{A}\"\n",
        want: &["line 4", "field 'region.r.underlay-mtu'", "100 is outside"],
    },
    Case {
        name: "all-zero-public-key",
        text: "@[[node]]\nname = \"a\"\ncloud = \"c\"\nregion = \"r\"\npublic-key = \"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\"\n",
        want: &["line 7", "node 'a'", "field 'public-key'", "low-order"],
    },
    Case {
        name: "bad-node-name",
        text: "@[[node]]\nname = \"a b\"\ncloud = \"c\"\nregion = \"r\"\npublic-key = \"{A}\"\n",
        want: &["line 4", "node 'a b'", "field 'name'"],
    },
    Case {
        name: "endpoints-duplicate",
        text: "@[[node]]\nname = \"a\"\ncloud = \"c\"\nregion = \"r\"\npublic-key = \"{A}\"\nendpoints = [\n  { address = \"203.0.113.5:51820\" },\n  { address = \"203.0.113.5:51820\" },\n]\n",
        want: &["line 10", "node 'a'", "field 'endpoints.address'", "listed twice (first at line 9)"],
    },
    Case {
        name: "endpoints-empty-scope",
        text: "@[[node]]\nname = \"a\"\ncloud = \"c\"\nregion = \"r\"\npublic-key = \"{A}\"\nendpoints = [{ address = \"10.0.1.5:51820\", scope = \"\" }]\n",
        want: &["line 8", "node 'a'", "field 'endpoints.scope'", "empty scope"],
    },
    Case {
        name: "endpoints-private-without-scope",
        text: "@[[node]]\nname = \"a\"\ncloud = \"c\"\nregion = \"r\"\npublic-key = \"{A}\"\nendpoints = [{ address = \"10.0.1.5:51820\" }]\n",
        want: &["line 8", "node 'a'", "field 'endpoints.scope'", "'10.0.1.5:51820' is a private address"],
    },
    Case {
        name: "endpoints-bad-scope",
        text: "@[[node]]\nname = \"a\"\ncloud = \"c\"\nregion = \"r\"\npublic-key = \"{A}\"\nendpoints = [{ address = \"10.0.1.5:51820\", scope = \"VPC 1\" }]\n",
        want: &["line 8", "node 'a'", "field 'endpoints.scope'", "'VPC 1': a scope is"],
    },
    Case {
        name: "endpoint-and-endpoints",
        text: "@[[node]]\nname = \"a\"\ncloud = \"c\"\nregion = \"r\"\npublic-key = \"{A}\"\nendpoint = \"203.0.113.5:51820\"\nendpoints = [{ address = \"203.0.113.6:51820\" }]\n",
        want: &["line 9", "node 'a'", "field 'endpoints'", "'203.0.113.6:51820' has no scope, and 'endpoint' already gives the public address"],
    },
    Case {
        name: "endpoints-unknown-field",
        text: "@[[node]]\nname = \"a\"\ncloud = \"c\"\nregion = \"r\"\npublic-key = \"{A}\"\nendpoints = [{ address = \"203.0.113.5:51820\", zone = \"x\" }]\n",
        want: &["line 8", "node 'a'", "unknown field `zone`"],
    },
    Case {
        name: "lab-nat-unknown-kind",
        text: "@[[node]]\nname = \"a\"\ncloud = \"c\"\nregion = \"r\"\npublic-key = \"{A}\"\nlab.nat = \"full-cone\"\n",
        want: &["line 8", "node 'a'", "field 'lab.nat'", "'full-cone' is not a lab NAT (independent or dependent)"],
    },
    Case {
        name: "lab-nat-in-a-vpc-region",
        text: "@[region.r]\nlab.vpc = true\n[[node]]\nname = \"a\"\ncloud = \"c\"\nregion = \"r\"\npublic-key = \"{A}\"\nlab = { nat = \"independent\" }\n",
        want: &["line 10", "node 'a'", "field 'lab.nat'", "node in VPC region 'r': the lab puts a node in a VPC or behind NAT, not both"],
    },
    Case {
        name: "lab-nat-on-a-hub",
        text: "mode = \"hub\"\ncluster-cidr = \"10.244.0.0/16\"\n[[node]]\nname = \"a\"\ncloud = \"c\"\nregion = \"r\"\nhub = true\npublic-key = \"{A}\"\nlab.nat = \"dependent\"\n",
        want: &["line 9", "node 'a'", "field 'lab.nat'", "a hub behind NAT"],
    },
    Case {
        name: "lab-vpc-not-a-boolean",
        text: "@[region.r]\nlab.vpc = \"yes\"\n[[node]]\nname = \"a\"\ncloud = \"c\"\nregion = \"r\"\npublic-key = \"{A}\"\n",
        want: &["line 4", "field 'lab.vpc'"],
    },
    Case {
        name: "lab-node-field-typo",
        text: "@[[node]]\nname = \"a\"\ncloud = \"c\"\nregion = \"r\"\npublic-key = \"{A}\"\nlab.vpc = true\n",
        want: &["line 8", "node 'a'", "unknown field `vpc`, expected `nat`"],
    },
];

/// `@` at the start of a case stands for [`HEAD`], so most cases need not repeat it.
fn expand(text: &str) -> String {
    let text = match text.strip_prefix('@') {
        Some(rest) => format!("{HEAD}{rest}"),
        None => text.to_string(),
    };
    text.replace("{A}", A).replace("{B}", B)
}

#[test]
fn every_bad_topology_is_refused_with_its_file_line_node_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for case in CASES {
        let path = dir.path().join(format!("{}.toml", case.name));
        std::fs::write(&path, expand(case.text)).unwrap();
        let message = match Topology::load(&path) {
            Ok(_) => {
                failures.push(format!("{}: accepted", case.name));
                continue;
            }
            Err(e) => e.to_string(),
        };
        let file_name = format!("{}.toml", case.name);
        for want in std::iter::once(&file_name.as_str()).chain(case.want) {
            if !message.contains(want) {
                failures.push(format!("{}: missing {want:?} in:\n{message}", case.name));
            }
        }
    }
    assert!(CASES.len() >= 15);
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn lab_settings_read_in_either_spelling_and_leave_the_mesh_as_it_was() {
    let text = expand(&format!(
        "@[region.r]\nlab = {{ vpc = true }}\n{}{}",
        node("a", "{A}", ""),
        node("b", "{B}", "")
    ));
    let (with, lab) = Topology::parse_for_lab(&text, Path::new("t.toml")).unwrap();
    assert!(lab.vpc_regions.contains("r"));
    let plain = text.replace("lab = { vpc = true }\n", "");
    assert_eq!(
        with.nodes,
        Topology::parse(&plain, Path::new("t.toml")).unwrap().nodes
    );
    let nat = expand(&node("a", "{A}", "lab.nat = \"dependent\"\n"));
    let (_, lab) = Topology::parse_for_lab(&format!("{HEAD}{nat}"), Path::new("t.toml")).unwrap();
    assert_eq!(lab.nat["a"], wiremesh::core::topology::LabNat::Dependent);
}

/// The problems of a topology that must be refused.
fn problems_of(text: &str) -> Vec<Problem> {
    match Topology::parse(&expand(text), Path::new("t.toml")) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.problems(),
    }
}

/// A node (`{A}` or `{B}` for its key) with optional extra lines.
fn node(name: &str, key: &str, extra: &str) -> String {
    format!("[[node]]\nname = \"{name}\"\ncloud = \"c\"\nregion = \"r\"\npublic-key = \"{key}\"\n{extra}")
}

#[test]
fn a_bad_top_level_port_is_one_problem_at_its_own_line_not_one_per_node() {
    let text = format!(
        "@listen-port = 0\n{}{}",
        node("a", "{A}", ""),
        node("b", "{B}", "")
    );
    let problems = problems_of(&text);
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert_eq!(problems[0].line, Some(3));
    assert_eq!(problems[0].node, None);
    assert_eq!(problems[0].field.as_deref(), Some("listen-port"));
}

#[test]
fn a_nodes_own_bad_port_is_reported_at_its_line_besides_the_top_level_one() {
    // lines: 3 listen-port, 4-8 node a, 9 its own listen-port, 10-14 node b (inherits)
    let text = format!(
        "@listen-port = 0\n{}{}",
        node("a", "{A}", "listen-port = 0\n"),
        node("b", "{B}", "")
    );
    let problems = problems_of(&text);
    let places: Vec<_> = problems
        .iter()
        .map(|p| (p.line, p.node.as_deref(), p.field.as_deref()))
        .collect();
    assert_eq!(
        places,
        [
            (Some(3), None, Some("listen-port")),
            (Some(9), Some("a"), Some("listen-port")),
        ]
    );
}

#[test]
fn an_out_of_range_underlay_mtu_is_reported_at_its_own_line() {
    let text = format!(
        "@[region.r]\n# a comment between\nunderlay-mtu = 100\n{}",
        node("a", "{A}", "")
    );
    let problems = problems_of(&text);
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert_eq!(problems[0].line, Some(5));
    assert_eq!(problems[0].field.as_deref(), Some("region.r.underlay-mtu"));
}

#[test]
fn the_all_zero_public_key_is_refused_naming_node_field_and_line() {
    let text = node("a", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", "");
    let problems = problems_of(&format!("@{text}"));
    assert_eq!(problems.len(), 1, "{problems:#?}");
    let p = &problems[0];
    assert_eq!(
        (p.line, p.node.as_deref(), p.field.as_deref()),
        (Some(7), Some("a"), Some("public-key"))
    );
    assert!(p.message.contains("low-order"), "{}", p.message);
}

/// No character of an error may be a control character, and no error may grow with the input.
fn assert_tame(message: &str, limit: usize) {
    assert!(message.len() < limit, "{} bytes", message.len());
    let raw: Vec<char> = message
        .chars()
        .filter(|&c| c.is_control() && c != '\n')
        .collect();
    assert!(raw.is_empty(), "control characters {raw:?} in {message}");
}

#[test]
fn a_huge_hostile_node_name_gives_a_short_error_with_its_escapes_escaped() {
    let mut name = String::from("\\u001b[2J\\u0007");
    name.push_str(&"n".repeat(10 * 1024 * 1024));
    // a TOML string escape, so the name holds a real ESC and BEL
    let text = format!("@{}", node(&name, "{A}", ""));
    let err = Topology::parse(&expand(&text), Path::new("t.toml")).unwrap_err();
    let message = err.to_string();
    assert_tame(&message, 1024);
    let problems = err.problems();
    assert_eq!(problems.len(), 1, "{problems:#?}");
    let shown = problems[0].node.as_deref().unwrap();
    assert!(shown.starts_with("\\u{1b}[2J\\u{7}nnn"), "{shown}");
    assert!(
        shown.ends_with(&format!("… ({} bytes)", 10 * 1024 * 1024 + 5)),
        "{shown}"
    );
    assert!(message.contains(&format!("node '{shown}'")), "{message}");
}

#[test]
fn hostile_strings_in_every_echoed_field_give_short_tame_errors() {
    let evil = format!("\\u001b]0;owned\\u0007{}", "e".repeat(100_000));
    let cases = [
        format!(
            "mode = \"{evil}\"\ncluster-cidr = \"10.244.0.0/16\"\n{}",
            node("a", "{A}", "")
        ),
        format!(
            "mode = \"full\"\ncluster-cidr = \"{evil}\"\n{}",
            node("a", "{A}", "")
        ),
        format!("@{}", node("a", "{A}", &format!("endpoint = \"{evil}\"\n"))),
        format!(
            "@{}",
            node("a", "{A}", &format!("endpoint = \"{evil}:1\"\n"))
        ),
        format!(
            "@{}",
            node("a", "{A}", &format!("endpoint = \"192.0.2.1:{evil}\"\n"))
        ),
        format!("@{}", node("a", "{A}", &format!("pod-cidr = \"{evil}\"\n"))),
        format!("@{}", node("a", "{A}", &format!("\"{evil}\" = 1\n"))),
        format!(
            "@[region.\"{evil}\"]\nunderlay-mtu = 1\n{}",
            node("a", "{A}", "")
        ),
        format!(
            "@{}[[lab.link]]\nregions = [\"{evil}\", \"{evil}\"]\nmtu = 1\n",
            node("a", "{A}", "")
        ),
        format!(
            "mode = \"hub\"\ncluster-cidr = \"10.244.0.0/16\"\n{}",
            node("a", "{A}", "").replace("region = \"r\"", &format!("region = \"{evil}\""))
        ),
        format!("@{}{}", node(&evil, "{A}", ""), node("b", "{A}", "")),
        format!(
            "@{}{}",
            node(&evil, "{A}", "pod-cidr = \"10.244.1.0/24\"\n"),
            node("b", "{B}", "pod-cidr = \"10.244.1.0/25\"\n")
        ),
        format!("@{}", node(&evil, "{A}", "hub = \"yes\"\n")),
    ];
    for text in cases {
        let err = Topology::parse(&expand(&text), Path::new("t.toml")).unwrap_err();
        let message = err.to_string();
        assert_tame(&message, 4096);
        // ESC, "]0;owned", BEL and the 100,000 letters, as TOML decodes them
        assert!(message.contains("(100010 bytes)"), "{message}");
        assert!(message.contains("\\u{1b}]0;owned\\u{7}eee"), "{message}");
    }
}

#[test]
fn the_good_base_of_the_table_loads() {
    let text =
        expand("@[[node]]\nname = \"a\"\ncloud = \"c\"\nregion = \"r\"\npublic-key = \"{A}\"\n");
    Topology::parse(&text, Path::new("good.toml")).unwrap();
}

/// A small deterministic generator, so a failure can be replayed.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn must_not_panic(input: &[u8], what: &str) {
    let _ = parse_without_panic(input, what);
}

/// What the loader answers for `input` (its error as text); fails the test if it panics.
fn parse_without_panic(input: &[u8], what: &str) -> Result<(), String> {
    let text = String::from_utf8_lossy(input).into_owned();
    let result = std::panic::catch_unwind(|| {
        Topology::parse(&text, Path::new("fuzz.toml"))
            .map(|_| ())
            .map_err(|e| e.to_string())
    });
    result.unwrap_or_else(|_| panic!("the loader panicked on {what}:\n{text}"))
}

#[test]
fn the_loader_never_panics_on_truncated_or_corrupted_files() {
    let valid = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/topologies/hub-2regions.toml"
    ))
    .unwrap();
    Topology::parse(std::str::from_utf8(&valid).unwrap(), Path::new("x")).unwrap();
    for end in 0..=valid.len() {
        must_not_panic(&valid[..end], &format!("the first {end} bytes"));
    }
    let mut rng = XorShift(0x5eed_1234_abcd_0001);
    let interesting = b"=\"[]{}#.:/\n0123456789-x ";
    for round in 0..600 {
        let mut bytes = valid.clone();
        for _ in 0..1 + rng.next() % 4 {
            let at = (rng.next() as usize) % bytes.len();
            bytes[at] = match rng.next() % 3 {
                0 => interesting[(rng.next() as usize) % interesting.len()],
                1 => bytes[at] ^ (1 << (rng.next() % 8)),
                _ => rng.next() as u8,
            };
        }
        must_not_panic(&bytes, &format!("corruption round {round}"));
    }
}

/// Prefix lengths out of range are errors naming the field; the widest legal clusters (every
/// address, the longest node prefix) load, their node counts computed without overflow.
#[test]
fn extreme_prefixes_are_errors_not_overflows() {
    let wrong = [
        ("mode = \"full\"\ncluster-cidr = \"10.0.0.0/8\"\nnode-prefix = 255\n", "field 'node-prefix'"),
        ("mode = \"full\"\ncluster-cidr = \"10.0.0.0/8\"\ncluster-cidr-v6 = \"fd00::/8\"\nnode-prefix-v6 = 200\n", "field 'node-prefix-v6'"),
        ("mode = \"full\"\ncluster-cidr = \"10.0.0.0/30\"\nnode-prefix = 30\n", "field 'node-prefix'"),
    ];
    let widest = [
        "mode = \"full\"\ncluster-cidr = \"0.0.0.0/0\"\nnode-prefix = 30\n",
        "mode = \"full\"\ncluster-cidr = \"10.0.0.0/8\"\ncluster-cidr-v6 = \"::/0\"\nnode-prefix-v6 = 126\n",
    ];
    let with_node = |head: &str| {
        format!(
            "{head}[[node]]\nname = \"a\"\ncloud = \"c\"\nregion = \"r\"\npublic-key = \"{A}\"\n"
        )
    };
    for (head, field) in wrong {
        let err = parse_without_panic(with_node(head).as_bytes(), head)
            .expect_err(&format!("accepted {head}"));
        assert!(err.contains(field), "{head}: {err}");
    }
    for head in widest {
        parse_without_panic(with_node(head).as_bytes(), head)
            .unwrap_or_else(|e| panic!("{head}: {e}"));
    }
}
