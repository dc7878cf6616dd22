//! The GitHub Actions workflows and `ferry.yaml` of `examples/llm-app`: they parse, have
//! the structure GitHub Actions needs, and every `ferry` command in them uses a
//! subcommand and flags that this build of ferry has (checked against the real binary's
//! `--help`). The pull-request preview step is run for real, offline, on a copy of the
//! example in a temporary Git repository (needs kustomize: it fails under `CI=true` when
//! kustomize is missing, and is skipped with a note otherwise).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

use ferry_model::FerryFile;
use ferry_testkit::{TestRepo, manifest_dir};
use serde_json::Value;

/// `examples/llm-app`, the root of the example's repository.
fn example() -> PathBuf {
    let path = manifest_dir().join("../../examples/llm-app");
    path.canonicalize()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn ferry_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_ferry"))
}

/// Every `.github/workflows/*.yaml` of the example, parsed, by file name.
fn workflows() -> BTreeMap<String, Value> {
    let dir = example().join(".github/workflows");
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.ends_with(".yaml"),
            "{name}: workflows are named *.yaml"
        );
        let text = std::fs::read_to_string(&path).unwrap();
        let value: Value = serde_saphyr::from_str(&text)
            .unwrap_or_else(|e| panic!("{}: not valid YAML: {e}", path.display()));
        out.insert(name, value);
    }
    assert_eq!(
        out.keys().map(String::as_str).collect::<Vec<_>>(),
        ["cd.yaml", "ci.yaml"]
    );
    out
}

