//! Sync waves and hooks through the `ferry` binary against the test bed.
//!
//! On the test bed kwok completes the Pods of Jobs (its `pod-complete` stage), so a hook
//! Job succeeds by itself; a Job fails by itself when its Pod cannot be scheduled (a
//! nodeSelector no node has) and its `activeDeadlineSeconds` passes. Bare Pods stay
//! Running, so hooks here are Jobs (and ConfigMaps, complete once they exist).

mod agent_common;
mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use agent_common::{Agent, AgentHome, WAIT, app_entry, apps_file, condition, eventually, stays};

use common::{Fixture, configmap, deployment};
use ferry_model::hook::HOOK_LABEL;
use ferry_model::{APP_LABEL, ChangeSet, Phase, RunResult};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use kube::api::ListParams;

/// A Job manifest annotated with `annotations` (indented YAML lines under
/// `annotations:`), named by `name: x` or `generateName: x-` in `naming`. `fail` makes it
/// fail within seconds: its Pod cannot be scheduled and its deadline is 1 s.
fn job(naming: &str, annotations: &str, fail: bool) -> String {
    let (deadline, selector) = match fail {
        true => (
            "  activeDeadlineSeconds: 1\n",
            "      nodeSelector:\n        ferry.test/no-such-node: \"true\"\n",
        ),
        false => ("", ""),
    };
    format!(
        "apiVersion: batch/v1
kind: Job
metadata:
  {naming}
  annotations:
{annotations}spec:
  backoffLimit: 0
{deadline}  template:
    spec:
      restartPolicy: Never
{selector}      containers:
      - name: main
        image: registry.k8s.io/pause:3.10
"
    )
}

/// A ConfigMap manifest with annotations (indented YAML lines under `annotations:`).
fn annotated_configmap(name: &str, annotations: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  annotations:\n{annotations}data:\n  k: v\n"
    )
}

/// The test namespace's Jobs created as hooks of `app`, by name.
async fn hook_jobs(f: &Fixture, app: &str) -> BTreeMap<String, Job> {
    f.api::<Job>()
        .list(&ListParams::default().labels(&format!("{HOOK_LABEL}={app}")))
        .await
        .expect("listing hook Jobs")
        .items
        .into_iter()
        .filter(|j| j.metadata.deletion_timestamp.is_none())
        .map(|j| (j.name_any(), j))
        .collect()
}

/// The ChangeSet of `ferry apply --output json`.
fn changeset(run: &common::Run) -> ChangeSet {
    let out: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON output");
    serde_json::from_value(out["changeset"].clone()).expect("a ChangeSet")
}

