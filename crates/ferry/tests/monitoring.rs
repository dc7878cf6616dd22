//! `deploy/monitoring`: the alerting rules pass `promtool check rules` and their unit tests
//! (`promtool test rules`), every query of the Grafana dashboard parses as PromQL (checked
//! by promtool as a recording rule), and every `ferry_*` metric either of them queries is
//! one that the agent exports.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use ferry_agent::metrics::Metrics;
use serde_json::Value;

fn monitoring() -> PathBuf {
    let dir = std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    Path::new(&dir).join("../../deploy/monitoring")
}

fn promtool(args: &[&str], dir: &Path) -> String {
    let out = Command::new(ferry_testkit::charts::testbed_binary("promtool"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("running promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

/// The series names the agent exports: every family made to appear, as scraped.
fn exported() -> BTreeSet<String> {
    let m = Metrics::new();
    let web = ferry_model::AppKey::new("ferry-system", "web");
    m.reconcile_finished(&web, "success", 0.3);
    m.app_info(&web, "Synced", "Healthy", "abc");
    m.drift_detected(&web);
    m.git_fetch("https://git.example/r.git", 0.1);
    m.git_fetch_failed("https://git.example/r.git");
    m.leader(true);
    m.webhook("github", "accepted");
    m.history_corrupt_entries().inc();
    m.queue_gauges();
    m.notification("ops", "webhook", "SyncFailed", "sent");
    let text = m.encode();
    let mut names = BTreeSet::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let name = line.split(['{', ' ']).next().unwrap();
        names.insert(name.to_string());
    }
    // Every family registered shows once used: the list above must use them all.
    let families = text.lines().filter(|l| l.starts_with("# TYPE ")).count();
    let registered = text.matches("# HELP ").count();
    assert_eq!(families, registered);
    assert!(families >= 12, "{text}");
    names
}

/// The `ferry_…` identifiers of a PromQL expression.
fn ferry_metrics(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = expr;
    while let Some(at) = rest.find("ferry_") {
        let before = rest[..at].chars().last();
        let tail = &rest[at..];
        let len = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            out.insert(tail[..len].to_string());
        }
        rest = &tail[len..];
    }
    out
}

fn alert_exprs() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(monitoring().join("alerts.yaml")).unwrap();
    let rules: Value = serde_saphyr::from_str(&text).unwrap();
    let mut out = Vec::new();
    for group in rules["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            out.push((
                rule["alert"].as_str().unwrap().to_string(),
                rule["expr"].as_str().unwrap().to_string(),
            ));
        }
    }
    out
}

/// Every query of the dashboard, by panel title, Grafana's variables replaced.
fn dashboard_exprs() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(monitoring().join("dashboard.json")).unwrap();
    let dashboard: Value = serde_json::from_str(&text).unwrap();
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        let title = panel["title"].as_str().unwrap();
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            let expr = expr
                .replace("$__rate_interval", "5m")
                .replace("$__range", "1h")
                .replace("$app", ".*");
            assert!(!expr.contains('$'), "{title}: unknown variable in {expr}");
            out.push((title.to_string(), expr));
        }
    }
    out
}

#[test]
fn alert_rules_pass_promtool_and_their_unit_tests() {
    let dir = monitoring();
    let checked = promtool(&["check", "rules", "alerts.yaml"], &dir);
    assert!(checked.contains("SUCCESS: 6 rules found"), "{checked}");
    let tested = promtool(&["test", "rules", "alerts.test.yaml"], &dir);
    assert!(tested.contains("SUCCESS"), "{tested}");
    let names: Vec<String> = alert_exprs().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "FerryAppSyncFailing",
            "FerryAppDegraded",
            "FerryDriftNotHealed",
            "FerryNoLeader",
            "FerryGitUnreachable",
            "FerryNotificationsFailing"
        ]
    );
}

#[test]
fn dashboard_queries_are_valid_promql() {
    let exprs = dashboard_exprs();
    assert!(exprs.len() >= 12, "{exprs:?}");
    let dir = tempfile::tempdir().unwrap();
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, (_, expr)) in exprs.iter().enumerate() {
        rules.push_str(&format!(
            "      - record: dashboard:query_{i}\n        expr: {}\n",
            serde_json::to_string(expr).unwrap()
        ));
    }
    std::fs::write(dir.path().join("dashboard.rules.yaml"), rules).unwrap();
    let checked = promtool(&["check", "rules", "dashboard.rules.yaml"], dir.path());
    assert!(
        checked.contains(&format!("SUCCESS: {} rules found", exprs.len())),
        "{checked}"
    );
}

#[test]
fn every_queried_metric_is_exported() {
    let exported = exported();
    let mut queried = BTreeSet::new();
    for (name, expr) in alert_exprs().into_iter().chain(dashboard_exprs()) {
        let metrics = ferry_metrics(&expr);
        assert!(
            !metrics.is_empty(),
            "{name}: queries no ferry metric: {expr}"
        );
        for metric in metrics {
            assert!(
                exported.contains(&metric),
                "{name}: {metric} is not exported by the agent (it exports {exported:?})"
            );
            queried.insert(metric);
        }
    }
    // The dashboard shows every family.
    for family in [
        "ferry_app_info",
        "ferry_sync_total",
        "ferry_reconcile_duration_seconds_bucket",
        "ferry_drift_detected_total",
        "ferry_git_fetch_duration_seconds_bucket",
        "ferry_git_fetch_errors_total",
        "ferry_leader",
        "ferry_webhook_requests_total",
        "ferry_history_corrupt_entries_total",
        "ferry_queue_depth",
        "ferry_queue_in_flight",
        "ferry_queue_scheduled",
        "ferry_notifications_total",
    ] {
        assert!(queried.contains(family), "nothing queries {family}");
    }
    assert_eq!(
        ferry_metrics("rate(ferry_a_total[5m]) / xferry_b"),
        ["ferry_a_total".to_string()].into()
    );
}
