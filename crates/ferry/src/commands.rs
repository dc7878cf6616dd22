//! Dispatch: one function per command, each returning the exit code.

mod agent;
mod appsets;
mod docs;
mod output;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use ferry_engine::facts::{self, FactsStore, OfflineFacts};
use ferry_engine::progress::Silent;
use ferry_engine::project;
use ferry_engine::source::{ClusterFacts, Rendered, render_app};
use ferry_engine::wait::WaitOutcome;
use ferry_engine::{Sync, SyncOptions, Wait};
use ferry_kube::Cluster;
use ferry_model::{
    Action, AppKey, AppSpec, Destination, FerryFile, NamedApp, NamedProject, SYSTEM_NAMESPACE,
    SourceSpec, dependency_order, parse_duration,
};
use ferry_render::Tools;
use ferry_source::GitCache;

use crate::cli::{AppArgs, Cli, Command, Output};
use output::{ChangeSetView, Printer};

/// Runs a parsed command line; returns the exit code.
pub async fn run(cli: Cli) -> Result<i32> {
    let out = cli.global.output;
    let context = cli.global.context.as_deref();
    match cli.command {
        Command::Version => version(out),
        Command::ClusterInfo { namespace } => cluster_info(context, &namespace, out).await,
        Command::Render { app, revision } => render(&app, revision.as_deref(), out).await,
        Command::Apps { file, revision } => appsets::apps(&file, revision.as_deref(), out).await,
        Command::Promote {
            set,
            from,
            to,
            file,
        } => appsets::promote(&file, &set, &from, &to, out).await,
        Command::Diff {
            app,
            revision,
            against,
            all,
        } => match against {
            Some(base) => preview(&app, revision.as_deref().unwrap_or_default(), &base, out).await,
            None if all => diff_all(context, &app, out).await,
            None => {
                let named = load_app(&app, revision.as_deref()).await?;
                let key = app_key(&app, &named)?;
                let projects = file_projects(&app)?;
                diff(context, &key, &named, &projects, revision.as_deref(), out).await
            }
        },
        Command::Agent(args) => agent::run(args, context).await,
        Command::Completion { shell } => docs::completion(shell),
        Command::Man { dir } => docs::man(dir.as_deref()),
        Command::Install {
            apply,
            namespace,
            image,
            cluster_admin,
        } => agent::install(context, apply, &namespace, &image, cluster_admin).await,
        Command::Get { what, name, server } => {
            agent::get(&server, &what, name.as_deref(), out).await
        }
        Command::Sync(a) => agent::action(&a.server, &a.name, "sync", out).await,
        Command::Refresh(a) => agent::action(&a.server, &a.name, "refresh", out).await,
        Command::Suspend(a) => agent::action(&a.server, &a.name, "suspend", out).await,
        Command::Resume(a) => agent::action(&a.server, &a.name, "resume", out).await,
        Command::History(a) => agent::history(&a.server, &a.name, out).await,
        Command::Rollback {
            name,
            target,
            server,
        } => agent::rollback(&server, &name, &target, out).await,
        Command::Apply {
            app,
            revision,
            force,
            no_wait,
            timeout,
            no_prune,
            all,
        } => {
            let timeout = timeout
                .map(|t| parse_duration(&t).map_err(|m| anyhow::anyhow!("--timeout: {m}")))
                .transpose()?;
            let flags = ApplyFlags {
                force,
                no_wait,
                timeout,
                no_prune,
            };
            if all {
                return apply_all(context, &app, &flags, out).await;
            }
            let named = load_app(&app, revision.as_deref()).await?;
            let key = app_key(&app, &named)?;
            let projects = file_projects(&app)?;
            flags
                .apply(context, &key, named, &projects, revision.as_deref(), out)
                .await
        }
    }
}

/// `apply`'s flags that apply to every app.
struct ApplyFlags {
    force: bool,
    no_wait: bool,
    timeout: Option<Duration>,
    no_prune: bool,
}

impl ApplyFlags {
    async fn apply(
        &self,
        context: Option<&str>,
        key: &AppKey,
        mut app: NamedApp,
        projects: &[NamedProject],
        revision: Option<&str>,
        out: Output,
    ) -> Result<i32> {
        if self.no_prune {
            app.spec.prune = false;
        }
        let timeout = self.timeout.unwrap_or_else(|| app.spec.wait_timeout());
        let wait = (!self.no_wait && app.spec.wait.enabled).then_some(timeout);
        let how = How {
            projects,
            revision,
            force: self.force,
            wait,
        };
        apply(context, key, &app, how, out).await
    }
}