fn created(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> i64 {
    meta.creation_timestamp
        .as_ref()
        .expect("creationTimestamp")
        .0
        .as_second()
}

/// Waves apply in ascending order, each waiting for the previous one to be healthy: the
/// wave-1 ConfigMap is created only after the wave-0 Deployment is Available, which its
/// `minReadySeconds` delays by 4 s.
#[tokio::test]
async fn waves_apply_in_order_each_after_the_previous_is_healthy() {
    let f = Fixture::new("hk-waves").await;
    let app = f.app("");
    f.repo.write(
        "app/first.yaml",
        &annotated_configmap("first", "    ferry.dev/sync-wave: \"-1\"\n"),
    );
    let web = deployment("web", "web", "  minReadySeconds: 4\n", "");
    let web = web.replacen(
        "metadata:\n  name: web\n",
        "metadata:\n  name: web\n  annotations:\n    argocd.argoproj.io/sync-wave: \"0\"\n",
        1,
    );
    f.repo.write("app/web.yaml", &web);
    f.repo.write(
        "app/last.yaml",
        &annotated_configmap("last", "    ferry.dev/sync-wave: \"1\"\n"),
    );
    f.repo.write(
        "app/check.yaml",
        &job(
            "generateName: check-",
            "    ferry.dev/hook: Sync\n    ferry.dev/sync-wave: \"0\"\n",
            false,
        ),
    );
    f.repo.commit("three waves");

    let run = f
        .one_off(
            "apply",
            &app,
            "app",
            &["--timeout", "60s", "--output", "json"],
        )
        .await;
    run.expect_code(0);
    let cs = changeset(&run);
    let waves: Vec<(i32, usize, RunResult)> = cs
        .waves
        .iter()
        .map(|w| (w.wave, w.objects, w.result))
        .collect();
    assert_eq!(
        waves,
        [
            (-1, 1, RunResult::Succeeded),
            (0, 1, RunResult::Succeeded),
            (1, 1, RunResult::Succeeded)
        ]
    );
    let first = f.get::<ConfigMap>("first").await.expect("first");
    let web = f.get::<Deployment>("web").await.expect("web");
    let last = f.get::<ConfigMap>("last").await.expect("last");
    assert!(created(&first.metadata) <= created(&web.metadata));
    let gap = created(&last.metadata) - created(&web.metadata);
    assert!(
        gap >= 3,
        "wave 1 was created {gap} s after wave 0's Deployment, before it could be Available"
    );
    let available = web
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.type_ == "Available" && c.status == "True")
        .expect("web is Available");
    assert!(
        available
            .last_transition_time
            .expect("transition time")
            .0
            .as_second()
            <= created(&last.metadata),
        "wave 1 existed before wave 0 was healthy"
    );
    assert_eq!(
        f.inventory(&app).await.expect("inventory").names(),
        ["first", "last", "web"]
    );

    // The Sync hook ran in wave 0, with the Deployment, before wave 1.
    assert_eq!(cs.hooks.len(), 1, "{:?}", cs.hooks);
    assert_eq!(
        (cs.hooks[0].phase, cs.hooks[0].wave, cs.hooks[0].result),
        (Phase::Sync, 0, RunResult::Succeeded)
    );
    let jobs = hook_jobs(&f, &app).await;
    let check = jobs
        .get(&cs.hooks[0].subject.name)
        .expect("the Sync hook's Job");
    assert!(created(&check.metadata) >= created(&web.metadata));
    assert!(created(&check.metadata) <= created(&last.metadata));

    // A plan lists the waves; all in sync, nothing pending to write.
    f.one_off("diff", &app, "app", &[])
        .await
        .expect_code(0)
        .expect_stdout("wave -1: 1 object(s)\nwave 0: 1 object(s)\nwave 1: 1 object(s)\n");
    f.finish().await;
}

/// A wave that does not become healthy stops the sync there: later waves are not
/// applied, the SyncFail hooks run, the error names the wave.
#[tokio::test]
async fn an_unhealthy_wave_stops_the_sync_and_runs_sync_fail_hooks() {
    let f = Fixture::new("hk-stuck").await;
    let app = f.app("");
    let stuck = deployment(
        "stuck",
        "stuck",
        "",
        "      nodeSelector:\n        ferry.test/no-such-node: \"true\"\n",
    );
    f.repo.write("app/stuck.yaml", &stuck);
    f.repo.write(
        "app/later.yaml",
        &annotated_configmap("later", "    ferry.dev/sync-wave: \"1\"\n"),
    );
    f.repo.write(
        "app/failed.yaml",
        &annotated_configmap("sync-failed", "    ferry.dev/hook: SyncFail\n"),
    );
    f.repo.commit("stuck");

    let run = f.one_off("apply", &app, "app", &["--timeout", "5s"]).await;
    run.expect_error(&[
        "wave 0 not healthy, later waves not applied",
        "timed out after 5 s",
        "Deployment/",
    ]);
    run.expect_stderr("SyncFail hook ConfigMap/");
    assert!(f.get::<Deployment>("stuck").await.is_some());
    assert!(
        f.get::<ConfigMap>("later").await.is_none(),
        "wave 1 was applied after wave 0 failed"
    );
    let failed = f
        .get::<ConfigMap>("sync-failed")
        .await
        .expect("the SyncFail hook ran");
    assert_eq!(failed.labels().get(HOOK_LABEL), Some(&app));
    assert_eq!(failed.labels().get(APP_LABEL), None);
    f.finish().await;
}

