//! Label keys and values, by Kubernetes' rules, so labels copied from a cluster are accepted as
//! they are and nothing else is: a key is `[prefix/]name` (the prefix a lower-case DNS
//! subdomain of at most 253 characters, the name 1-63 characters), a value at most 63
//! characters, empty or starting and ending with a letter or digit.

/// The most labels one node may carry; the registry's records have the same bound.
pub const MAX_LABELS: usize = 32;

/// The node attributes selectors name directly; they cannot also be labels, or `region` in a
/// selector would mean two things.
pub const BUILT_IN: [&str; 3] = ["name", "cloud", "region"];

/// Letters, digits, `-`, `_`, `.`, at most 63, starting and ending with a letter or digit:
/// a label name, and a non-empty label value.
fn is_label_word(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// A lower-case RFC 1123 subdomain: dot-separated labels of `a-z0-9-`, not starting or ending
/// with `-`, at most 253 characters.
fn is_subdomain(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        })
}

/// Why `key` is not a label key, if it is not.
pub fn key_problem(key: &str) -> Option<String> {
    let shown = crate::core::topology::shown(key);
    if BUILT_IN.contains(&key) {
        return Some(format!(
            "'{key}' is a built-in attribute of every node, not a label: set the node's `{key}`"
        ));
    }
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix {
        if !is_subdomain(p) {
            return Some(format!(
                "'{shown}': the prefix before '/' must be a lower-case DNS subdomain of at most \
                 253 characters"
            ));
        }
    }
    (!is_label_word(name)).then(|| {
        format!(
            "'{shown}' is not a label key: 1-63 letters, digits, '-', '_' or '.', starting and \
             ending with a letter or digit, after an optional 'dns.prefix/'"
        )
    })
}

/// Why `value` is not a label value, if it is not.
pub fn value_problem(value: &str) -> Option<String> {
    (!value.is_empty() && !is_label_word(value)).then(|| {
        format!(
            "'{}' is not a label value: at most 63 letters, digits, '-', '_' or '.', starting \
             and ending with a letter or digit",
            crate::core::topology::shown(value)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_style_keys_and_values_are_accepted() {
        for key in [
            "app",
            "tier",
            "example.com/tier",
            "a.b-c/x_y.z",
            "A1",
            &"k".repeat(63),
        ] {
            assert_eq!(key_problem(key), None, "{key}");
        }
        for value in ["", "db", "Postgres-15", "a.b_c", &"v".repeat(63)] {
            assert_eq!(value_problem(value), None, "{value}");
        }
    }

    #[test]
    fn bad_keys_and_values_say_what_the_rule_is() {
        for key in [
            "",
            "-app",
            "app-",
            "a b",
            "Example.com/x",
            "x/",
            "/x",
            &"k".repeat(64),
        ] {
            assert!(key_problem(key).is_some(), "{key:?} accepted");
        }
        assert!(key_problem("region").unwrap().contains("built-in"));
        for value in ["-db", "db-", "a b", "ünï", &"v".repeat(64)] {
            assert!(value_problem(value).is_some(), "{value:?} accepted");
        }
    }
}