fn ferry_file() -> FerryFile {
    let path = example().join("ferry.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    FerryFile::parse(&text, &path).unwrap_or_else(|e| panic!("{e}"))
}

fn jobs(workflow: &Value) -> &serde_json::Map<String, Value> {
    workflow["jobs"].as_object().expect("jobs is a mapping")
}

fn steps(job: &Value) -> &Vec<Value> {
    job["steps"].as_array().expect("steps is a list")
}

/// The `run:` scripts of a job.
fn scripts(job: &Value) -> impl Iterator<Item = &str> {
    steps(job).iter().filter_map(|s| s["run"].as_str())
}

/// The `uses:` of a job's steps, without the version.
fn actions(job: &Value) -> Vec<&str> {
    steps(job)
        .iter()
        .filter_map(|s| s["uses"].as_str())
        .map(|u| u.split('@').next().unwrap())
        .collect()
}

/// A job's `needs`, as a list.
fn needs(job: &Value) -> Vec<&str> {
    match &job["needs"] {
        Value::String(s) => vec![s.as_str()],
        Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// A job's `environment` name (`environment: name` or `environment: {name: …}`).
fn environment(job: &Value) -> Option<&str> {
    job["environment"]
        .as_str()
        .or_else(|| job["environment"]["name"].as_str())
}

/// The events a workflow runs on.
fn events(workflow: &Value) -> BTreeSet<String> {
    match &workflow["on"] {
        Value::String(s) => [s.clone()].into(),
        Value::Array(a) => a
            .iter()
            .filter_map(|v| v.as_str().map(String::from))
            .collect(),
        Value::Object(o) => o.keys().cloned().collect(),
        other => panic!("`on` must name events, got {other}"),
    }
}

#[test]
fn workflows_have_github_actions_structure() {
    for (file, workflow) in workflows() {
        let top = workflow.as_object().expect("a workflow is a mapping");
        assert!(
            !top.contains_key("true"),
            "{file}: `on` was read as the boolean true (YAML 1.1)"
        );
        for key in ["name", "on", "jobs"] {
            assert!(top.contains_key(key), "{file}: no `{key}`");
        }
        for key in top.keys() {
            assert!(
                [
                    "name",
                    "run-name",
                    "on",
                    "permissions",
                    "env",
                    "defaults",
                    "concurrency",
                    "jobs"
                ]
                .contains(&key.as_str()),
                "{file}: unknown top-level key {key:?}"
            );
        }
        assert!(!events(&workflow).is_empty(), "{file}: no events");
        let jobs = jobs(&workflow);
        assert!(!jobs.is_empty(), "{file}: no jobs");
        for (id, job) in jobs {
            let at = format!("{file}: job {id}");
            assert!(
                job["runs-on"].as_str().is_some_and(|r| !r.is_empty()),
                "{at}: no runs-on"
            );
            for need in needs(job) {
                assert!(jobs.contains_key(need), "{at}: needs unknown job {need}");
            }
            let steps = steps(job);
            assert!(!steps.is_empty(), "{at}: no steps");
            for (i, step) in steps.iter().enumerate() {
                let at = format!("{at} step {} ({})", i + 1, step["name"]);
                let step = step.as_object().expect("a step is a mapping");
                match (step.get("uses"), step.get("run")) {
                    (Some(Value::String(uses)), None) => {
                        let (action, version) = uses
                            .split_once('@')
                            .unwrap_or_else(|| panic!("{at}: {uses} has no @version"));
                        assert_eq!(action.split('/').count(), 2, "{at}: {uses}");
                        assert!(!version.is_empty(), "{at}: {uses}");
                    }
                    (None, Some(Value::String(run))) => {
                        assert!(!run.trim().is_empty(), "{at}: empty run")
                    }
                    _ => panic!("{at}: needs exactly one of `uses` or `run` (a string)"),
                }
                for key in step.keys() {
                    assert!(
                        [
                            "id",
                            "name",
                            "if",
                            "uses",
                            "run",
                            "with",
                            "env",
                            "shell",
                            "working-directory",
                            "continue-on-error",
                            "timeout-minutes"
                        ]
                        .contains(&key.as_str()),
                        "{at}: unknown step key {key:?}"
                    );
                }
            }
        }
    }
}

#[test]
fn ci_tests_then_builds_and_pushes_the_image() {
    let workflows = workflows();
    let ci = &workflows["ci.yaml"];
    assert!(events(ci).is_superset(&["push".into(), "pull_request".into()].into()));
    let jobs = jobs(ci);
    let test = &jobs["test"];
    assert!(actions(test).contains(&"actions/setup-python"));
    assert!(
        scripts(test).any(|s| s.contains("pytest")),
        "the test job runs pytest"
    );
    assert_eq!(test["defaults"]["run"]["working-directory"], "app");

    let image = &jobs["image"];
    assert_eq!(needs(image), ["test"], "the image is built after the tests");
    let build = steps(image)
        .iter()
        .find(|s| {
            s["uses"]
                .as_str()
                .is_some_and(|u| u.starts_with("docker/build-push-action@"))
        })
        .expect("a docker/build-push-action step");
    assert_eq!(build["with"]["context"], "app");
    assert!(
        build["with"]["push"]
            .as_str()
            .is_some_and(|p| p.contains("github.event_name == 'push'")),
        "pushes on push, not on pull requests"
    );
    let meta = steps(image)
        .iter()
        .find(|s| s["id"] == "meta")
        .expect("a metadata step");
    assert_eq!(meta["with"]["images"], "${{ env.IMAGE }}");
    assert_eq!(ci["env"]["IMAGE"], "registry.example/llm-app");
    assert!(
        meta["with"]["tags"].as_str().unwrap().contains("type=sha"),
        "images are tagged with the commit SHA"
    );
    assert!(actions(image).contains(&"docker/login-action"));
    assert!(example().join("app/Dockerfile").is_file());
}

#[test]
fn cd_previews_pull_requests_and_promotes_with_approval() {
    let workflows = workflows();
    let cd = &workflows["cd.yaml"];
    assert!(events(cd).is_superset(&["push".into(), "pull_request".into()].into()));
    assert_eq!(cd["on"]["push"]["branches"], serde_json::json!(["main"]));
    let jobs = jobs(cd);

    // Every job running ferry checks out the full history, so that both revisions of a
    // pull request (and github.event.before, for the rollback) are in the repository.
    for (id, job) in jobs {
        if scripts(job).any(|s| s.contains("ferry ")) {
            let checkout = steps(job)
                .iter()
                .find(|s| {
                    s["uses"]
                        .as_str()
                        .is_some_and(|u| u.starts_with("actions/checkout@"))
                })
                .unwrap_or_else(|| panic!("job {id}: no checkout"));
            assert_eq!(checkout["with"]["fetch-depth"], 0, "job {id}");
        }
    }

    let preview = &jobs["preview"];
    assert_eq!(preview["if"], "github.event_name == 'pull_request'");
    let diff = scripts(preview)
        .find(|s| s.contains("ferry diff"))
        .expect("the preview runs ferry diff");
    assert!(diff.contains("--revision ${{ github.event.pull_request.head.sha }}"));
    assert!(diff.contains("--against ${{ github.event.pull_request.base.sha }}"));
    assert!(diff.contains("$GITHUB_STEP_SUMMARY"));
    assert!(actions(preview).contains(&"actions/github-script"));
    assert_eq!(preview["permissions"]["pull-requests"], "write");

    // One deploy job per app, in promotion order, production behind an approval.
    let deployer = |app: &str| -> &str {
        let found: Vec<&str> = jobs
            .iter()
            .filter(|(_, job)| {
                scripts(job).any(|s| {
                    invocations(s).iter().any(|i| {
                        i.sub == "apply" && i.positional.first().map(String::as_str) == Some(app)
                    })
                })
            })
            .map(|(id, _)| id.as_str())
            .collect();
        assert_eq!(found.len(), 1, "{app} is applied by one job: {found:?}");
        found[0]
    };
    let [dev, staging, production] = ["llm-dev", "llm-staging", "llm-production"].map(deployer);
    for (job, env) in [
        (dev, "dev"),
        (staging, "staging"),
        (production, "production"),
    ] {
        // A job is skipped when a job it needs was: the condition may sit on dev only.
        let mut gate = job;
        while jobs[gate]["if"].is_null() {
            gate = needs(&jobs[gate])
                .first()
                .unwrap_or_else(|| panic!("job {job} runs on pull requests too"));
        }
        assert_eq!(
            jobs[gate]["if"], "github.event_name == 'push'",
            "job {job} deploys on push (to main) only"
        );
        assert_eq!(
            environment(&jobs[job]),
            Some(env),
            "job {job} runs in GitHub environment {env}"
        );
    }
    assert_eq!(needs(&jobs[staging]), [dev]);
    assert_eq!(needs(&jobs[production]), [staging]);

    // Every app of ferry.yaml is previewed and deployed.
    let apps: Vec<String> = ferry_file().apps.into_iter().map(|a| a.name).collect();
    assert_eq!(apps, ["llm-dev", "llm-staging", "llm-production"]);
    for app in &apps {
        assert!(diff.contains(app.as_str()), "the preview covers {app}");
    }
}

#[test]
fn ferry_yaml_declares_the_three_environments() {
    let file = ferry_file();
    assert_eq!(file.apps.len(), 3);
    for (app, env) in file.apps.iter().zip(["dev", "staging", "production"]) {
        assert_eq!(app.name, format!("llm-{env}"));
        let spec = &app.spec;
        assert_eq!(spec.source.repo, ".");
        assert_eq!(spec.source.path, format!("infra/{env}"));
        assert!(
            example()
                .join(&spec.source.path)
                .join("kustomization.yaml")
                .is_file(),
            "{}: {} is a Kustomize overlay",
            app.name,
            spec.source.path
        );
        assert_eq!(
            spec.destination.namespace.as_deref(),
            Some(format!("llm-{env}").as_str())
        );
        assert!(spec.destination.create_namespace, "{}", app.name);
        assert!(spec.prune && spec.wait.enabled, "{}", app.name);
    }
}

/// One `ferry …` command found in a shell script.
#[derive(Debug)]
struct Invocation {
    /// The command, for messages.
    line: String,
    /// The subcommand, e.g. `diff`.
    sub: String,
    /// Flags as written (`--file`, `-f`); `--flag=value` gives `--flag`.
    flags: Vec<String>,
    /// The arguments after the subcommand, redirections dropped: `(flag, None)` for a
    /// flag, `(flag, Some(word))` for a word right after a flag (its value, unless the
    /// flag is a switch), `("", Some(word))` for any other word.
    words: Vec<(String, Option<String>)>,
    /// Positional arguments, taking every flag for a switch; [`check_invocation`] works
    /// them out again from the help text.
    positional: Vec<String>,
}

/// Shell words of a script, outside quotes split at blanks and operators; quotes are
/// removed; `${{ expr }}` stays one word. Operators and newlines become `;`. Comments are
/// dropped. Good enough for the workflow scripts, not a shell.
fn shell_words(script: &str) -> Vec<String> {
    let script = script.replace("\\\n", " ");
    let mut text = String::new();
    // GitHub expressions as one word, without blanks.
    let mut rest = script.as_str();
    while let Some(start) = rest.find("${{") {
        text.push_str(&rest[..start]);
        let end = rest[start..].find("}}").expect("unclosed ${{") + start + 2;
        text.push_str(
            &rest[start..end]
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect::<String>(),
        );
        rest = &rest[end..];
    }
    text.push_str(rest);

    let mut words = Vec::new();
    let mut word = String::new();
    let mut quote: Option<char> = None;
    let mut chars = text.chars().peekable();
    let flush = |word: &mut String, words: &mut Vec<String>| {
        if !word.is_empty() {
            words.push(std::mem::take(word));
        }
    };
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('"'), '\\') => {
                if let Some(n) = chars.next() {
                    word.push(n);
                }
            }
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                // An empty quoted word still is a word.
                if word.is_empty() && chars.peek() == Some(&c) {
                    word.push('\u{0}');
                }
            }
            (None, '#') if word.is_empty() => {
                for n in chars.by_ref() {
                    if n == '\n' {
                        break;
                    }
                }
                flush(&mut word, &mut words);
                words.push(";".into());
            }
            (None, c) if c.is_whitespace() => {
                flush(&mut word, &mut words);
                if c == '\n' {
                    words.push(";".into());
                }
            }
            (None, ';' | '|' | '&' | '(' | ')' | '`' | '{' | '}')
                if !(c == '&' && word.ends_with('>'))
                    && !(c == '{' && (word.ends_with('$') || word.ends_with("${")))
                    && !(c == '}' && word.contains("${")) =>
            {
                if c == '(' && word.ends_with('$') {
                    word.pop();
                }
                flush(&mut word, &mut words);
                words.push(";".into());
            }
            (None, c) => word.push(c),
        }
    }
    assert!(quote.is_none(), "unclosed quote in {script}");
    flush(&mut word, &mut words);
    words.retain(|w| w != "\u{0}");
    words
}

