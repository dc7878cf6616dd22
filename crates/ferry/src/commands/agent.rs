//! `ferry agent` and the commands that talk to a running agent over its API.

use anyhow::{Context, Result, bail};
use ferry_agent::AgentConfig;
use ferry_model::parse_duration;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::cli::{AgentArgs, Output, ServerArgs};

/// Runs the agent until SIGTERM or SIGINT.
pub async fn run(args: AgentArgs, context: Option<&str>) -> Result<i32> {
    let sync_timeout =
        parse_duration(&args.sync_timeout).map_err(|m| anyhow::anyhow!("--sync-timeout: {m}"))?;
    let cache = super::cache_dir();
    let identity = args.identity.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        format!("{}-{}", host.trim(), std::process::id())
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
        data_dir: args.data_dir.unwrap_or_else(|| cache.join("agent")),
        git_cache: cache.join("git"),
        context: context.map(str::to_string),
        webhook_secret: args.webhook_secret,
        concurrency: args.concurrency,
        sync_timeout,
        lease_namespace: args.leader_elect_namespace,
        identity,
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

async fn call(
    method: reqwest::Method,
    url: String,
    token: Option<&str>,
    body: Option<Value>,
) -> Result<Value> {
    let client = reqwest::Client::new();
    let mut req = client.request(method.clone(), &url);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    // A JSON body marks an action as not cross-site (the agent refuses form-like POSTs).
    if let Some(body) = body
        .or_else(|| (method == reqwest::Method::POST).then(|| Value::Object(Default::default())))
    {
        req = req.json(&body);
    }
    let resp = req
        .send()
        .await
        .with_context(|| format!("cannot reach the agent at {url}"))?;
    let status = resp.status();
    let value: Value = resp.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        let msg = value["error"].as_str().unwrap_or("request failed");
        bail!("agent: {msg} (HTTP {})", status.as_u16());
    }
    Ok(value)
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(7)]
}

/// `ferry get apps` / `ferry get app NAME`.
pub async fn get(server: &ServerArgs, what: &str, name: Option<&str>, out: Output) -> Result<i32> {
    let (server, token) = (server.server.trim_end_matches('/'), server.token.as_deref());
    if what == "app" {
        let Some(name) = name else {
            bail!("ferry get app needs an app name")
        };
        let app = call(
            reqwest::Method::GET,
            format!("{server}/api/v1/apps/{name}"),
            token,
            None,
        )
        .await?;
        if out == Output::Json {
            outln!("{}", serde_json::to_string_pretty(&app)?);
            return Ok(0);
        }
        outln!("name:     {}", app["name"].as_str().unwrap_or_default());
        outln!("sync:     {}", app["sync"].as_str().unwrap_or_default());
        outln!("health:   {}", app["health"].as_str().unwrap_or_default());
        outln!(
            "revision: {} {}",
            short(app["revision"].as_str().unwrap_or_default()),
            app["message"].as_str().unwrap_or_default()
        );
        if let Some(pin) = app["pinned"].as_str() {
            outln!(
                "pinned:   {} (rolled back; `ferry resume {name}` returns to the branch)",
                short(pin)
            );
        }
        if app["suspended"].as_bool() == Some(true) {
            outln!("suspended: reconciliation is off until `ferry resume {name}`");
        }
        for c in app["conditions"].as_array().into_iter().flatten() {
            outln!(
                "  {}={} {} {}",
                c["type"].as_str().unwrap_or_default(),
                c["status"].as_str().unwrap_or_default(),
                c["reason"].as_str().unwrap_or_default(),
                c["message"].as_str().unwrap_or_default()
            );
        }
        for o in app["objects"].as_array().into_iter().flatten() {
            let s = &o["subject"];
            outln!(
                "  {}/{} {}",
                s["kind"].as_str().unwrap_or_default(),
                s["name"].as_str().unwrap_or_default(),
                o["health"]["status"].as_str().unwrap_or_default()
            );
        }
        return Ok(0);
    }
    let list = call(
        reqwest::Method::GET,
        format!("{server}/api/v1/apps?limit=1000"),
        token,
        None,
    )
    .await?;
    if out == Output::Json {
        outln!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(0);
    }
    outln!(
        "{:<24} {:<10} {:<12} {:<8} MESSAGE",
        "NAME",
        "SYNC",
        "HEALTH",
        "REVISION"
    );
    for a in list["items"].as_array().into_iter().flatten() {
        let sync = if a["suspended"].as_bool() == Some(true) {
            "Suspended"
        } else {
            a["sync"].as_str().unwrap_or_default()
        };
        outln!(
            "{:<24} {:<10} {:<12} {:<8} {}",
            a["name"].as_str().unwrap_or_default(),
            sync,
            a["health"].as_str().unwrap_or_default(),
            short(a["revision"].as_str().unwrap_or_default()),
            a["message"].as_str().unwrap_or_default()
        );
    }
    Ok(0)
}