/// The identity of `app`: its name in the ferry.yaml's namespace (`ferry-system` for a
/// one-off `--repo` app).
fn app_key(args: &AppArgs, app: &NamedApp) -> Result<AppKey> {
    let namespace = match &args.repo {
        Some(_) => SYSTEM_NAMESPACE.to_string(),
        None => FerryFile::load(&args.file)?.namespace,
    };
    Ok(AppKey::new(namespace, &app.name))
}

/// The projects of the ferry.yaml (none for a one-off `--repo` app).
fn file_projects(args: &AppArgs) -> Result<Vec<NamedProject>> {
    if args.repo.is_some() {
        return Ok(Vec::new());
    }
    Ok(FerryFile::load(&args.file)?.projects)
}

/// Every app of the ferry.yaml (app sets expanded at their refs), dependencies first,
/// and the file's projects.
async fn ordered_apps(args: &AppArgs) -> Result<(Vec<NamedApp>, Vec<NamedProject>)> {
    let file = FerryFile::load(&args.file)?;
    let mut all: Vec<Option<NamedApp>> = appsets::all_apps(&file, None)
        .await?
        .into_iter()
        .map(|l| Some(l.app))
        .collect();
    let order = dependency_order(all.iter().flatten().map(|a| {
        let deps = a.spec.depends_on.iter().map(String::as_str);
        (a.name.as_str(), deps)
    }))
    .with_context(|| args.file.display().to_string())?;
    let apps = order.into_iter().filter_map(|i| all[i].take()).collect();
    Ok((apps, file.projects))
}

/// `apply --all`: each app in dependency order; the first exit code that is not 0 ends it.
async fn apply_all(
    context: Option<&str>,
    args: &AppArgs,
    flags: &ApplyFlags,
    out: Output,
) -> Result<i32> {
    let (apps, projects) = ordered_apps(args).await?;
    for app in apps {
        let name = app.name.clone();
        let key = app_key(args, &app)?;
        let code = flags
            .apply(context, &key, app, &projects, None, out)
            .await
            .with_context(|| format!("app {name}"))?;
        if code != 0 {
            return Ok(code);
        }
    }
    Ok(0)
}

/// `diff --all`: each app in dependency order; an error ends it, pending changes do not.
async fn diff_all(context: Option<&str>, args: &AppArgs, out: Output) -> Result<i32> {
    let mut code = 0;
    let (apps, projects) = ordered_apps(args).await?;
    for app in apps {
        let key = app_key(args, &app)?;
        let changed = diff(context, &key, &app, &projects, None, out)
            .await
            .with_context(|| format!("app {}", app.name))?;
        code = code.max(changed);
    }
    Ok(code)
}

fn version(out: Output) -> Result<i32> {
    let v = env!("CARGO_PKG_VERSION");
    match out {
        Output::Json => outln!("{}", serde_json::json!({ "version": v })),
        Output::Text => outln!("ferry {v}"),
    }
    Ok(0)
}

async fn cluster_info(context: Option<&str>, namespace: &str, out: Output) -> Result<i32> {
    let cluster = Cluster::connect(context).await?;
    let info = cluster.info(namespace).await?;
    match out {
        Output::Json => outln!("{}", serde_json::to_string_pretty(&info)?),
        Output::Text => {
            outln!("server:     {}", info.server);
            outln!("version:    {}", info.version);
            outln!(
                "discovery:  {} API groups, {} resources",
                info.groups,
                info.resources
            );
            let perms: Vec<String> = info
                .permissions
                .iter()
                .map(|(verb, ok)| format!("{verb}: {}", if *ok { "yes" } else { "no" }))
                .collect();
            outln!("namespace {}: {}", info.namespace, perms.join(", "));
        }
    }
    Ok(0)
}

/// ferry's cache directory: `$FERRY_CACHE` or `~/.cache/ferry`.
pub(crate) fn cache_dir() -> PathBuf {
    std::env::var_os("FERRY_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into());
            PathBuf::from(home).join(".cache/ferry")
        })
}