/// Whether `word` is a redirection; the second value says whether it needs the next word
/// as its target (`>` file) or carries it (`2>/dev/null`, `2>&1`).
fn redirection(word: &str) -> Option<bool> {
    let rest = word.trim_start_matches(|c: char| c.is_ascii_digit() || c == '&');
    let target = rest
        .strip_prefix(">>")
        .or_else(|| rest.strip_prefix('>'))
        .or_else(|| rest.strip_prefix('<'))?;
    Some(target.is_empty())
}

/// The `ferry` commands of a script: simple commands whose command word is `ferry`.
fn invocations(script: &str) -> Vec<Invocation> {
    const SKIP: [&str; 11] = [
        "if", "then", "else", "elif", "do", "while", "until", "!", "time", "exec", "command",
    ];
    let words = shell_words(script);
    let mut out = Vec::new();
    for command in words.split(|w| w == ";") {
        let mut command = command.iter().peekable();
        while command
            .peek()
            .is_some_and(|w| SKIP.contains(&w.as_str()) || is_assignment(w))
        {
            command.next();
        }
        if command.next().map(String::as_str) != Some("ferry") {
            continue;
        }
        let args: Vec<&String> = command.collect();
        let line = format!(
            "ferry {}",
            args.iter()
                .map(|a| a.as_str())
                .collect::<Vec<_>>()
                .join(" ")
        );
        let sub = args
            .first()
            .filter(|a| !a.starts_with('-'))
            .unwrap_or_else(|| panic!("`{line}`: no subcommand"))
            .to_string();
        let mut flags = Vec::new();
        let mut words = Vec::new();
        let mut iter = args[1..].iter();
        while let Some(arg) = iter.next() {
            if let Some(needs_target) = redirection(arg) {
                if needs_target {
                    iter.next();
                }
            } else if arg.starts_with('-') {
                let flag = arg.split('=').next().unwrap().to_string();
                words.push((flag.clone(), None));
                flags.push(flag);
            } else if let Some((flag, None)) = words.last().cloned() {
                // Maybe the value of the flag before; decided once help is known.
                words.push((flag, Some(arg.to_string())));
            } else {
                words.push((String::new(), Some(arg.to_string())));
            }
        }
        out.push(Invocation {
            line,
            sub,
            flags,
            words,
            positional: Vec::new(),
        });
    }
    // Positional arguments assuming every flag before a word is a switch, refined by
    // `check_invocation` with the help text.
    for inv in &mut out {
        inv.positional = positional(&inv.words, |_| false);
    }
    out
}