/// A failed PreSync hook means nothing else is written: no object, no inventory; the
/// SyncFail hooks run; a HookFailed policy deletes the failed hook.
#[tokio::test]
async fn a_failed_pre_sync_hook_writes_nothing() {
    let f = Fixture::new("hk-pre").await;
    let app = f.app("");
    f.write_configmap("cfg", &[("k", "v")]);
    f.repo.write(
        "app/migrate.yaml",
        &job(
            "name: migrate",
            "    ferry.dev/hook: PreSync\n    ferry.dev/hook-delete-policy: HookFailed\n",
            true,
        ),
    );
    f.repo.write(
        "app/cleanup.yaml",
        &job(
            "generateName: cleanup-",
            "    argocd.argoproj.io/hook: SyncFail\n",
            false,
        ),
    );
    f.repo.commit("failing migration");

    let run = f.one_off("apply", &app, "app", &["--timeout", "60s"]).await;
    run.expect_error(&["PreSync hook Job/", "/migrate", "DeadlineExceeded"]);
    assert!(f.get::<ConfigMap>("cfg").await.is_none(), "cfg was written");
    assert!(
        f.inventory(&app).await.is_none(),
        "the inventory was written"
    );
    let jobs = hook_jobs(&f, &app).await;
    assert!(
        !jobs.contains_key("migrate"),
        "HookFailed kept the failed hook"
    );
    let cleanup: Vec<&String> = jobs.keys().filter(|n| n.starts_with("cleanup-")).collect();
    assert_eq!(cleanup.len(), 1, "the SyncFail hook ran once: {jobs:?}");
    f.finish().await;
}

/// PreSync and PostSync hooks with generated names and each delete policy; hooks are
/// not inventoried, not pruned, not drift, and run again on the next sync.
#[tokio::test]
async fn hooks_run_around_the_sync_with_their_delete_policies() {
    let f = Fixture::new("hk-run").await;
    let app = f.app("");
    f.write_configmap("cfg", &[("k", "v")]);
    f.repo.write(
        "app/migrate.yaml",
        &job(
            "generateName: migrate-",
            "    ferry.dev/hook: PreSync\n",
            false,
        ),
    );
    f.repo.write(
        "app/smoke.yaml",
        &job(
            "name: smoke",
            "    ferry.dev/hook: PostSync\n    ferry.dev/hook-delete-policy: HookSucceeded\n",
            false,
        ),
    );
    f.repo.write(
        "app/report.yaml",
        &job(
            "name: report",
            "    ferry.dev/hook: PostSync\n    ferry.dev/sync-wave: \"5\"\n",
            false,
        ),
    );
    f.repo.write(
        "app/failed.yaml",
        &annotated_configmap("sync-failed", "    ferry.dev/hook: SyncFail\n"),
    );
    f.repo.commit("hooks");
    let ns = f.ns().to_string();

    // A plan lists the hooks that would run; they do not make the app OutOfSync.
    f.one_off("diff", &app, "app", &[])
        .await
        .expect_code(1)
        .expect_stdout(&format!(
            "hook PreSync Job/{ns}/migrate- (wave 0): would run\n\
             hook PostSync Job/{ns}/smoke (wave 0): would run\n\
             hook PostSync Job/{ns}/report (wave 5): would run\n"
        ))
        .expect_stdout("1 to create, 0 to update, 0 to prune, 0 unchanged");

    let run = f
        .one_off(
            "apply",
            &app,
            "app",
            &["--timeout", "60s", "--output", "json"],
        )
        .await;
    run.expect_code(0);
    let cs = changeset(&run);
    let ran: Vec<(Phase, RunResult)> = cs.hooks.iter().map(|h| (h.phase, h.result)).collect();
    assert_eq!(
        ran,
        [
            (Phase::PreSync, RunResult::Succeeded),
            (Phase::PostSync, RunResult::Succeeded),
            (Phase::PostSync, RunResult::Succeeded)
        ]
    );
    assert!(cs.hooks[0].subject.name.starts_with("migrate-") && cs.hooks[0].subject.name.len() > 8);
    assert!(cs.hooks.iter().all(|h| h.duration_ms.is_some()));
    let cfg = f.get::<ConfigMap>("cfg").await.expect("cfg");
    let jobs = hook_jobs(&f, &app).await;
    let migrate: Vec<&Job> = jobs
        .values()
        .filter(|j| j.name_any().starts_with("migrate-"))
        .collect();
    assert_eq!(migrate.len(), 1, "{jobs:?}");
    let first_migrate = migrate[0].name_any();
    assert!(created(&migrate[0].metadata) <= created(&cfg.metadata));
    assert_eq!(migrate[0].labels().get(APP_LABEL), None);
    assert!(!jobs.contains_key("smoke"), "HookSucceeded kept the hook");
    assert!(
        f.get::<ConfigMap>("sync-failed").await.is_none(),
        "a SyncFail hook ran although the sync succeeded"
    );
    let report = jobs.get("report").expect("the report hook is kept");
    assert!(created(&report.metadata) >= created(&cfg.metadata));
    assert_eq!(
        f.inventory(&app).await.expect("inventory").names(),
        ["cfg"],
        "hooks are not inventoried"
    );

    // In sync: hooks are not drift.
    f.one_off("diff", &app, "app", &[])
        .await
        .expect_code(0)
        .expect_stdout(&format!("{app}: in sync"));

    // The next sync runs them again: BeforeHookCreation replaces the previous run's.
    f.one_off("apply", &app, "app", &["--timeout", "60s"])
        .await
        .expect_code(0)
        .expect_stderr("hook Job/")
        .expect_stderr("deleted (before hook creation)");
    let jobs = hook_jobs(&f, &app).await;
    let migrate: Vec<&String> = jobs.keys().filter(|n| n.starts_with("migrate-")).collect();
    assert_eq!(migrate.len(), 1, "{jobs:?}");
    assert_ne!(
        migrate[0], &first_migrate,
        "the PreSync hook did not run again"
    );
    assert!(jobs.contains_key("report"));

    // Gone from Git, a hook is not pruned.
    f.repo.remove("app/report.yaml");
    f.repo.commit("no report");
    f.one_off("apply", &app, "app", &["--timeout", "60s"])
        .await
        .expect_code(0)
        .expect_stderr("0 to prune");
    assert!(hook_jobs(&f, &app).await.contains_key("report"));
    f.finish().await;
}