/// `ferry sync|refresh|suspend|resume APP`.
pub async fn action(server: &ServerArgs, name: &str, action: &str, out: Output) -> Result<i32> {
    let (server, token) = (server.server.trim_end_matches('/'), server.token.as_deref());
    let resp = call(
        reqwest::Method::POST,
        format!("{server}/api/v1/apps/{name}/{action}"),
        token,
        None,
    )
    .await?;
    match out {
        Output::Json => outln!("{resp}"),
        Output::Text => outln!("{name}: {action} requested"),
    }
    Ok(0)
}

/// `ferry history APP`.
pub async fn history(server: &ServerArgs, name: &str, out: Output) -> Result<i32> {
    let (server, token) = (server.server.trim_end_matches('/'), server.token.as_deref());
    let resp = call(
        reqwest::Method::GET,
        format!("{server}/api/v1/apps/{name}/history"),
        token,
        None,
    )
    .await?;
    if out == Output::Json {
        outln!("{}", serde_json::to_string_pretty(&resp)?);
        return Ok(0);
    }
    outln!(
        "{:<6} {:<8} {:<9} {:<10} {:>8}  SUMMARY / MESSAGE",
        "ID",
        "REVISION",
        "TRIGGER",
        "RESULT",
        "MS"
    );
    for e in resp["items"].as_array().into_iter().flatten() {
        let s = &e["summary"];
        let detail = match e["error"].as_str() {
            Some(err) => err.to_string(),
            None => format!(
                "+{} ~{} -{}  {}",
                s["create"],
                s["update"],
                s["prune"],
                e["message"].as_str().unwrap_or_default()
            ),
        };
        outln!(
            "{:<6} {:<8} {:<9} {:<10} {:>8}  {}",
            e["id"],
            short(e["revision"].as_str().unwrap_or_default()),
            e["trigger"].as_str().unwrap_or_default(),
            e["outcome"].as_str().unwrap_or_default(),
            e["duration_ms"],
            detail
        );
    }
    Ok(0)
}

/// `ferry rollback APP TARGET`.
pub async fn rollback(server: &ServerArgs, name: &str, target: &str, out: Output) -> Result<i32> {
    let (server, token) = (server.server.trim_end_matches('/'), server.token.as_deref());
    let resp = call(
        reqwest::Method::POST,
        format!("{server}/api/v1/apps/{name}/rollback"),
        token,
        Some(serde_json::json!({ "target": target })),
    )
    .await?;
    match out {
        Output::Json => outln!("{resp}"),
        Output::Text => outln!(
            "{name}: rolling back to {} (pinned until `ferry resume {name}`)",
            short(resp["revision"].as_str().unwrap_or(target))
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
) -> Result<i32> {
    let objects = ferry_agent::crd::install_manifests(namespace, image);
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
    let report = ferry_engine::Sync::new(&cluster, "ferry-agent", &spec)
        .run(&rendered, &ferry_engine::SyncOptions::default(), &printer)
        .await?;
    printer.finish();
    for subject in &report.objects {
        eprintln!("applied {subject}");
    }
    Ok(0)
}
