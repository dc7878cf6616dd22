//! `ferry agent` and the commands that talk to a running agent over its API.

use anyhow::{Context, Result, bail};
use ferry_agent::AgentConfig;
use ferry_api::{ActionAccepted, AppDetail, AppList, ErrorBody, HistoryList, RollbackBody};
use std::path::Path;
use std::time::Duration;

use ferry_model::{AppKey, FerryFile, SYSTEM_NAMESPACE, parse_duration};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::cli::{AgentArgs, Output, ServerArgs};

/// Runs the agent until SIGTERM or SIGINT.
pub async fn run(args: AgentArgs, context: Option<&str>) -> Result<i32> {
    let sync_timeout =
        parse_duration(&args.sync_timeout).map_err(|m| anyhow::anyhow!("--sync-timeout: {m}"))?;
    let kube_timeout =
        parse_duration(&args.kube_timeout).map_err(|m| anyhow::anyhow!("--kube-timeout: {m}"))?;
    let git_timeout =
        parse_duration(&args.git_timeout).map_err(|m| anyhow::anyhow!("--git-timeout: {m}"))?;
    let resync_interval = parse_duration(&args.resync_interval)
        .map_err(|m| anyhow::anyhow!("--resync-interval: {m}"))?;
    if kube_timeout.is_zero() || git_timeout.is_zero() {
        bail!("--kube-timeout and --git-timeout must be longer than 0 s");
    }
    if let Some(url) = &args.dashboard_url
        && !(url.starts_with("https://") || url.starts_with("http://"))
    {
        bail!("--dashboard-url: {url:?} is not an http(s) URL");
    }
    let cache = super::cache_dir();
    let data_dir = args.data_dir.unwrap_or_else(|| cache.join("agent"));
    // Stable across restarts of one agent (same host, same data directory), so that a
    // restarted agent takes its own Lease back at once instead of waiting for it to expire.
    let identity = args.identity.clone().unwrap_or_else(|| {
        use std::hash::{Hash, Hasher};
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let mut hasher = std::hash::DefaultHasher::new();
        std::fs::canonicalize(&data_dir)
            .unwrap_or_else(|_| data_dir.clone())
            .hash(&mut hasher);
        format!("{}-{:08x}", host.trim(), hasher.finish() as u32)
    });
    let auth = ferry_web::Auth::new(&args.tokens, args.tokens_file.as_deref())?;
    auth.check_listen(args.listen)?;
    eprintln!(
        "ferry agent: dashboard and API on http://{} ({})",
        args.listen,
        auth.describe()
    );
    let auth = std::sync::Arc::new(auth);
    let applications = args.applications.map(|ns| (ns != "all").then_some(ns));
    let apps_file = match (args.file, &applications) {
        (Some(f), _) => Some(f),
        (None, None) => Some("ferry.yaml".into()),
        (None, Some(_)) => None,
    };
    let config = AgentConfig {
        apps_file,
        applications,
        listen: args.listen,
        data_dir,
        git_cache: cache.join("git"),
        context: context.map(str::to_string),
        webhook_secret: args.webhook_secret,
        concurrency: args.concurrency,
        sync_timeout,
        kube_timeout,
        git_timeout,
        resync_interval,
        lease_namespace: args.leader_elect_namespace,
        identity,
        dashboard_url: args.dashboard_url,
    };
    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        eprintln!("ferry agent: stopping (in-flight syncs finish first)");
        signal.cancel();
    });
    ferry_agent::run_with(config, shutdown, move |api, agent| {
        ferry_web::router(api, agent, auth)
    })
    .await?;
    Ok(0)
}