/// With `--create-namespace` the namespace exists before the PreSync hooks run in it.
#[tokio::test]
async fn pre_sync_hooks_run_in_the_namespace_the_sync_creates() {
    let f = Fixture::new("hk-newns").await;
    let app = f.app("");
    let ns = format!("{}-new", f.ns());
    f.delete_later(common::resource("v1", "Namespace", "namespaces"), None, &ns);
    f.write_configmap("cfg", &[]);
    f.repo.write(
        "app/migrate.yaml",
        &job(
            "generateName: migrate-",
            "    ferry.dev/hook: PreSync\n",
            false,
        ),
    );
    f.repo.commit("hook in a new namespace");
    let repo = f.repo.path().to_string();
    f.ferry(&[
        "apply",
        &app,
        "--repo",
        &repo,
        "--path",
        "app",
        "-n",
        &ns,
        "--create-namespace",
        "--timeout",
        "60s",
    ])
    .await
    .expect_code(0)
    .expect_stderr(&format!("PreSync hook Job/{ns}/migrate-"));
    let jobs: kube::Api<Job> = kube::Api::namespaced(f.client.clone(), &ns);
    let listed = jobs
        .list(&ListParams::default().labels(&format!("{HOOK_LABEL}={app}")))
        .await
        .expect("listing Jobs");
    assert_eq!(listed.items.len(), 1);
    f.finish().await;
}

/// A wave or hook annotation ferry does not understand is bad input: exit 2, one line
/// naming the file, object and annotation, nothing written.
#[tokio::test]
async fn a_bad_annotation_writes_nothing() {
    let f = Fixture::new("hk-bad").await;
    let app = f.app("");
    f.write_configmap("cfg", &[]);
    f.repo.write(
        "app/soon.yaml",
        &annotated_configmap("soon", "    argocd.argoproj.io/sync-wave: soon\n"),
    );
    f.repo.commit("bad wave");
    f.one_off("apply", &app, "app", &[]).await.expect_error(&[
        "soon.yaml (document 1)",
        "ConfigMap/soon",
        "annotation argocd.argoproj.io/sync-wave: \"soon\" is not an integer",
    ]);
    assert!(f.get::<ConfigMap>("cfg").await.is_none());
    assert!(f.inventory(&app).await.is_none());
    f.finish().await;
}

/// Skip and Helm test hooks are never applied, nor listed.
#[tokio::test]
async fn skip_and_helm_test_hooks_are_never_applied() {
    let f = Fixture::new("hk-skip").await;
    let app = f.app("");
    f.write_configmap("cfg", &[]);
    f.repo.write(
        "app/skip.yaml",
        &annotated_configmap("skipped", "    ferry.dev/hook: Skip\n"),
    );
    f.repo.write(
        "app/argo-skip.yaml",
        &annotated_configmap("argo-skipped", "    argocd.argoproj.io/hook: Skip\n"),
    );
    f.repo.write(
        "app/test.yaml",
        &job(
            "name: chart-test",
            "    helm.sh/hook: test\n    helm.sh/hook-delete-policy: hook-succeeded\n",
            false,
        ),
    );
    f.repo.commit("skips");
    let diff = f.one_off("diff", &app, "app", &[]).await;
    diff.expect_code(1);
    assert!(!diff.stdout.contains("hook "), "{diff}");
    f.one_off("apply", &app, "app", &["--timeout", "60s"])
        .await
        .expect_code(0)
        .expect_stderr("applied: 1 to create");
    assert!(f.get::<ConfigMap>("skipped").await.is_none());
    assert!(f.get::<ConfigMap>("argo-skipped").await.is_none());
    assert!(f.get::<Job>("chart-test").await.is_none());
    assert_eq!(f.configmaps().await, ["cfg"]);
    f.finish().await;
}

