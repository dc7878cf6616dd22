//! App sets: one `ferry.yaml` entry that turns every directory matching a pattern into
//! an app, like Argo CD's ApplicationSet Git directory generator.
//!
//! This module is pure: it validates sets, matches directory paths against patterns and
//! expands a set's template for a list of directories. Listing the directories of a
//! checkout is `ferry_engine::appset`'s job.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::app::{NamedApp, SpecError, is_dns_label};

/// The placeholder replaced by a directory's base name, e.g. `qa` for `infra/qa`.
pub const DIR_PLACEHOLDER: &str = "{{dir}}";
/// The placeholder replaced by a directory's path from the repository root, e.g. `infra/qa`.
pub const PATH_PLACEHOLDER: &str = "{{path}}";

/// A set of apps generated from the directories of one repository.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AppSet {
    /// Set name: a DNS label, unique among the file's sets.
    pub name: String,
    /// Directories that become apps, relative to the repository root: an exact path
    /// (`infra/dev`) or a pattern where `*` and `?` match within one path component
    /// (`infra/*`). Hidden directories match only a component starting with `.`.
    pub directories: String,
    /// Directories (exact paths or patterns, like `directories`) that are not apps.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
    /// When a directory disappears from Git, the agent deletes its app's objects too
    /// (default false: the objects stay and only the app is forgotten).
    #[serde(default)]
    pub prune_on_remove: bool,
    /// The app each directory becomes: the fields of an `apps` entry, where every
    /// string may use `{{dir}}` (the directory's base name) and `{{path}}` (its path).
    /// `source.repo` and `source.ref` name the repository the directories are listed
    /// from, so they take no placeholders.
    pub template: NamedApp,
    /// How `ferry promote` copies image tags between directories (default: Kustomize
    /// `images:` entries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promote: Option<PromoteSpec>,
}

/// Settings of `ferry promote` for a set: copy Kustomize `images:` entries, or one Helm
/// values key.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PromoteSpec {
    /// Copy `newName`, `newTag` and `digest` of the `images:` entries of each directory's
    /// `kustomization.yaml`.
    #[serde(default)]
    pub kustomize_images: bool,
    /// Copy this dotted key of a Helm values file instead, e.g. `image.tag`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub helm_values_key: Option<String>,
    /// The values file, relative to each directory; `{{dir}}` is its base name
    /// (default `values.yaml`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values_file: Option<String>,
}

/// What `ferry promote` copies, resolved from a [`PromoteSpec`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PromoteMethod {
    /// The `images:` entries of `kustomization.yaml`.
    KustomizeImages,
    /// One key of a Helm values file.
    HelmValues {
        /// Dotted key, e.g. `image.tag`.
        key: String,
        /// File name relative to the directory, `{{dir}}` not yet replaced.
        file: String,
    },
}

impl AppSet {
    /// Whether the directory `path` (relative to the repository root) is one of the set's:
    /// it matches `directories` and no `exclude` entry.
    pub fn selects(&self, path: &str) -> bool {
        path_matches(&self.directories, path) && !self.exclude.iter().any(|e| path_matches(e, path))
    }

    /// What `ferry promote` copies for this set.
    pub fn promote_method(&self) -> PromoteMethod {
        match &self.promote {
            Some(PromoteSpec {
                helm_values_key: Some(key),
                values_file,
                ..
            }) => PromoteMethod::HelmValues {
                key: key.clone(),
                file: values_file.clone().unwrap_or_else(|| "values.yaml".into()),
            },
            _ => PromoteMethod::KustomizeImages,
        }
    }

