//! A project's bounds checked against one app and its objects, before anything is
//! written: where its `Application` lives, where its source comes from, which
//! namespaces and kinds its objects have. Pure: the caller resolves the project and
//! passes the objects as ferry would apply them (namespace defaulted for namespaced
//! kinds, none for cluster-scoped ones).

use ferry_model::{AppSpec, KindPattern, Manifest, ObjectRef, Project, project::glob_match};

/// The project field a violation breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// The `Application`'s namespace is not in `sourceNamespaces`.
    SourceNamespaces,
    /// `source.repo` (or `source.helm.repo`) matches no `sourceRepos` glob.
    SourceRepos,
    /// An object's namespace (or `destination.namespace`) matches no `destinations` glob.
    Destinations,
    /// A cluster-scoped kind not in `clusterResources`.
    ClusterResources,
    /// A namespaced kind in `namespacedResourceDenylist`.
    NamespacedResourceDenylist,
}

impl Rule {
    /// The project field, as spelled in YAML.
    pub fn field(self) -> &'static str {
        match self {
            Rule::SourceNamespaces => "sourceNamespaces",
            Rule::SourceRepos => "sourceRepos",
            Rule::Destinations => "destinations",
            Rule::ClusterResources => "clusterResources",
            Rule::NamespacedResourceDenylist => "namespacedResourceDenylist",
        }
    }
}

/// One thing the project does not allow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The object refused; `None` when the app itself is (its namespace or source).
    pub subject: Option<ObjectRef>,
    /// The rule broken.
    pub rule: Rule,
    /// What is outside the rule, e.g. `namespace team-a is not in destinations [team-b]`.
    pub message: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.subject {
            Some(subject) => write!(f, "{subject}: {}", self.message),
            None => write!(f, "{}", self.message),
        }
    }
}

/// What [`check`] looks at.
#[derive(Clone, Copy, Debug)]
pub struct PolicyInput<'a> {
    /// The app's project.
    pub project: &'a Project,
    /// The namespace of the `Application` resource defining the app; `None` for an app
    /// of a `ferry.yaml` (the operator's file, which may name any project).
    pub app_namespace: Option<&'a str>,
    /// The app.
    pub spec: &'a AppSpec,
    /// Its objects as ferry applies them (hooks included).
    pub objects: &'a [Manifest],
}

/// Every violation of the project's rules, in the order: the app's namespace, its
/// sources, its destination ([`check_app`]), then per object (in the given order)
/// destinations, cluster-scoped kinds and denied namespaced kinds. Empty when the app is
/// allowed.
pub fn check(input: PolicyInput<'_>) -> Vec<Violation> {
    let mut out = check_app(input.project, input.app_namespace, input.spec);
    check_objects(input.project, input.objects, &mut out);
    out
}

/// The violations of the rules about the app itself, which need no render: where its
/// `Application` lives, its repositories, its destination namespace (and creating it).
pub fn check_app(project: &Project, app_namespace: Option<&str>, spec: &AppSpec) -> Vec<Violation> {
    let rules = &project.spec;
    let mut out = Vec::new();
    let app = |rule: Rule, message: String| Violation {
        subject: None,
        rule,
        message,
    };
    if let Some(ns) = app_namespace
        && !any_glob(&rules.source_namespaces, ns)
    {
        out.push(app(
            Rule::SourceNamespaces,
            format!(
                "Applications in namespace {ns} may not use project {}: not in {}",
                project.name,
                listed(Rule::SourceNamespaces, &rules.source_namespaces)
            ),
        ));
    }
    let helm_repo = spec.source.helm.as_ref().and_then(|h| h.repo.as_deref());
    for repo in std::iter::once(spec.source.repo.as_str()).chain(helm_repo) {
        if !any_glob(&rules.source_repos, repo) {
            out.push(app(
                Rule::SourceRepos,
                format!(
                    "repository {repo} is not in {}",
                    listed(Rule::SourceRepos, &rules.source_repos)
                ),
            ));
        }
    }
    if let Some(ns) = &spec.destination.namespace
        && !any_glob(&rules.destinations, ns)
    {
        out.push(app(
            Rule::Destinations,
            format!(
                "destination.namespace {ns} is not in {}",
                listed(Rule::Destinations, &rules.destinations)
            ),
        ));
    }
    if spec.destination.create_namespace
        && spec.destination.namespace.is_some()
        && !allowed_kind(&rules.cluster_resources, "", "Namespace")
    {
        out.push(app(
            Rule::ClusterResources,
            format!(
                "destination.createNamespace creates a Namespace, which is not in {}",
                kinds(Rule::ClusterResources, &rules.cluster_resources)
            ),
        ));
    }
    out
}

