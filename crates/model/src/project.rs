//! Projects: what the apps of one team may deploy, from where, and as whom. The same
//! schema is the spec of the `Project` custom resource (`projects.ferry.dev`) and an entry
//! of `ferry.yaml`'s `projects:` section.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The project an app belongs to when it names none.
pub const DEFAULT_PROJECT: &str = "default";

/// A kind, by API group and kind, each a glob (`*` any run of characters, `?` one).
/// The core group is `""`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KindPattern {
    /// API group glob (`""` is the core group, `*` any group).
    #[serde(default)]
    pub group: String,
    /// Kind glob (`ClusterRole`, `*`).
    pub kind: String,
}

impl KindPattern {
    /// Whether the kind `kind` of API group `group` matches.
    pub fn matches(&self, group: &str, kind: &str) -> bool {
        glob_match(&self.group, group) && glob_match(&self.kind, kind)
    }
}

impl std::fmt::Display for KindPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.group.as_str() {
            "" => write!(f, "{}", self.kind),
            group => write!(f, "{group}/{}", self.kind),
        }
    }
}

/// A project: the bounds of the apps that name it. Lists left out allow nothing
/// (`clusterResources` none, `sourceNamespaces` no `Application` resource), except
/// `namespacedResourceDenylist`, which denies nothing.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProjectSpec {
    /// What the project is for.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Repository URL globs an app's `source.repo` (and `source.helm.repo`) must match,
    /// e.g. `https://git.example.com/team-a/*` (`*` matches `/` too).
    #[serde(default)]
    pub source_repos: Vec<String>,
    /// Namespace globs every namespaced object (and `destination.namespace`) must match.
    #[serde(default)]
    pub destinations: Vec<String>,
    /// Cluster-scoped kinds the apps may deploy (none when left out).
    #[serde(default)]
    pub cluster_resources: Vec<KindPattern>,
    /// Namespaced kinds the apps may not deploy.
    #[serde(default)]
    pub namespaced_resource_denylist: Vec<KindPattern>,
    /// The service account (`namespace/name`) that dry-runs, applies, prunes and reads
    /// the apps' objects (the agent impersonates it); without one, ferry's own identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
    /// Namespace globs of the `Application` resources that may name this project
    /// (apps of a `ferry.yaml` may name any project).
    #[serde(default)]
    pub source_namespaces: Vec<String>,
    /// Where the agent reports the project's apps' sync outcomes, health and drift
    /// (besides the `ferry.yaml`'s top-level receivers).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notifications: Vec<crate::notify::NotificationSpec>,
}

impl ProjectSpec {
    /// The project `default` is when no one defines it: everything allowed, applied
    /// with ferry's own identity (so `ferry.yaml` apps without `project` work as before).
    pub fn permissive() -> Self {
        let any = vec!["*".to_string()];
        Self {
            description: "built-in: everything allowed".into(),
            source_repos: any.clone(),
            destinations: any.clone(),
            cluster_resources: vec![KindPattern {
                group: "*".into(),
                kind: "*".into(),
            }],
            namespaced_resource_denylist: Vec::new(),
            service_account: None,
            source_namespaces: any,
            notifications: Vec::new(),
        }
    }

    /// The service account as (namespace, name).
    pub fn service_account(&self) -> Option<(&str, &str)> {
        self.service_account.as_deref()?.split_once('/')
    }

    /// Checks field values; returns the offending field and why.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if let Some(sa) = &self.service_account {
            let valid = sa
                .split_once('/')
                .is_some_and(|(ns, name)| crate::app::is_dns_label(ns) && is_dns_subdomain(name));
            if !valid {
                return Err((
                    "serviceAccount".into(),
                    format!("{sa:?} is not namespace/name"),
                ));
            }
        }
        for (field, globs) in [
            ("sourceRepos", &self.source_repos),
            ("destinations", &self.destinations),
            ("sourceNamespaces", &self.source_namespaces),
        ] {
            if globs.iter().any(|g| g.trim().is_empty()) {
                return Err((field.into(), "an entry is empty".into()));
            }
        }
        let kinds = [
            ("clusterResources", &self.cluster_resources),
            (
                "namespacedResourceDenylist",
                &self.namespaced_resource_denylist,
            ),
        ];
        for (field, kinds) in kinds {
            if kinds.iter().any(|k| k.kind.trim().is_empty()) {
                return Err((format!("{field}.kind"), "must not be empty".into()));
            }
        }
        crate::notify::validate_all(&self.notifications)
    }

    /// The checks of a `Project` resource beyond [`validate`](Self::validate): its
    /// receivers take tokens from Secrets only (a `tokenFile` is the agent's own file).
    pub fn validate_resource(&self) -> Result<(), (String, String)> {
        self.validate()?;
        match self
            .notifications
            .iter()
            .position(|n| n.token_file.is_some())
        {
            Some(i) => Err((
                format!("notifications[{i}].tokenFile"),
                "not allowed in a Project resource (only in ferry.yaml); use secretRef".into(),
            )),
            None => Ok(()),
        }
    }
}