fn is_assignment(word: &str) -> bool {
    word.split_once('=').is_some_and(|(name, _)| {
        !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    })
}

/// Positional words, given which flags take a value.
fn positional(
    words: &[(String, Option<String>)],
    takes_value: impl Fn(&str) -> bool,
) -> Vec<String> {
    words
        .iter()
        .filter_map(|(flag, value)| match value {
            Some(v) if flag.is_empty() || !takes_value(flag) => Some(v.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn shell_words_find_ferry_commands() {
    let script = r#"
# ferry apply x: a comment, not a command
echo "ferry diff: in a string"
rc=0; FOO=1 ferry diff "$app" -f ferry.yaml \
  --revision ${{ github.event.pull_request.head.sha }} > "$RUNNER_TEMP/$app.diff" 2> err || rc=$?
if ! ferry apply llm-dev --timeout=3m 2>&1 | tee log; then out=$(ferry version); fi
"#;
    let found = invocations(script);
    let summary: Vec<(&str, &[String], &[String])> = found
        .iter()
        .map(|i| (i.sub.as_str(), &i.flags[..], &i.positional[..]))
        .collect();
    assert_eq!(
        summary,
        [
            (
                "diff",
                &["-f".to_string(), "--revision".to_string()][..],
                &[
                    "$app".to_string(),
                    "ferry.yaml".to_string(),
                    "${{github.event.pull_request.head.sha}}".to_string()
                ][..]
            ),
            (
                "apply",
                &["--timeout".to_string()][..],
                &["llm-dev".to_string()][..]
            ),
            ("version", &[][..], &[][..]),
        ]
    );
}

/// `ferry <sub> --help`, by subcommand.
fn help(cache: &mut HashMap<String, String>, sub: &str) -> String {
    cache
        .entry(sub.to_string())
        .or_insert_with(|| {
            let out = Command::new(ferry_bin())
                .args([sub, "--help"])
                .env("NO_COLOR", "1")
                .output()
                .expect("running ferry");
            assert!(
                out.status.success(),
                "`ferry {sub} --help` failed: there is no subcommand {sub:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap()
        })
        .clone()
}

/// Whether `help` has an option line for `flag` (`  -f, --file <FILE>`), and if so
/// whether the option takes a value.
fn documented(help: &str, flag: &str) -> Option<bool> {
    help.lines()
        .map(str::trim_start)
        .filter(|line| line.starts_with('-'))
        .find_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            let names = words
                .iter()
                .take_while(|w| w.starts_with('-'))
                .map(|w| w.trim_end_matches(',').trim_end_matches("..."));
            let takes_value = words
                .iter()
                .any(|w| w.starts_with('<') || w.starts_with('['));
            names.clone().any(|n| n == flag).then_some(takes_value)
        })
}

/// Checks one invocation against the binary's help and the example; returns its
/// positional arguments.
fn check_invocation(
    inv: &Invocation,
    cache: &mut HashMap<String, String>,
    apps: &[String],
) -> Vec<String> {
    let help = help(cache, &inv.sub);
    let mut values = HashMap::new();
    for flag in &inv.flags {
        let takes_value = documented(&help, flag).unwrap_or_else(|| {
            panic!(
                "`{}`: ferry {} has no flag {flag}; its help:\n{help}",
                inv.line, inv.sub
            )
        });
        values.insert(flag.clone(), takes_value);
    }
    for (i, (flag, value)) in inv.words.iter().enumerate() {
        if !flag.is_empty() && values[flag] && value.is_none() {
            // A value-taking flag is followed by its value, or written --flag=value.
            let next = inv.words.get(i + 1);
            let inline = inv
                .line
                .split_whitespace()
                .any(|w| w.starts_with(&format!("{flag}=")));
            assert!(
                inline || next.is_some_and(|(f, v)| f == flag && v.is_some()),
                "`{}`: {flag} needs a value",
                inv.line
            );
        }
        if matches!(flag.as_str(), "-f" | "--file")
            && let Some(file) = value
        {
            assert!(
                example().join(file).is_file(),
                "`{}`: {file} does not exist in the example",
                inv.line
            );
        }
    }
    let positional = positional(&inv.words, |f| values[f]);
    if ["diff", "apply", "render"].contains(&inv.sub.as_str()) {
        let app = positional
            .first()
            .unwrap_or_else(|| panic!("`{}`: name the app", inv.line));
        assert!(
            app.starts_with('$') || apps.contains(app),
            "`{}`: no app {app} in ferry.yaml ({apps:?})",
            inv.line
        );
        assert!(positional.len() == 1, "`{}`: one app only", inv.line);
        assert!(
            inv.flags.iter().any(|f| f == "-f" || f == "--file"),
            "`{}`: name ferry.yaml with -f",
            inv.line
        );
    }
    positional
}

#[test]
fn ferry_commands_use_existing_subcommands_and_flags() {
    let apps: Vec<String> = ferry_file().apps.into_iter().map(|a| a.name).collect();
    let mut cache = HashMap::new();
    let mut seen = BTreeSet::new();
    for (file, workflow) in workflows() {
        for (id, job) in jobs(&workflow) {
            for script in scripts(job) {
                for inv in invocations(script) {
                    let positional = check_invocation(&inv, &mut cache, &apps);
                    let flags: BTreeSet<&str> = inv.flags.iter().map(String::as_str).collect();
                    seen.insert(format!(
                        "{file} {id}: ferry {} {} {}",
                        inv.sub,
                        positional.join(" "),
                        flags.into_iter().collect::<Vec<_>>().join(" ")
                    ));
                }
            }
        }
    }
    // What the workflows run, so a change to them (or to the script parser) shows here.
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        [
            "cd.yaml deploy-dev: ferry apply llm-dev --revision --timeout -f",
            "cd.yaml deploy-dev: ferry cluster-info  ",
            "cd.yaml deploy-dev: ferry diff llm-dev --revision -f",
            "cd.yaml deploy-production: ferry apply llm-production --revision --timeout -f",
            "cd.yaml deploy-production: ferry diff llm-production --revision -f",
            "cd.yaml deploy-staging: ferry apply llm-staging --revision --timeout -f",
            "cd.yaml deploy-staging: ferry diff llm-staging --revision -f",
            "cd.yaml preview: ferry diff $app --against --revision -f",
            "cd.yaml preview: ferry version  ",
        ]
    );
}

/// The kustomize binary for the preview test: `FERRY_KUSTOMIZE`, else the test bed's
/// (`$FERRY_TESTBED_BIN`, `${FERRY_CACHE:-~/.cache/ferry}/testbed/*/bin`), else `PATH`.
fn kustomize() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("FERRY_KUSTOMIZE").filter(|p| !p.is_empty()) {
        return Some(path.into());
    }
    let testbed = if let Some(bin) = std::env::var_os("FERRY_TESTBED_BIN") {
        Some(Path::new(&bin).join("kustomize")).filter(|p| p.is_file())
    } else {
        std::env::var_os("FERRY_CACHE")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/ferry")))
            .and_then(|cache| std::fs::read_dir(cache.join("testbed")).ok())
            .and_then(|dirs| {
                dirs.flatten()
                    .map(|e| e.path().join("bin/kustomize"))
                    .filter(|p| p.is_file())
                    .max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok())
            })
    };
    testbed.or_else(|| {
        std::env::split_paths(&std::env::var_os("PATH")?)
            .map(|d| d.join("kustomize"))
            .find(|p| p.is_file())
    })
}

