//! The node's own record, as its daemon writes it at start: the fields it was given (flags,
//! settings file, `WIREMESH_*`) over the record etcd already holds (an imported node, or the
//! node's last run), with the key file's public key and state `active`. A first join without a
//! record must say where the node is (`region`, `cloud`).

use super::records::{EndpointValue, NodeState, RecordValue, VERSION};
use super::validate::{self, Record, Settings};
use super::Problem;
use crate::core::key::PublicKey;
use std::collections::BTreeMap;

/// What the daemon was told about itself; `None` and empty keep the held record's value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnFields {
    pub region: Option<String>,
    pub cloud: Option<String>,
    /// `ADDRESS` or `ADDRESS@SCOPE`, as `--endpoint` takes them ([`EndpointValue::from_flag`]).
    pub endpoints: Vec<String>,
    pub hub: Option<bool>,
    /// `key=value` pairs.
    pub labels: Vec<String>,
    /// The node's UDP port, when it differs from the mesh's.
    pub listen_port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OwnError {
    #[error("node '{node}' has no record in the registry yet: a first join needs --{field}")]
    Missing { node: String, field: &'static str },
    #[error("label '{}' is not key=value", crate::core::topology::shown(.0))]
    Label(String),
    #[error("this node's record would be invalid:\n  {}",
            .0.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n  "))]
    Invalid(Vec<Problem>),
}

/// The record to write: `held` (the record in etcd, if readable) updated with `given`.
/// Checked by the same rules as every other record, under `key`.
pub fn own_record(
    key: &str,
    name: &str,
    public_key: &PublicKey,
    held: Option<RecordValue>,
    given: &OwnFields,
    settings: &Settings,
) -> Result<(RecordValue, Record), OwnError> {
    let missing = |field| OwnError::Missing {
        node: name.to_string(),
        field,
    };
    let mut labels = BTreeMap::new();
    for l in &given.labels {
        let (k, v) = l
            .split_once('=')
            .ok_or_else(|| OwnError::Label(l.clone()))?;
        labels.insert(k.trim().to_string(), v.trim().to_string());
    }
    let endpoints: Vec<EndpointValue> = given
        .endpoints
        .iter()
        .map(|e| EndpointValue::from_flag(e))
        .collect();
    let value = match held {
        Some(mut r) => {
            if let Some(region) = &given.region {
                r.region = region.clone();
            }
            if let Some(cloud) = &given.cloud {
                r.cloud = cloud.clone();
            }
            if !endpoints.is_empty() {
                r.endpoints = endpoints;
            }
            if let Some(hub) = given.hub {
                r.hub = hub;
            }
            if !labels.is_empty() {
                r.labels = labels;
            }
            if given.listen_port.is_some() {
                r.listen_port = given.listen_port;
            }
            r.public_key = public_key.to_string();
            r.state = NodeState::Active;
            r
        }
        None => RecordValue {
            v: VERSION,
            name: name.to_string(),
            cloud: given.cloud.clone().ok_or_else(|| missing("cloud"))?,
            region: given.region.clone().ok_or_else(|| missing("region"))?,
            endpoints,
            public_key: public_key.to_string(),
            listen_port: given.listen_port,
            hub: given.hub.unwrap_or(false),
            labels,
            state: NodeState::Active,
        },
    };
    let encoded = super::records::encode(&value);
    let checked = validate::record(key, name, &encoded, settings).map_err(OwnError::Invalid)?;
    Ok((value, checked))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::registry::testing::{key_text, settings_json};

    fn settings() -> Settings {
        validate::settings("s", settings_json(false).as_bytes()).unwrap()
    }

    fn key(i: u32) -> PublicKey {
        key_text(i).parse().unwrap()
    }

    #[test]
    fn a_first_join_needs_region_and_cloud() {
        let given = OwnFields {
            cloud: Some("gcp".into()),
            ..OwnFields::default()
        };
        let err = own_record("k", "n1", &key(1), None, &given, &settings()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "node 'n1' has no record in the registry yet: a first join needs --region"
        );
    }

    #[test]
    fn given_fields_override_the_held_record_and_the_key_file_wins() {
        let held = RecordValue {
            v: VERSION,
            name: "n1".into(),
            cloud: "aws".into(),
            region: "r1".into(),
            endpoints: vec![EndpointValue::Plain("192.0.2.1:51820".into())],
            public_key: key_text(7),
            listen_port: None,
            hub: true,
            labels: BTreeMap::new(),
            state: NodeState::Left,
        };
        let given = OwnFields {
            endpoints: vec!["192.0.2.9:51820".into()],
            labels: vec!["zone=b".into()],
            ..OwnFields::default()
        };
        let (v, r) = own_record("k", "n1", &key(1), Some(held), &given, &settings()).unwrap();
        assert_eq!(v.region, "r1");
        assert!(v.hub);
        assert_eq!(
            v.endpoints,
            [EndpointValue::Plain("192.0.2.9:51820".into())]
        );
        assert_eq!(v.labels["zone"], "b");
        assert_eq!(v.state, NodeState::Active);
        assert_eq!(r.public_key, key(1));
    }

    #[test]
    fn an_endpoint_flag_with_a_scope_becomes_a_scoped_entry() {
        let given = OwnFields {
            region: Some("r1".into()),
            cloud: Some("aws".into()),
            endpoints: vec!["10.0.1.5:51820@aws:vpc-1".into(), "203.0.113.5".into()],
            ..OwnFields::default()
        };
        let (v, r) = own_record("k", "n1", &key(1), None, &given, &settings()).unwrap();
        let shown: Vec<String> = v.endpoints.iter().map(|e| e.to_string()).collect();
        assert_eq!(shown, ["10.0.1.5:51820@aws:vpc-1", "203.0.113.5"]);
        assert_eq!(
            String::from_utf8(crate::core::registry::records::encode(&v.endpoints)).unwrap(),
            r#"[{"address":"10.0.1.5:51820","scope":"aws:vpc-1"},"203.0.113.5"]"#
        );
        assert_eq!(r.scoped[0].scope, "aws:vpc-1");
        assert_eq!(r.endpoint.unwrap().to_string(), "203.0.113.5:51820");
        let private = OwnFields {
            endpoints: vec!["10.0.1.5:51820@aws:vpc-1".into(), "10.0.9.9".into()],
            ..given
        };
        let err = own_record(
            "/wiremesh/p/node/n1/record",
            "n1",
            &key(1),
            None,
            &private,
            &settings(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("field 'endpoints[1]': '10.0.9.9' is a private address"),
            "{err}"
        );
    }

    #[test]
    fn a_bad_field_is_refused_by_the_records_rules() {
        let given = OwnFields {
            region: Some("r1".into()),
            cloud: Some("c".into()),
            endpoints: vec!["not an endpoint:x".into()],
            ..OwnFields::default()
        };
        let err = own_record(
            "/wiremesh/p/node/n1/record",
            "n1",
            &key(1),
            None,
            &given,
            &settings(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("field 'endpoints'"), "{err}");
        let bad_label = OwnFields {
            labels: vec!["nolabel".into()],
            ..given
        };
        let err = own_record("k", "n1", &key(1), None, &bad_label, &settings()).unwrap_err();
        assert!(matches!(err, OwnError::Label(_)));
    }
}