/// Sends a request to the agent. Returns its answer as sent (what `--output json` prints)
/// and as the typed value `T`; an error answer becomes an error with the agent's message.
async fn call<T: DeserializeOwned>(
    args: &ServerArgs,
    method: reqwest::Method,
    url: String,
    body: Option<Value>,
) -> Result<(Value, T)> {
    let timeout = parse_duration(&args.request_timeout)
        .map_err(|m| anyhow::anyhow!("--request-timeout: {m}"))?;
    let client = reqwest::Client::builder()
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .timeout(timeout)
        .build()?;
    let mut req = client.request(method.clone(), &url);
    if let Some(token) = args.token.as_deref() {
        req = req.bearer_auth(token);
    }
    // A JSON body marks an action as not cross-site (the agent refuses form-like POSTs).
    if let Some(body) = body
        .or_else(|| (method == reqwest::Method::POST).then(|| Value::Object(Default::default())))
    {
        req = req.json(&body);
    }
    let unreachable = |e: reqwest::Error| {
        let why = if e.is_timeout() {
            format!("no answer within {}", args.request_timeout)
        } else {
            e.to_string()
        };
        anyhow::anyhow!("cannot reach the agent at {url}: {why}")
    };
    let resp = req.send().await.map_err(unreachable)?;
    let status = resp.status();
    let body = resp.bytes().await.map_err(unreachable)?;
    let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if !status.is_success() {
        let msg = serde_json::from_value::<ErrorBody>(value)
            .map_or_else(|_| "request failed".to_string(), |e| e.error);
        bail!("agent: {msg} (HTTP {})", status.as_u16());
    }
    let typed = serde_json::from_value(value.clone())
        .with_context(|| format!("unexpected answer from the agent at {url}"))?;
    Ok((value, typed))
}

/// GETs `url` from the agent: with `--output json` prints the answer as sent and returns
/// `None`; else returns it as `T`.
async fn fetch<T: DeserializeOwned>(
    args: &ServerArgs,
    url: &str,
    out: Output,
) -> Result<Option<T>> {
    let (raw, typed) = call(args, reqwest::Method::GET, url.to_string(), None).await?;
    if out == Output::Json {
        outln!("{}", serde_json::to_string_pretty(&raw)?);
        return Ok(None);
    }
    Ok(Some(typed))
}

/// The API path of the app `name` (`namespace/name`, or a bare name in the namespace of
/// `--namespace`, else of ./ferry.yaml, else `ferry-system`).
fn app_path(server: &ServerArgs, name: &str) -> Result<AppKey> {
    let namespace = match &server.namespace {
        Some(ns) => ns.clone(),
        None => FerryFile::load(Path::new("ferry.yaml"))
            .map(|f| f.namespace)
            .unwrap_or_else(|_| SYSTEM_NAMESPACE.to_string()),
    };
    Ok(AppKey::parse(name, &namespace)?)
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(7)]
}

/// `ferry get apps` / `ferry get app NAME`.
pub async fn get(args: &ServerArgs, what: &str, name: Option<&str>, out: Output) -> Result<i32> {
    let server = args.server.trim_end_matches('/');
    if what == "app" {
        let Some(name) = name else {
            bail!("ferry get app needs an app name")
        };
        let name = app_path(args, name)?;
        let Some(app) =
            fetch::<AppDetail>(args, &format!("{server}/api/v1/apps/{name}"), out).await?
        else {
            return Ok(0);
        };
        outln!("name:     {}", app.name);
        outln!("namespace: {}", app.app_namespace);
        outln!("sync:     {}", app.sync.as_str());
        outln!("health:   {}", app.health);
        outln!("revision: {} {}", short(&app.revision), app.message);
        if let Some(pin) = &app.pinned {
            outln!(
                "pinned:   {} (rolled back; `ferry resume {name}` returns to the branch)",
                short(pin)
            );
        }
        if app.suspended {
            outln!("suspended: reconciliation is off until `ferry resume {name}`");
        }
        for c in &app.conditions {
            outln!("  {}={} {} {}", c.kind, c.status, c.reason, c.message);
        }
        for o in &app.objects {
            outln!(
                "  {}/{} {}",
                o.subject.kind,
                o.subject.name,
                o.health.status
            );
        }
        return Ok(0);
    }
    let Some(list) =
        fetch::<AppList>(args, &format!("{server}/api/v1/apps?limit=1000"), out).await?
    else {
        return Ok(0);
    };
    outln!(
        "{:<24} {:<16} {:<10} {:<12} {:<8} MESSAGE",
        "NAME",
        "NAMESPACE",
        "SYNC",
        "HEALTH",
        "REVISION"
    );
    for a in &list.items {
        let sync = if a.suspended {
            "Suspended"
        } else {
            a.sync.as_str()
        };
        outln!(
            "{:<24} {:<16} {:<10} {:<12} {:<8} {}",
            a.name,
            a.app_namespace,
            sync,
            a.health.to_string(),
            short(&a.revision),
            a.message
        );
    }
    Ok(0)
}