    /// Checks the set without any directory: name, patterns, placeholders, the promote
    /// settings, and the template's fields with a sample directory. Returns the
    /// offending field and why.
    pub(crate) fn validate(&self) -> Result<(), (String, String)> {
        if !is_dns_label(&self.name) {
            return Err(("name".into(), "must be a DNS label (a-z, 0-9, -)".into()));
        }
        pattern_components(&self.directories).map_err(|m| ("directories".into(), m))?;
        for (i, e) in self.exclude.iter().enumerate() {
            pattern_components(e).map_err(|m| (format!("exclude[{i}]"), m))?;
        }
        let source = &self.template.spec.source;
        for (field, value) in [
            ("template.source.repo", Some(&source.repo)),
            ("template.source.ref", source.git_ref.as_ref()),
        ] {
            if value.is_some_and(|v| v.contains("{{")) {
                return Err((
                    field.into(),
                    "takes no placeholders: it names the repository the directories are listed from"
                        .into(),
                ));
            }
        }
        if let Some(p) = &self.promote {
            match (p.kustomize_images, &p.helm_values_key) {
                (true, Some(_)) => {
                    return Err((
                        "promote".into(),
                        "set either kustomizeImages or helmValuesKey, not both".into(),
                    ));
                }
                (false, None) => {
                    return Err((
                        "promote".into(),
                        "set kustomizeImages: true or helmValuesKey".into(),
                    ));
                }
                (false, Some(key)) if key.split('.').any(str::is_empty) => {
                    return Err((
                        "promote.helmValuesKey".into(),
                        format!("{key:?} is not a dotted key such as image.tag"),
                    ));
                }
                _ => {}
            }
            if p.values_file.is_some() && p.helm_values_key.is_none() {
                return Err(("promote.valuesFile".into(), "needs helmValuesKey".into()));
            }
            if let Some(file) = &p.values_file {
                let sample =
                    fill_placeholders(file, "x").map_err(|m| ("promote.valuesFile".into(), m))?;
                if sample.starts_with('/') || sample.split('/').any(|c| c == "..") {
                    return Err((
                        "promote.valuesFile".into(),
                        "must stay inside the directory".into(),
                    ));
                }
            }
        }
        // The template with a sample directory: catches unknown placeholders and invalid
        // values that do not depend on the directory.
        let sample = self.directories.replace(['*', '?'], "x");
        let app = instantiate(&self.template, &sample)
            .map_err(|(field, m)| (format!("template.{field}"), m))?;
        app.spec
            .validate()
            .map_err(|(field, m)| (format!("template.{field}"), m))?;
        Ok(())
    }
}

/// Expands `set` for `dirs` (paths relative to the repository root, as listed from a
/// checkout): directories the set does not select are skipped, the rest become apps
/// sorted by path, with `{{dir}}` and `{{path}}` replaced in every string of the
/// template. Each generated app must have a DNS-label name, unique in the set, and
/// valid fields; an error names the set and the directory.
pub fn expand(set: &AppSet, dirs: &[String]) -> Result<Vec<NamedApp>, SpecError> {
    let mut dirs: Vec<&str> = dirs
        .iter()
        .map(|d| d.trim_end_matches('/'))
        .filter(|d| set.selects(d))
        .collect();
    dirs.sort_unstable();
    dirs.dedup();
    let mut apps: Vec<NamedApp> = Vec::with_capacity(dirs.len());
    for dir in dirs {
        let invalid = |field: String, message: String| SpecError::Invalid {
            location: format!("app set {:?} directory {dir:?}", set.name),
            field,
            message,
        };
        let app = instantiate(&set.template, dir).map_err(|(f, m)| invalid(f, m))?;
        if !is_dns_label(&app.name) {
            return Err(invalid(
                "name".into(),
                format!("{:?} is not a DNS label (a-z, 0-9, -)", app.name),
            ));
        }
        if let Some(other) = apps.iter().find(|a| a.name == app.name) {
            return Err(invalid(
                "name".into(),
                format!(
                    "{:?} is generated for another directory too ({})",
                    app.name, other.spec.source.path
                ),
            ));
        }
        app.spec.validate().map_err(|(f, m)| invalid(f, m))?;
        apps.push(app);
    }
    Ok(apps)
}

