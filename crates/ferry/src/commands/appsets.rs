//! App sets on the command line: finding generated apps, `ferry apps` and `ferry promote`.

use std::path::Path;

use anyhow::{Result, bail};
use ferry_engine::appset::expand_set;
use ferry_engine::promote::{Promotion, promote as promote_set};
use ferry_engine::source::local_credentials;
use ferry_model::{FerryFile, NamedApp, SpecError};

use crate::cli::Output;

/// An app of a ferry.yaml, with the set that generated it.
pub struct Listed {
    /// The app.
    pub app: NamedApp,
    /// The generating set; `None` for an `apps` entry.
    pub set: Option<String>,
}

/// Every app of `file`: the `apps` entries, then each set's apps expanded at `revision`
/// (default: the set's ref). A generated name that is taken already is an error.
pub async fn all_apps(file: &FerryFile, revision: Option<&str>) -> Result<Vec<Listed>> {
    let mut all: Vec<Listed> = file
        .apps
        .iter()
        .map(|app| Listed {
            app: app.clone(),
            set: None,
        })
        .collect();
    for set in &file.app_sets {
        let credentials = local_credentials(&set.template.spec.source)?;
        let git = super::git_cache().with_credentials(credentials);
        let expanded = expand_set(&git, set, revision).await?;
        for app in expanded.apps {
            if let Some(other) = all.iter().find(|l| l.app.name == app.name) {
                let by = match &other.set {
                    Some(s) => format!("app set {s}"),
                    None => "an apps entry".into(),
                };
                bail!(
                    "app set {} generates app {} (from {}), which {by} defines already",
                    set.name,
                    app.name,
                    app.spec.source.path
                );
            }
            all.push(Listed {
                app,
                set: Some(set.name.clone()),
            });
        }
    }
    Ok(all)
}

/// The app `name` (or the only app) of `file`, looking through app sets (expanded at
/// `revision`) only when no `apps` entry matches.
pub async fn find_app(
    file: &FerryFile,
    path: &Path,
    name: Option<&str>,
    revision: Option<&str>,
) -> Result<NamedApp> {
    if let Some(app) = name.and_then(|n| file.apps.iter().find(|a| a.name == n)) {
        return Ok(app.clone());
    }
    let all = all_apps(file, revision).await?;
    let known = || {
        all.iter()
            .map(|l| l.app.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match name {
        Some(name) => match all.iter().find(|l| l.app.name == name) {
            Some(l) => Ok(l.app.clone()),
            None => Err(SpecError::UnknownApp {
                name: name.into(),
                path: path.to_path_buf(),
                known: known(),
            }
            .into()),
        },
        None => match all.as_slice() {
            [one] => Ok(one.app.clone()),
            [] => bail!("{}: no apps defined", path.display()),
            many => bail!(
                "{} defines {} apps; name one: {}",
                path.display(),
                many.len(),
                known()
            ),
        },
    }
}

/// `ferry apps`: every app with its set, source path and namespace.
pub async fn apps(path: &Path, revision: Option<&str>, out: Output) -> Result<i32> {
    let file = FerryFile::load(path)?;
    let all = all_apps(&file, revision).await?;
    if out == Output::Json {
        let items: Vec<_> = all
            .iter()
            .map(|l| {
                let source = &l.app.spec.source;
                serde_json::json!({
                    "name": l.app.name,
                    "set": l.set,
                    "repo": ferry_model::redact_url(&source.repo),
                    "ref": source.git_ref,
                    "path": source.path,
                    "namespace": l.app.spec.destination.namespace,
                })
            })
            .collect();
        outln!("{}", serde_json::to_string_pretty(&items)?);
        return Ok(0);
    }
    let width = all
        .iter()
        .map(|l| l.app.name.len())
        .max()
        .unwrap_or(0)
        .max(4);
    let set_width = all
        .iter()
        .filter_map(|l| l.set.as_deref().map(str::len))
        .max()
        .unwrap_or(0)
        .max(3);
    outln!(
        "{:<width$}  {:<set_width$}  {:<24}  NAMESPACE",
        "NAME",
        "SET",
        "PATH"
    );
    for l in &all {
        let path = match l.app.spec.source.path.as_str() {
            "" => ".",
            p => p,
        };
        outln!(
            "{:<width$}  {:<set_width$}  {:<24}  {}",
            l.app.name,
            l.set.as_deref().unwrap_or("-"),
            path,
            l.app.spec.destination.namespace.as_deref().unwrap_or("-")
        );
    }
    Ok(0)
}

/// `ferry promote SET --from A --to B`.
pub async fn promote(path: &Path, set: &str, from: &str, to: &str, out: Output) -> Result<i32> {
    let file = FerryFile::load(path)?;
    let set = file.app_set(set, path)?.clone();
    let (from, to) = (from.to_string(), to.to_string());
    let promotion = tokio::task::spawn_blocking(move || promote_set(&set, &from, &to)).await??;
    if out == Output::Json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "set": promotion.set,
                "from": promotion.from,
                "to": promotion.to,
                "file": promotion.file,
                "commit": promotion.commit,
                "previous": promotion.previous,
                "changes": promotion.changes,
            }))?
        );
        return Ok(0);
    }
    let Some(commit) = &promotion.commit else {
        outln!(
            "{}: {} → {}: already promoted ({} unchanged, nothing committed)",
            promotion.set,
            promotion.from,
            promotion.to,
            promotion.file
        );
        return Ok(0);
    };
    outln!("{}", promotion.message().0);
    outln!("commit {commit} ({})", promotion.file);
    outln!("{}", hint(path, &file, &promotion, commit));
    Ok(0)
}

/// How to preview what the commit changes in the target app, offline.
fn hint(path: &Path, file: &FerryFile, p: &Promotion, commit: &str) -> String {
    let flag = if path == Path::new("ferry.yaml") {
        String::new()
    } else {
        format!(" -f {}", path.display())
    };
    // The target directory's app, as the set's template names it.
    let app = file
        .app_sets
        .iter()
        .find(|s| s.name == p.set)
        .and_then(|s| ferry_model::appset::expand(s, std::slice::from_ref(&p.to_dir)).ok())
        .and_then(|apps| apps.into_iter().next())
        .map_or_else(|| format!("<{} app>", p.to), |a| a.name);
    format!(
        "hint: `ferry diff {app}{flag} --revision {} --against {}` shows what it will change",
        short(commit),
        short(&p.previous)
    )
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}