/// `ferry sync|refresh|suspend|resume APP`.
pub async fn action(args: &ServerArgs, name: &str, action: &str, out: Output) -> Result<i32> {
    let name = app_path(args, name)?;
    let server = args.server.trim_end_matches('/');
    let (raw, _): (_, ActionAccepted) = call(
        args,
        reqwest::Method::POST,
        format!("{server}/api/v1/apps/{name}/{action}"),
        None,
    )
    .await?;
    match out {
        Output::Json => outln!("{raw}"),
        Output::Text => outln!("{name}: {action} requested"),
    }
    Ok(0)
}

/// `ferry history APP`.
pub async fn history(args: &ServerArgs, name: &str, out: Output) -> Result<i32> {
    let name = app_path(args, name)?;
    let server = args.server.trim_end_matches('/');
    let url = format!("{server}/api/v1/apps/{name}/history");
    let Some(list) = fetch::<HistoryList>(args, &url, out).await? else {
        return Ok(0);
    };
    outln!(
        "{:<6} {:<8} {:<9} {:<10} {:>8}  SUMMARY / MESSAGE",
        "ID",
        "REVISION",
        "TRIGGER",
        "RESULT",
        "MS"
    );
    for e in &list.items {
        let s = &e.summary;
        let detail = match &e.error {
            Some(err) => err.clone(),
            None => format!("+{} ~{} -{}  {}", s.create, s.update, s.prune, e.message),
        };
        outln!(
            "{:<6} {:<8} {:<9} {:<10} {:>8}  {}",
            e.id,
            short(&e.revision),
            e.trigger.as_str(),
            e.outcome.as_str(),
            e.duration_ms,
            detail
        );
    }
    Ok(0)
}

/// `ferry rollback APP TARGET`.
pub async fn rollback(args: &ServerArgs, name: &str, target: &str, out: Output) -> Result<i32> {
    let name = app_path(args, name)?;
    let server = args.server.trim_end_matches('/');
    let body = RollbackBody {
        target: target.to_string(),
    };
    let (raw, accepted): (_, ActionAccepted) = call(
        args,
        reqwest::Method::POST,
        format!("{server}/api/v1/apps/{name}/rollback"),
        Some(serde_json::to_value(body)?),
    )
    .await?;
    match out {
        Output::Json => outln!("{raw}"),
        Output::Text => outln!(
            "{name}: rolling back to {} (pinned until `ferry resume {name}`)",
            short(accepted.revision.as_deref().unwrap_or(target))
        ),
    }
    Ok(0)
}

/// `ferry install`: prints the manifests, or applies them (CRD first, waited for).
pub async fn install(
    context: Option<&str>,
    apply: bool,
    namespace: &str,
    image: &str,
    cluster_admin: bool,
) -> Result<i32> {
    let objects = ferry_agent::crd::install_manifests(namespace, image, cluster_admin);
    if !apply {
        for o in &objects {
            out!("---\n{}", ferry_engine::diff::to_yaml(o));
        }
        return Ok(0);
    }
    let cluster = ferry_kube::Cluster::connect(context).await?;
    let manifests = objects
        .into_iter()
        .enumerate()
        .map(|(doc, object)| {
            let origin = ferry_model::Origin {
                file: "ferry install".into(),
                doc,
            };
            ferry_model::Manifest::new(object, origin)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let rendered = ferry_engine::source::Rendered {
        revision: ferry_source::Revision {
            sha: env!("CARGO_PKG_VERSION").into(),
            message: "ferry install".into(),
            author: String::new(),
            time: 0,
        },
        manifests,
        renderer: "install",
    };
    // Its own app, so that a later install updates it; never pruned from here.
    let spec = ferry_model::AppSpec {
        destination: ferry_model::Destination {
            namespace: Some(namespace.to_string()),
            ..Default::default()
        },
        prune: false,
        ..Default::default()
    };
    let printer = super::output::Printer::new(Output::Text);
    let report = ferry_engine::Sync::new(
        &cluster,
        &AppKey::new(SYSTEM_NAMESPACE, "ferry-agent"),
        &spec,
    )
    .run(&rendered, &ferry_engine::SyncOptions::default(), &printer)
    .await?;
    printer.finish();
    for subject in &report.objects {
        eprintln!("applied {subject}");
    }
    Ok(0)
}