fn git_cache() -> GitCache {
    GitCache::new(cache_dir().join("git"))
}

/// The cluster last seen per app, for offline Helm renders.
fn facts_store() -> FactsStore {
    FactsStore::new(cache_dir().join("clusters"))
}

/// The facts for rendering `app` without a cluster, and the line saying where they come from.
fn offline_facts(app: &NamedApp) -> OfflineFacts {
    facts::offline(&app.name, app.spec.source.helm.as_ref(), &facts_store())
}

/// The app from flags: a one-off `--repo` app, or an app of the ferry.yaml (an `apps`
/// entry, or one generated by an app set expanded at `revision`, default its ref).
async fn load_app(args: &AppArgs, revision: Option<&str>) -> Result<NamedApp> {
    if let Some(repo) = &args.repo {
        let name = args.name.clone().unwrap_or_else(|| "app".into());
        let spec = AppSpec {
            source: SourceSpec {
                repo: repo.clone(),
                git_ref: args.git_ref.clone(),
                path: args.path.clone(),
                ..Default::default()
            },
            destination: Destination {
                namespace: args.namespace.clone(),
                create_namespace: args.create_namespace,
                context: None,
            },
            prune: true,
            self_heal: true,
            ..Default::default()
        };
        spec.validate().map_err(|(field, msg)| {
            anyhow::anyhow!("--{}: {msg}", field.rsplit('.').next().unwrap_or(&field))
        })?;
        return Ok(NamedApp { name, spec });
    }
    let file = FerryFile::load(&args.file)?;
    appsets::find_app(&file, &args.file, args.name.as_deref(), revision).await
}

async fn render_named(
    app: &NamedApp,
    revision: Option<&str>,
    facts: &ClusterFacts,
) -> Result<Rendered> {
    Ok(render_app(
        &git_cache(),
        &Tools::discover(),
        &app.name,
        &app.spec,
        revision,
        facts,
    )
    .await?)
}

async fn render(args: &AppArgs, revision: Option<&str>, out: Output) -> Result<i32> {
    let app = load_app(args, revision).await?;
    let offline = offline_facts(&app);
    let rendered = render_named(&app, revision, &offline.facts).await?;
    if rendered.renderer == "helm" {
        eprintln!("{}", offline.note);
    }
    eprintln!(
        "rendered {} object(s) from {} at {} ({})",
        rendered.manifests.len(),
        ferry_model::redact_url(&app.spec.source.repo),
        rendered.revision.short_sha(),
        rendered.renderer
    );
    match out {
        Output::Json => {
            let objects: Vec<_> = rendered.manifests.iter().map(|m| &m.object).collect();
            outln!("{}", serde_json::to_string_pretty(&objects)?);
        }
        Output::Text => out!("{}", ferry_render::to_yaml(&rendered.manifests)),
    }
    Ok(0)
}

/// Connects to the app's cluster (`--context` wins over the app's destination.context).
async fn connect(context: Option<&str>, app: &NamedApp) -> Result<(Cluster, ClusterFacts)> {
    let context = context.or(app.spec.destination.context.as_deref());
    let cluster = Cluster::connect(context).await?;
    let (kube_version, api_versions) = cluster.facts().await?;
    let facts = ClusterFacts {
        kube_version: Some(kube_version),
        api_versions,
    };
    if let Err(err) = facts_store().record(&app.name, cluster.server(), &facts) {
        tracing::warn!(app = %app.name, %err, "cannot record the cluster seen for offline renders");
    }
    Ok((cluster, facts))
}

async fn diff(
    context: Option<&str>,
    key: &AppKey,
    app: &NamedApp,
    projects: &[NamedProject],
    revision: Option<&str>,
    out: Output,
) -> Result<i32> {
    let (cluster, facts) = connect(context, app).await?;
    let project = project::resolve(&cluster, &app.name, &app.spec, projects).await?;
    project::admit(&project, &app.name, None, &app.spec)?;
    let rendered = render_named(app, revision, &facts).await?;
    let opts = SyncOptions {
        dry_run: true,
        force: true,
        hooks: true,
        ..Default::default()
    };
    let report = Sync::new(&cluster, key, &app.spec)
        .in_project(&project, None)
        .run(&rendered, &opts, &Silent)
        .await?;
    ChangeSetView(&report.changeset).print(out)?;
    Ok(if report.changeset.in_sync() { 0 } else { 1 })
}