/// Copies the example into `to`, without Python caches.
fn copy_example(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if ["__pycache__", ".pytest_cache"].contains(&name.to_str().unwrap()) {
            continue;
        }
        let target = to.join(&name);
        if entry.file_type().unwrap().is_dir() {
            copy_example(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Replaces `${{ expr }}` with `values[expr]`; an unknown expression fails the test.
fn expand(script: &str, values: &HashMap<&str, &str>) -> String {
    let mut out = String::new();
    let mut rest = script;
    while let Some(start) = rest.find("${{") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find("}}").unwrap() + start;
        let expr = rest[start + 3..end].trim();
        out.push_str(
            values
                .get(expr)
                .unwrap_or_else(|| panic!("no value for ${{{{ {expr} }}}}")),
        );
        rest = &rest[end + 2..];
    }
    out.push_str(rest);
    out
}

#[test]
fn pull_request_preview_step_runs_offline() {
    let Some(kustomize) = kustomize() else {
        let message = "kustomize not found: run testbed/build.sh or set FERRY_KUSTOMIZE";
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{message}");
        eprintln!("note: skipping test, {message}");
        return;
    };
    // The example as its own repository: the base commit, then a pull request that
    // promotes image 0.2.1 to production.
    let repo = TestRepo::new();
    copy_example(&example(), repo.dir());
    let base = repo.commit("llm-app");
    let overlay = repo.dir().join("infra/production/kustomization.yaml");
    let text = std::fs::read_to_string(&overlay).unwrap();
    assert!(text.contains("newTag: 0.2.0"));
    std::fs::write(&overlay, text.replace("newTag: 0.2.0", "newTag: 0.2.1")).unwrap();
    let head = repo.commit("production: 0.2.1");

    let workflows = workflows();
    let step = steps(&jobs(&workflows["cd.yaml"])["preview"])
        .iter()
        .find(|s| s["id"] == "diff")
        .expect("the preview's diff step");
    let script = expand(
        step["run"].as_str().unwrap(),
        &HashMap::from([
            ("github.event.pull_request.head.sha", head.as_str()),
            ("github.event.pull_request.base.sha", base.as_str()),
        ]),
    );

    let runner = tempfile::tempdir().unwrap();
    let summary = runner.path().join("summary.md");
    let bin_dir = ferry_bin().parent().unwrap();
    let path = std::env::join_paths([bin_dir.to_path_buf()].into_iter().chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .unwrap();
    let out = Command::new("bash")
        .args(["--noprofile", "--norc", "-eo", "pipefail", "-c", &script])
        .current_dir(repo.dir())
        .env("PATH", &path)
        .env("FERRY_KUSTOMIZE", &kustomize)
        .env("FERRY_CACHE", runner.path().join("cache"))
        .env("KUBECONFIG", "/dev/null")
        .env("NO_COLOR", "1")
        .env("RUNNER_TEMP", runner.path())
        .env("GITHUB_STEP_SUMMARY", &summary)
        .output()
        .expect("running bash");
    let log = format!(
        "--- stdout:\n{}--- stderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "the diff step failed:\n{log}");
    let summary = std::fs::read_to_string(&summary).unwrap();
    let comment = std::fs::read_to_string(repo.dir().join("diff.md")).unwrap();
    assert_eq!(summary, comment, "the comment is the summary");
    assert!(summary.starts_with("<!-- ferry-diff -->\n"), "{summary}");
    assert!(
        summary.contains(&format!("`{base}` (base) → `{head}` (this pull request)")),
        "{summary}"
    );
    assert!(summary.contains("**llm-dev**: no changes"), "{summary}");
    assert!(summary.contains("**llm-staging**: no changes"), "{summary}");
    assert!(
        summary.contains(
            "<summary><b>llm-production</b>: 0 to create, 1 to update, 0 to prune, 4 unchanged</summary>"
        ),
        "{summary}"
    );
    assert!(
        summary.contains("-        image: registry.example/llm-app:0.2.0\n+        image: registry.example/llm-app:0.2.1\n"),
        "{summary}"
    );

    // A broken revision makes the step fail and says why, per app.
    let script = expand(
        step["run"].as_str().unwrap(),
        &HashMap::from([
            ("github.event.pull_request.head.sha", head.as_str()),
            (
                "github.event.pull_request.base.sha",
                "0000000000000000000000000000000000000000",
            ),
        ]),
    );
    let out = Command::new("bash")
        .args(["--noprofile", "--norc", "-eo", "pipefail", "-c", &script])
        .current_dir(repo.dir())
        .env("PATH", &path)
        .env("FERRY_KUSTOMIZE", &kustomize)
        .env("FERRY_CACHE", runner.path().join("cache"))
        .env("KUBECONFIG", "/dev/null")
        .env("RUNNER_TEMP", runner.path())
        .env("GITHUB_STEP_SUMMARY", runner.path().join("summary2.md"))
        .output()
        .expect("running bash");
    assert_eq!(out.status.code(), Some(2));
    let comment = std::fs::read_to_string(repo.dir().join("diff.md")).unwrap();
    assert!(
        comment.contains(
            "**llm-production**: :x: `error: --against 0000000000000000000000000000000000000000"
        ),
        "{comment}"
    );
}
