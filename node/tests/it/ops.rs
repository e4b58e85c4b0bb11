//! Day-2 operation files (`docs/operations/`): the Prometheus alert rules are valid and fire on
//! the series they are about (`promtool`), and every metric the rules and the Grafana dashboard
//! query is one a running node exports; the systemd unit starts the node with flags it has.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;

fn operations_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/operations")
}

fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(operations_dir())
        .output()
        .unwrap_or_else(|e| {
            panic!("promtool is missing ({e}): run ./scripts/setup (Debian's prometheus package)")
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

/// Every `pmr_*` metric name in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("pmr_") {
        let start = i + at;
        let before_ok =
            start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let mut end = start;
        while end < bytes.len()
            && (bytes[end].is_ascii_lowercase()
                || bytes[end].is_ascii_digit()
                || bytes[end] == b'_')
        {
            end += 1;
        }
        if before_ok {
            names.insert(text[start..end].to_string());
        }
        i = end;
    }
    names
}

#[test]
fn alert_rules_are_valid_and_fire_on_what_they_watch() {
    let checked = promtool(&["check", "rules", "prometheus-alerts.yml"]);
    assert!(checked.contains("SUCCESS: 10 rules found"), "{checked}");
    let tested = promtool(&["test", "rules", "prometheus-alerts.test.yml"]);
    assert!(tested.contains("SUCCESS"), "{tested}");
}

#[test]
fn the_systemd_unit_starts_the_node_with_flags_it_has() {
    let unit = std::fs::read_to_string(operations_dir().join("pmr-node.service")).unwrap();
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("an ExecStart line");
    let args: Vec<&str> = exec.split_whitespace().skip(1).collect();
    assert_eq!(args.first(), Some(&"start"), "{exec}");
    let help = Command::new(BIN)
        .args(["start", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    let flags: Vec<&&str> = args.iter().filter(|a| a.starts_with("--")).collect();
    assert!(!flags.is_empty(), "{exec}");
    for flag in flags {
        assert!(help.contains(*flag), "`pmr start` has no {flag}:\n{help}");
    }
    // A halt the node chose exits with status 1: the unit must not restart it in a loop.
    assert!(unit.contains("RestartPreventExitStatus=1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_and_alerts_query_only_metrics_the_node_exports() {
    let net = start_net(1, |_, _| {}).await;
    net.wait_height(0, 2).await;
    let scrape = scrape(&net.cluster.manifest().nodes[0].metrics);
    // Every sample name the node exports (counters as `_total`, histograms as `_bucket`,
    // `_sum` and `_count`).
    let exported: BTreeSet<String> = scrape
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect();
    let dir = operations_dir();
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("grafana-dashboard.json")).unwrap())
            .expect("the dashboard is JSON");
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["expr"].as_str().map(str::to_string))
        .collect();
    assert!(exprs.len() >= 15, "{} dashboard queries", exprs.len());
    let rules = std::fs::read_to_string(dir.join("prometheus-alerts.yml")).unwrap();
    let mut queried = metric_names(&exprs.join("\n"));
    queried.extend(metric_names(&rules));
    let missing: Vec<&String> = queried.iter().filter(|m| !exported.contains(*m)).collect();
    assert!(
        missing.is_empty(),
        "queried but not exported: {missing:?}\nexported: {exported:?}"
    );
    // The check judged the whole set: every family the node registers is on the dashboard.
    let families: BTreeSet<String> = scrape
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .filter(|n| n.starts_with("pmr_"))
        .map(str::to_string)
        .collect();
    assert!(families.len() >= 15, "{families:?}");
    let on_dashboard = metric_names(&exprs.join("\n"));
    for family in &families {
        assert!(
            on_dashboard.iter().any(|m| m.starts_with(family.as_str())),
            "{family} is exported but on no dashboard panel"
        );
    }
}