async fn preview(args: &AppArgs, head: &str, base: &str, out: Output) -> Result<i32> {
    let app = load_app(args, Some(head)).await?;
    let offline = offline_facts(&app);
    let new = render_named(&app, Some(head), &offline.facts)
        .await
        .with_context(|| format!("--revision {head}"))?;
    let old = render_named(&app, Some(base), &offline.facts)
        .await
        .with_context(|| format!("--against {base}"))?;
    if new.renderer == "helm" || old.renderer == "helm" {
        eprintln!("{}", offline.note);
    }
    let (mut head_objects, mut base_objects) = (new.manifests.clone(), old.manifests.clone());
    if let Some(ns) = &app.spec.destination.namespace {
        ferry_engine::preview::default_namespace(&mut head_objects, ns);
        ferry_engine::preview::default_namespace(&mut base_objects, ns);
    }
    let cs =
        ferry_engine::preview::compare(&app.name, &new.revision.sha, &base_objects, &head_objects);
    if out == Output::Text {
        eprintln!(
            "comparing {} ({}) with {} ({}), no cluster",
            head,
            new.revision.short_sha(),
            base,
            old.revision.short_sha()
        );
    }
    ChangeSetView(&cs).print(out)?;
    Ok(if cs.in_sync() { 0 } else { 1 })
}

/// How `apply` applies one app.
struct How<'a> {
    /// The ferry.yaml's projects.
    projects: &'a [NamedProject],
    /// The revision (default: the app's ref).
    revision: Option<&'a str>,
    /// Re-create objects whose immutable fields changed.
    force: bool,
    /// Wait this long for health.
    wait: Option<Duration>,
}

async fn apply(
    context: Option<&str>,
    key: &AppKey,
    app: &NamedApp,
    how: How<'_>,
    out: Output,
) -> Result<i32> {
    let How {
        projects,
        revision,
        force,
        wait,
    } = how;
    let (cluster, facts) = connect(context, app).await?;
    let project = project::resolve(&cluster, &app.name, &app.spec, projects).await?;
    project::admit(&project, &app.name, None, &app.spec)?;
    let printer = Printer::new(out);
    let rendered = render_named(app, revision, &facts).await?;
    printer.line(&format!(
        "{}: {} object(s) at {} ({}): {}",
        app.name,
        rendered.manifests.len(),
        rendered.revision.short_sha(),
        rendered.renderer,
        rendered.revision.message
    ));
    let opts = SyncOptions {
        force,
        wait: wait.map_or(Wait::No, Wait::Until),
        hooks: true,
        ..Default::default()
    };
    let report = Sync::new(&cluster, key, &app.spec)
        .in_project(&project, None)
        .run(&rendered, &opts, &printer)
        .await?;
    for kept in (report.changeset.changes.iter()).filter(|c| c.action == Action::Orphan) {
        let reason = kept.reason.as_deref().unwrap_or("left Git");
        printer.line(&format!("  ? keep {} ({reason})", kept.subject));
    }
    let health = report.health;
    printer.finish();
    let code = match &health {
        Some(h) if h.outcome != WaitOutcome::Healthy => 1,
        _ => 0,
    };
    match out {
        Output::Json => outln!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "app": app.name,
                "revision": rendered.revision.sha,
                "changeset": report.changeset,
                "health": health,
            }))?
        ),
        Output::Text => {
            if let Some(h) = &health {
                match h.outcome {
                    WaitOutcome::Healthy => {
                        outln!("{}: all {} object(s) healthy", app.name, h.objects.len())
                    }
                    WaitOutcome::Failed | WaitOutcome::TimedOut | WaitOutcome::Progressing => {
                        let why = match h.outcome {
                            WaitOutcome::Failed => "failed",
                            _ => "timed out waiting for health",
                        };
                        outln!("{}: {why}:", app.name);
                        for (subject, health) in h.unready() {
                            outln!("  {subject}: {} {}", health.status, health.message);
                        }
                    }
                }
            } else {
                outln!(
                    "{}: applied {} ({})",
                    app.name,
                    rendered.revision.short_sha(),
                    report.changeset.summary()
                );
            }
        }
    }
    Ok(code)
}