/// A project with its name, as resolved for one app.
#[derive(Clone, Debug, PartialEq)]
pub struct Project {
    /// The project's name.
    pub name: String,
    /// Its bounds.
    pub spec: ProjectSpec,
}

/// A named project as listed in `ferry.yaml`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NamedProject {
    /// Project name: a DNS label, unique in the file.
    pub name: String,
    /// The project.
    #[serde(flatten)]
    pub spec: ProjectSpec,
}

/// The project `name`: a `Project` resource's spec (`resource`) wins over a `ferry.yaml`
/// entry (`file`); `default` defined by neither is [`ProjectSpec::permissive`]. `None`
/// when no one defines it.
pub fn resolve(
    name: &str,
    resource: Option<&ProjectSpec>,
    file: &[NamedProject],
) -> Option<Project> {
    let spec = match resource {
        Some(spec) => spec.clone(),
        None => match file.iter().find(|p| p.name == name) {
            Some(p) => p.spec.clone(),
            None if name == DEFAULT_PROJECT => ProjectSpec::permissive(),
            None => return None,
        },
    };
    Some(Project {
        name: name.to_string(),
        spec,
    })
}

fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(crate::app::is_dns_label)
}

/// Whether `text` matches `pattern`: `*` matches any run of characters (`/` included),
/// `?` any one character, everything else itself.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    // The last `*` seen and the text position it was tried at.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(c) if *c == '?' || *c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        for (pattern, text) in [
            ("*", ""),
            ("*", "https://git.example.com/a/b.git"),
            (
                "https://git.example.com/team-a/*",
                "https://git.example.com/team-a/web.git",
            ),
            (
                "https://git.example.com/team-a/*",
                "https://git.example.com/team-a/x/y",
            ),
            ("team-a", "team-a"),
            ("team-a-*", "team-a-dev"),
            ("team-?", "team-b"),
            ("*-dev", "web-dev"),
            ("a*b*c", "axxbyyc"),
        ] {
            assert!(glob_match(pattern, text), "{pattern} ~ {text}");
        }
        for (pattern, text) in [
            ("team-a", "team-ab"),
            ("team-a-*", "team-a"),
            (
                "https://git.example.com/team-a/*",
                "https://git.example.com/team-b/web",
            ),
            ("team-?", "team-bb"),
            ("a*b*c", "axxbyy"),
            ("", "x"),
        ] {
            assert!(!glob_match(pattern, text), "{pattern} !~ {text}");
        }
    }

    #[test]
    fn a_resource_wins_over_the_file_and_default_is_permissive_unless_defined() {
        let file = vec![NamedProject {
            name: "default".into(),
            spec: ProjectSpec {
                destinations: vec!["apps".into()],
                ..Default::default()
            },
        }];
        assert_eq!(resolve("default", None, &file).unwrap().spec, file[0].spec);
        assert_eq!(
            resolve("default", None, &[]).unwrap().spec,
            ProjectSpec::permissive()
        );
        let resource = ProjectSpec::default();
        assert_eq!(
            resolve("default", Some(&resource), &file).unwrap().spec,
            resource
        );
        assert_eq!(resolve("team-a", None, &file), None);
    }

    #[test]
    fn service_account_and_lists_are_checked() {
        let mut p = ProjectSpec {
            service_account: Some("team-a/deployer".into()),
            ..Default::default()
        };
        assert!(p.validate().is_ok());
        assert_eq!(p.service_account(), Some(("team-a", "deployer")));
        p.service_account = Some("deployer".into());
        assert_eq!(p.validate().unwrap_err().0, "serviceAccount");
        p.service_account = None;
        p.destinations = vec![" ".into()];
        assert_eq!(p.validate().unwrap_err().0, "destinations");
        assert!(ProjectSpec::permissive().validate().is_ok());
    }
}