/// A Helm chart's hooks map as Argo CD maps them: pre-install runs before the chart's
/// objects (weights order them), post-install after; hook-succeeded deletes.
#[tokio::test]
async fn helm_chart_hooks_run_as_pre_and_post_sync() {
    let f = Fixture::new("hk-helm").await;
    let app = f.app("");
    f.repo.write(
        "chart/Chart.yaml",
        "apiVersion: v2\nname: demo\nversion: 0.1.0\n",
    );
    f.repo.write(
        "chart/templates/cm.yaml",
        &configmap("{{ .Release.Name }}-cfg", &[("k", "v")]),
    );
    f.repo.write(
        "chart/templates/pre.yaml",
        &job(
            "name: {{ .Release.Name }}-schema",
            "    helm.sh/hook: pre-install,pre-upgrade\n    helm.sh/hook-weight: \"-5\"\n",
            false,
        ),
    );
    f.repo.write(
        "chart/templates/pre-late.yaml",
        &job(
            "name: {{ .Release.Name }}-seed",
            "    helm.sh/hook: pre-install\n    helm.sh/hook-weight: \"3\"\n",
            false,
        ),
    );
    f.repo.write(
        "chart/templates/post.yaml",
        &job(
            "name: {{ .Release.Name }}-notify",
            "    helm.sh/hook: post-install,post-upgrade\n    helm.sh/hook-delete-policy: hook-succeeded\n",
            false,
        ),
    );
    f.repo.commit("chart with hooks");

    let run = f
        .one_off(
            "apply",
            &app,
            "chart",
            &["--timeout", "60s", "--output", "json"],
        )
        .await;
    run.expect_code(0);
    let cs = changeset(&run);
    let ran: Vec<(Phase, i32, &str)> = cs
        .hooks
        .iter()
        .map(|h| (h.phase, h.wave, h.subject.name.as_str()))
        .collect();
    let (schema, seed, notify) = (
        format!("{app}-schema"),
        format!("{app}-seed"),
        format!("{app}-notify"),
    );
    assert_eq!(
        ran,
        [
            (Phase::PreSync, -5, schema.as_str()),
            (Phase::PreSync, 3, seed.as_str()),
            (Phase::PostSync, 0, notify.as_str())
        ]
    );
    let cfg = f
        .get::<ConfigMap>(&format!("{app}-cfg"))
        .await
        .expect("the chart's ConfigMap");
    let jobs = hook_jobs(&f, &app).await;
    let schema_job = jobs.get(&schema).expect("schema hook kept");
    let seed_job = jobs.get(&seed).expect("seed hook kept");
    assert!(created(&schema_job.metadata) <= created(&seed_job.metadata));
    assert!(created(&seed_job.metadata) <= created(&cfg.metadata));
    assert!(!jobs.contains_key(&notify), "hook-succeeded kept the hook");
    assert_eq!(
        f.inventory(&app).await.expect("inventory").names(),
        [format!("{app}-cfg")]
    );
    f.finish().await;
}

/// How many times the agent's PreSync hook ran: each run leaves a ConfigMap
/// (`generateName`, deleted only when it fails).
async fn runs(f: &Fixture, app: &str) -> usize {
    f.api::<ConfigMap>()
        .list(&ListParams::default().labels(&format!("{HOOK_LABEL}={app}")))
        .await
        .expect("listing hook ConfigMaps")
        .items
        .len()
}

