//! OpenMetrics text → Prometheus text format 0.0.4, for scrapers that did not ask for
//! OpenMetrics (`curl`, `promtool check metrics`, older agents).
//!
//! prometheus-client writes only OpenMetrics. The two formats differ in four ways that matter
//! here, and each is a line-local rewrite: a counter's family is named with its `_total`
//! suffix in 0.0.4; `info` is not a 0.0.4 type (it becomes a gauge named `..._info`); `# UNIT`
//! and `# EOF` do not exist. Sample lines are identical in both.

use std::collections::HashMap;

/// Rewrites OpenMetrics text as Prometheus 0.0.4 text.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let types: HashMap<&str, &str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.split_once(' '))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| Some((p, line.strip_prefix(p)?)));
        match meta {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                let (name, tail) = match (types.get(name).copied(), prefix) {
                    (Some("counter"), "# TYPE ") => (format!("{name}_total"), "counter"),
                    (Some("counter"), _) => (format!("{name}_total"), tail),
                    (Some("info"), "# TYPE ") => (format!("{name}_info"), "gauge"),
                    (Some("info"), _) => (format!("{name}_info"), tail),
                    _ => (name.to_string(), tail),
                };
                out.push_str(prefix);
                out.push_str(&name);
                out.push(' ');
                out.push_str(tail);
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_renamed_info_becomes_a_gauge_and_openmetrics_only_lines_go() {
        let om = "# HELP a_bytes Bytes.\n# TYPE a_bytes counter\n# UNIT a_bytes bytes\n\
                  a_bytes_total{peer=\"x\"} 3\n# HELP b Build.\n# TYPE b info\nb_info{v=\"1\"} 1\n\
                  # HELP g A gauge.\n# TYPE g gauge\ng 2.5\n# EOF\n";
        let want = "# HELP a_bytes_total Bytes.\n# TYPE a_bytes_total counter\n\
                    a_bytes_total{peer=\"x\"} 3\n# HELP b_info Build.\n# TYPE b_info gauge\n\
                    b_info{v=\"1\"} 1\n# HELP g A gauge.\n# TYPE g gauge\ng 2.5\n";
        assert_eq!(to_prometheus_text(om), want);
    }

    #[test]
    fn text_without_metadata_passes_through_unchanged() {
        assert_eq!(
            to_prometheus_text("x 1\ny{a=\"b\"} 2\n"),
            "x 1\ny{a=\"b\"} 2\n"
        );
    }
}