fn check_objects(project: &Project, objects: &[Manifest], out: &mut Vec<Violation>) {
    let rules = &project.spec;
    for m in objects {
        let group = m.api_version().split_once('/').map_or("", |(g, _)| g);
        let violation = |rule: Rule, message: String| Violation {
            subject: Some(m.object_ref()),
            rule,
            message,
        };
        match m.namespace() {
            Some(ns) => {
                if !any_glob(&rules.destinations, ns) {
                    out.push(violation(
                        Rule::Destinations,
                        format!(
                            "namespace {ns} is not in {}",
                            listed(Rule::Destinations, &rules.destinations)
                        ),
                    ));
                }
                if allowed_kind(&rules.namespaced_resource_denylist, group, m.kind()) {
                    out.push(violation(
                        Rule::NamespacedResourceDenylist,
                        format!(
                            "kind {} is in {}",
                            qualified(group, m.kind()),
                            kinds(
                                Rule::NamespacedResourceDenylist,
                                &rules.namespaced_resource_denylist
                            )
                        ),
                    ));
                }
            }
            None => {
                if !allowed_kind(&rules.cluster_resources, group, m.kind()) {
                    out.push(violation(
                        Rule::ClusterResources,
                        format!(
                            "cluster-scoped kind {} is not in {}",
                            qualified(group, m.kind()),
                            kinds(Rule::ClusterResources, &rules.cluster_resources)
                        ),
                    ));
                }
            }
        }
    }
}

fn any_glob(globs: &[String], text: &str) -> bool {
    globs.iter().any(|g| glob_match(g, text))
}

fn allowed_kind(patterns: &[KindPattern], group: &str, kind: &str) -> bool {
    patterns.iter().any(|p| p.matches(group, kind))
}

fn qualified(group: &str, kind: &str) -> String {
    match group {
        "" => kind.to_string(),
        group => format!("{group}/{kind}"),
    }
}

/// `destinations [team-b, team-b-*]`, or `destinations (empty)`.
fn listed(rule: Rule, globs: &[String]) -> String {
    match globs {
        [] => format!("{} (empty)", rule.field()),
        _ => format!("{} [{}]", rule.field(), globs.join(", ")),
    }
}

fn kinds(rule: Rule, patterns: &[KindPattern]) -> String {
    let names: Vec<String> = patterns.iter().map(ToString::to_string).collect();
    listed(rule, &names)
}

#[cfg(test)]
mod tests {
    use ferry_model::{Destination, HelmOptions, Origin, ProjectSpec, SourceSpec};
    use serde_json::json;

    use super::*;

    fn team_b() -> Project {
        Project {
            name: "team-b".into(),
            spec: ProjectSpec {
                source_repos: vec!["https://git.example.com/team-b/*".into()],
                destinations: vec!["team-b".into(), "team-b-*".into()],
                cluster_resources: vec![KindPattern {
                    group: "".into(),
                    kind: "Namespace".into(),
                }],
                namespaced_resource_denylist: vec![KindPattern {
                    group: "".into(),
                    kind: "ResourceQuota".into(),
                }],
                service_account: Some("team-b/deployer".into()),
                source_namespaces: vec!["team-b".into()],
                ..Default::default()
            },
        }
    }