/// The agent runs hooks on the first sync of a revision and on a manual sync, not when
/// healing drift nor after a restart; its history shows them.
#[tokio::test]
async fn agent_runs_hooks_for_revisions_and_manual_syncs_not_for_self_heal() {
    let f = Fixture::new("hk-agent").await;
    let app = f.app("");
    f.write_configmap("cfg", &[("greeting", "one")]);
    f.repo.write(
        "app/ran.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  generateName: ran-\n  annotations:\n    \
         ferry.dev/hook: PreSync\n    ferry.dev/hook-delete-policy: HookFailed\n",
    );
    f.repo.commit("one");
    let home = AgentHome::new(&apps_file(&[app_entry(
        &app,
        f.repo.path(),
        "app",
        f.ns(),
        "2s",
        "",
    )]));
    let mut agent = Agent::start(&home, "agent", &[]).await;
    agent
        .wait_app(&app, "Synced", |s| s["sync"] == "Synced")
        .await;
    let history = agent
        .wait_history(&app, "the first sync with its hook", |h| !h.is_empty())
        .await;
    let hooks = history[0]["changeset"]["hooks"].as_array().expect("hooks");
    assert_eq!(hooks.len(), 1, "{hooks:?}");
    assert_eq!(hooks[0]["phase"], "PreSync");
    assert_eq!(hooks[0]["result"], "succeeded");
    assert_eq!(runs(&f, &app).await, 1);

    // Self-heal restores the edit without running the hook.
    f.edit_value("cfg", "greeting", "tampered").await;
    eventually("cfg healed", WAIT, || async {
        f.cm_value("cfg", "greeting").await.as_deref() == Some("one")
    })
    .await;
    stays(
        "no hook run by self-heal",
        Duration::from_secs(3),
        || async { runs(&f, &app).await == 1 },
    )
    .await;

    // A manual sync runs it, with nothing to change.
    f.ferry(&["sync", &app, "--server", &agent.url])
        .await
        .expect_code(0);
    eventually("the hook ran for the manual sync", WAIT, || async {
        runs(&f, &app).await == 2
    })
    .await;

    // So does a new revision, once.
    f.write_configmap("cfg", &[("greeting", "two")]);
    f.repo.commit("two");
    eventually("the new revision applied", WAIT, || async {
        f.cm_value("cfg", "greeting").await.as_deref() == Some("two")
    })
    .await;
    assert_eq!(runs(&f, &app).await, 3);
    stays(
        "the hook ran once for the revision",
        Duration::from_secs(5),
        || async { runs(&f, &app).await == 3 },
    )
    .await;

    // A restarted agent finds the revision in its history: the hook does not run again.
    agent.kill();
    let restarted = Agent::start(&home, "agent", &[]).await;
    restarted
        .wait_app(&app, "Synced after the restart", |s| s["sync"] == "Synced")
        .await;
    stays(
        "no hook run by the restart",
        Duration::from_secs(3),
        || async { runs(&f, &app).await == 3 },
    )
    .await;
    f.finish().await;
}

/// A failed PreSync hook under the agent: nothing applied, the app's Ready condition
/// names the phase, and the history entry has the failed hook.
#[tokio::test]
async fn agent_history_shows_a_failed_hook() {
    let f = Fixture::new("hk-agfail").await;
    let app = f.app("");
    f.write_configmap("cfg", &[]);
    f.repo.write(
        "app/migrate.yaml",
        &job(
            "name: migrate",
            "    argocd.argoproj.io/hook: PreSync\n",
            true,
        ),
    );
    f.repo.commit("failing migration");
    let home = AgentHome::new(&apps_file(&[app_entry(
        &app,
        f.repo.path(),
        "app",
        f.ns(),
        "1h",
        "",
    )]));
    let agent = Agent::start(&home, "agent", &[]).await;
    let history = agent
        .wait_history(&app, "a failed sync", |h| {
            h.iter().any(|e| e["outcome"] == "failed")
        })
        .await;
    let entry = history.iter().find(|e| e["outcome"] == "failed").unwrap();
    let error = entry["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("PreSync hook Job/") && error.contains("DeadlineExceeded"),
        "{entry:#}"
    );
    let hooks = entry["changeset"]["hooks"].as_array().expect("hooks");
    assert_eq!(hooks.len(), 1, "{entry:#}");
    assert_eq!(hooks[0]["phase"], "PreSync");
    assert_eq!(hooks[0]["result"], "failed");
    let status = agent.app(&app).await;
    assert_eq!(
        condition(&status, "Ready")["reason"],
        "PreSyncFailed",
        "{status:#}"
    );
    assert!(f.get::<ConfigMap>("cfg").await.is_none(), "cfg was applied");
    f.finish().await;
}