/// The template with `{{dir}}` and `{{path}}` replaced for the directory `path`.
fn instantiate(template: &NamedApp, path: &str) -> Result<NamedApp, (String, String)> {
    let dir = base_name(path);
    let name = substitute(&template.name, dir, path).map_err(|m| ("name".to_string(), m))?;
    let mut spec = serde_json::to_value(&template.spec)
        .map_err(|e| (String::new(), format!("cannot copy the template: {e}")))?;
    substitute_strings(&mut spec, dir, path, &mut Vec::new())?;
    let spec = serde_json::from_value(spec)
        .map_err(|e| (String::new(), format!("cannot copy the template: {e}")))?;
    Ok(NamedApp { name, spec })
}

/// Replaces placeholders in every string inside `value`; `at` is the field path so far.
fn substitute_strings(
    value: &mut serde_json::Value,
    dir: &str,
    path: &str,
    at: &mut Vec<String>,
) -> Result<(), (String, String)> {
    match value {
        serde_json::Value::String(s) => {
            *s = substitute(s, dir, path).map_err(|m| (at.join("."), m))?;
        }
        serde_json::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let last = at.pop().unwrap_or_default();
                at.push(format!("{last}[{i}]"));
                let result = substitute_strings(item, dir, path, at);
                at.pop();
                at.push(last);
                result?;
            }
        }
        serde_json::Value::Object(map) => {
            for (key, item) in map.iter_mut() {
                at.push(key.clone());
                let result = substitute_strings(item, dir, path, at);
                at.pop();
                result?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Replaces `{{dir}}` and `{{path}}` in `text` for the directory `path` (relative to the
/// repository root), as in a set's template; any other `{{…}}` is an error.
pub fn fill_placeholders(text: &str, path: &str) -> Result<String, String> {
    substitute(text, base_name(path), path)
}

/// The last component of a directory path: what `{{dir}}` stands for.
pub fn base_name(path: &str) -> &str {
    let path = path.trim_end_matches('/');
    path.rsplit('/').next().unwrap_or(path)
}

/// Replaces `{{dir}}` and `{{path}}` (spaces inside the braces allowed) in `text`;
/// any other `{{…}}` is an error.
fn substitute(text: &str, dir: &str, path: &str) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| format!("unclosed placeholder in {text:?}"))?;
        match after[..end].trim() {
            "dir" => out.push_str(dir),
            "path" => out.push_str(path),
            other => {
                return Err(format!(
                    "unknown placeholder {{{{{other}}}}} in {text:?} (use {DIR_PLACEHOLDER} or {PATH_PLACEHOLDER})"
                ));
            }
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Splits a directory pattern into its path components, rejecting what cannot name a
/// directory inside the repository: an empty or absolute pattern, `..`, `**`, a backslash.
/// `.` components are dropped.
pub fn pattern_components(pattern: &str) -> Result<Vec<&str>, String> {
    if pattern.starts_with('/') {
        return Err(format!(
            "{pattern:?} must be relative to the repository root"
        ));
    }
    if pattern.contains('\\') {
        return Err(format!("{pattern:?}: use / to separate directories"));
    }
    let components: Vec<&str> = pattern
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    if components.is_empty() {
        return Err(format!("{pattern:?} names no directory"));
    }
    if components.contains(&"..") {
        return Err(format!("{pattern:?} leaves the repository (\"..\")"));
    }
    if components.iter().any(|c| c.contains("**")) {
        return Err(format!(
            "{pattern:?}: ** is not supported; * matches within one directory level"
        ));
    }
    Ok(components)
}

/// Whether `path` (components separated by `/`) matches `pattern` component by component.
pub fn path_matches(pattern: &str, path: &str) -> bool {
    let Ok(pattern) = pattern_components(pattern) else {
        return false;
    };
    let path: Vec<&str> = path
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    pattern.len() == path.len()
        && pattern
            .iter()
            .zip(&path)
            .all(|(p, c)| component_matches(p, c))
}

/// Whether one path component `name` matches the pattern component `pattern`: `*`
/// matches any run of characters and `?` one character; a leading `.` must be matched
/// literally (as in a shell).
pub fn component_matches(pattern: &str, name: &str) -> bool {
    if name.starts_with('.') && !pattern.starts_with('.') {
        return false;
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // Iterative wildcard matching with backtracking to the last `*`.
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ni));
                pi += 1;
            }
            Some(&c) if c == '?' || c == n[ni] => {
                pi += 1;
                ni += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    pi = sp + 1;
                    ni = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Whether a pattern has wildcards (otherwise it is an exact path).
pub fn is_pattern(pattern: &str) -> bool {
    pattern.contains(['*', '?'])
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::app::FerryFile;

    const FILE: &str = r#"
appSets:
  - name: llm
    directories: "infra/*"
    exclude: ["infra/base"]
    pruneOnRemove: true
    template:
      name: "llm-{{dir}}"
      source:
        repo: .
        path: "{{path}}"
        vars: {ENV: "{{ dir }}", WHERE: "{{path}}/x"}
        helm:
          valuesFiles: ["values-{{dir}}.yaml"]
          values: {env: {name: "{{dir}}"}, list: ["{{dir}}", 3]}
      destination: {namespace: "llm-{{dir}}", createNamespace: true}
    promote:
      kustomizeImages: true
"#;

    fn parse_set(text: &str) -> AppSet {
        FerryFile::parse(text, Path::new("ferry.yaml"))
            .unwrap()
            .app_sets
            .remove(0)
    }

    fn dirs(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn expands_placeholders_in_every_string() {
        let set = parse_set(FILE);
        assert!(set.prune_on_remove);
        let apps = expand(&set, &dirs(&["infra/staging", "infra/base", "infra/dev/"])).unwrap();
        let names: Vec<&str> = apps.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["llm-dev", "llm-staging"]);
        let dev = &apps[0].spec;
        assert_eq!(dev.source.path, "infra/dev");
        assert_eq!(dev.source.vars["ENV"], "dev");
        assert_eq!(dev.source.vars["WHERE"], "infra/dev/x");
        assert_eq!(dev.destination.namespace.as_deref(), Some("llm-dev"));
        assert!(dev.destination.create_namespace);
        let helm = dev.source.helm.as_ref().unwrap();
        assert_eq!(helm.values_files, ["values-dev.yaml"]);
        assert_eq!(
            helm.values.as_ref().unwrap(),
            &serde_json::json!({"env": {"name": "dev"}, "list": ["dev", 3]})
        );
        // Defaults survive the round trip through the template.
        assert!(dev.prune && dev.self_heal && dev.wait.enabled);
        assert_eq!(dev.source.repo, ".");
    }

    #[test]
    fn selects_patterns_exact_paths_and_excludes() {
        let set = parse_set(FILE);
        assert!(set.selects("infra/qa"));
        assert!(!set.selects("infra/base"));
        assert!(!set.selects("infra"));
        assert!(!set.selects("infra/qa/sub"));
        assert!(!set.selects("infra/.hidden"));
        assert!(!set.selects("other/qa"));
        let exact = parse_set(&FILE.replace("\"infra/*\"", "infra/dev"));
        assert_eq!(
            expand(&exact, &dirs(&["infra/dev", "infra/qa"]))
                .unwrap()
                .len(),
            1
        );
        assert!(!is_pattern("infra/dev") && is_pattern("infra/*") && is_pattern("env-?"));
    }

    #[test]
    fn glob_components() {
        assert!(component_matches("*", "qa"));
        assert!(component_matches("env-*", "env-prod"));
        assert!(!component_matches("env-*", "prod"));
        assert!(component_matches("*-eu-*", "prod-eu-west"));
        assert!(component_matches("q?", "qa"));
        assert!(!component_matches("q?", "qaa"));
        assert!(component_matches("*a*b", "xxaxxb"));
        assert!(!component_matches("*a*b", "xxaxxbc"));
        assert!(!component_matches("*", ".git"));
        assert!(component_matches(".*", ".git"));
        assert_eq!(pattern_components("./infra//*/").unwrap(), ["infra", "*"]);
        for bad in [
            "/infra/*",
            "../x",
            "infra/../x",
            "",
            ".",
            "infra/**",
            "a\\b",
        ] {
            assert!(pattern_components(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn invalid_generated_names_name_the_directory() {
        let set = parse_set(FILE);
        let err = expand(&set, &dirs(&["infra/QA"])).unwrap_err().to_string();
        assert_eq!(
            err,
            "app set \"llm\" directory \"infra/QA\": field name: \"llm-QA\" is not a DNS label (a-z, 0-9, -)"
        );
        let err = expand(&set, &dirs(&["infra/my_env"]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("field name"), "{err}");
        // A name without {{dir}} collides as soon as two directories match.
        let fixed = parse_set(&FILE.replace("\"llm-{{dir}}\"", "llm"));
        let err = expand(&fixed, &dirs(&["infra/a", "infra/b"]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("generated for another directory too (infra/a)"),
            "{err}"
        );
    }

    #[test]
    fn invalid_sets_are_rejected_at_parse() {
        let cases = [
            (
                FILE.replace("name: llm\n", "name: LLM\n"),
                "app set \"LLM\": field name:",
            ),
            (
                FILE.replace("\"infra/*\"", "\"../*\""),
                "field directories:",
            ),
            (
                FILE.replace("[\"infra/base\"]", "[\"/abs\"]"),
                "field exclude[0]:",
            ),
            (
                FILE.replace("repo: .", "repo: \"{{dir}}\""),
                "field template.source.repo: takes no placeholders",
            ),
            (
                FILE.replace("\"{{path}}\"\n", "\"{{paths}}\"\n"),
                "field template.source.path: unknown placeholder {{paths}}",
            ),
            (
                FILE.replace(
                    "createNamespace: true}",
                    "createNamespace: true}\n      wait: {timeout: soon}",
                ),
                "field template.wait.timeout:",
            ),
            (
                FILE.replace(
                    "kustomizeImages: true",
                    "kustomizeImages: true\n      helmValuesKey: image.tag",
                ),
                "field promote: set either",
            ),
            (
                FILE.replace(
                    "kustomizeImages: true",
                    "valuesFile: v.yaml\n      kustomizeImages: true",
                ),
                "field promote.valuesFile: needs helmValuesKey",
            ),
            (
                FILE.replace("pruneOnRemove", "pruneOnRemoval"),
                "pruneOnRemoval",
            ),
        ];
        for (text, expected) in cases {
            let err = FerryFile::parse(&text, Path::new("ferry.yaml"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{err:?} lacks {expected:?}");
            assert!(err.starts_with("ferry.yaml"), "{err}");
        }
        let dup = FILE.replace("appSets:\n", "appSets:\n  - name: llm\n    directories: x\n    template: {name: x, source: {repo: .}}\n");
        let err = FerryFile::parse(&dup, Path::new("f.yaml")).unwrap_err();
        assert!(err.to_string().contains("duplicate app set name"), "{err}");
    }

    #[test]
    fn promote_methods() {
        assert_eq!(
            parse_set(FILE).promote_method(),
            PromoteMethod::KustomizeImages
        );
        let none = parse_set(&FILE.replace("    promote:\n      kustomizeImages: true\n", ""));
        assert_eq!(none.promote_method(), PromoteMethod::KustomizeImages);
        let helm = parse_set(&FILE.replace(
            "kustomizeImages: true",
            "helmValuesKey: image.tag\n      valuesFile: \"values-{{dir}}.yaml\"",
        ));
        assert_eq!(
            helm.promote_method(),
            PromoteMethod::HelmValues {
                key: "image.tag".into(),
                file: "values-{{dir}}.yaml".into()
            }
        );
    }

    #[test]
    fn substitution() {
        assert_eq!(
            substitute("a-{{dir}}-{{ path }}", "qa", "infra/qa").unwrap(),
            "a-qa-infra/qa"
        );
        assert_eq!(substitute("${X} {x}", "d", "p").unwrap(), "${X} {x}");
        assert!(
            substitute("{{dir", "d", "p")
                .unwrap_err()
                .contains("unclosed")
        );
        assert!(
            substitute("{{env}}", "d", "p")
                .unwrap_err()
                .contains("unknown placeholder {{env}}")
        );
    }
}