    fn spec(repo: &str, namespace: &str) -> AppSpec {
        AppSpec {
            project: Some("team-b".into()),
            source: SourceSpec {
                repo: repo.into(),
                ..Default::default()
            },
            destination: Destination {
                namespace: Some(namespace.into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn object(api_version: &str, kind: &str, namespace: Option<&str>, name: &str) -> Manifest {
        let mut o = json!({"apiVersion": api_version, "kind": kind, "metadata": {"name": name}});
        if let Some(ns) = namespace {
            o["metadata"]["namespace"] = json!(ns);
        }
        Manifest::new(o, Origin::default()).unwrap()
    }

    const REPO: &str = "https://git.example.com/team-b/web.git";

    #[test]
    fn an_app_inside_its_project_passes() {
        let objects = [
            object("v1", "ConfigMap", Some("team-b"), "cfg"),
            object("apps/v1", "Deployment", Some("team-b-dev"), "web"),
            object("v1", "Namespace", None, "team-b-dev"),
        ];
        let spec = spec(REPO, "team-b");
        let found = check(PolicyInput {
            project: &team_b(),
            app_namespace: Some("team-b"),
            spec: &spec,
            objects: &objects,
        });
        assert_eq!(found, []);
    }

    #[test]
    fn each_rule_names_the_object_and_the_field() {
        let objects = [
            object("v1", "ConfigMap", Some("team-a"), "cfg"),
            object(
                "rbac.authorization.k8s.io/v1",
                "ClusterRole",
                None,
                "admin-ish",
            ),
            object("v1", "ResourceQuota", Some("team-b"), "quota"),
        ];
        let mut spec = spec("https://git.example.com/team-a/web.git", "team-a");
        spec.source.helm = Some(HelmOptions {
            chart: Some("web".into()),
            repo: Some("https://charts.example.com".into()),
            ..Default::default()
        });
        let found = check(PolicyInput {
            project: &team_b(),
            app_namespace: Some("team-a"),
            spec: &spec,
            objects: &objects,
        });
        let rules: Vec<Rule> = found.iter().map(|v| v.rule).collect();
        assert_eq!(
            rules,
            [
                Rule::SourceNamespaces,
                Rule::SourceRepos,
                Rule::SourceRepos,
                Rule::Destinations,
                Rule::Destinations,
                Rule::ClusterResources,
                Rule::NamespacedResourceDenylist,
            ]
        );
        let lines: Vec<String> = found.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "Applications in namespace team-a may not use project team-b: not in sourceNamespaces [team-b]",
                "repository https://git.example.com/team-a/web.git is not in sourceRepos [https://git.example.com/team-b/*]",
                "repository https://charts.example.com is not in sourceRepos [https://git.example.com/team-b/*]",
                "destination.namespace team-a is not in destinations [team-b, team-b-*]",
                "ConfigMap/team-a/cfg: namespace team-a is not in destinations [team-b, team-b-*]",
                "ClusterRole/admin-ish: cluster-scoped kind rbac.authorization.k8s.io/ClusterRole is not in clusterResources [Namespace]",
                "ResourceQuota/team-b/quota: kind ResourceQuota is in namespacedResourceDenylist [ResourceQuota]",
            ]
        );
        assert_eq!(found[5].subject.as_ref().unwrap().kind, "ClusterRole");
    }

    #[test]
    fn a_file_app_skips_the_namespace_rule_and_empty_lists_allow_nothing() {
        let project = Project {
            name: "strict".into(),
            spec: ProjectSpec::default(),
        };
        let mut spec = spec(REPO, "team-b");
        spec.destination.create_namespace = true;
        let objects = [object("v1", "Namespace", None, "team-b")];
        let found = check(PolicyInput {
            project: &project,
            app_namespace: None,
            spec: &spec,
            objects: &objects,
        });
        let lines: Vec<String> = found.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "repository https://git.example.com/team-b/web.git is not in sourceRepos (empty)",
                "destination.namespace team-b is not in destinations (empty)",
                "destination.createNamespace creates a Namespace, which is not in clusterResources (empty)",
                "Namespace/team-b: cluster-scoped kind Namespace is not in clusterResources (empty)",
            ]
        );
    }

    #[test]
    fn the_permissive_default_allows_everything() {
        let project = Project {
            name: "default".into(),
            spec: ProjectSpec::permissive(),
        };
        let objects = [
            object("rbac.authorization.k8s.io/v1", "ClusterRole", None, "x"),
            object("v1", "ConfigMap", Some("anywhere"), "cfg"),
        ];
        let mut spec = spec("/local/path", "anywhere");
        spec.destination.create_namespace = true;
        let found = check(PolicyInput {
            project: &project,
            app_namespace: Some("somewhere"),
            spec: &spec,
            objects: &objects,
        });
        assert_eq!(found, []);
    }
}
