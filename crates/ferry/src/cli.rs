//! Command-line flags.

use clap::{Args, Parser, Subcommand, ValueEnum};

/// GitOps continuous delivery for Kubernetes: render manifests from a Git revision,
/// diff them against a cluster, apply with server-side apply, prune and wait for health.
///
/// Exit codes: 0 success (or in sync), 1 changes pending (diff) or unhealthy (apply --wait), 2 error.
#[derive(Debug, Parser)]
#[command(name = "ferry", version, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command takes.
#[derive(Debug, Args)]
pub struct Global {
    /// kubeconfig context to use (default: the current context).
    #[arg(long, global = true, env = "FERRY_CONTEXT")]
    pub context: Option<String>,
    /// Output format.
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    /// Log more (repeat for debug logs).
    #[arg(long, short = 'v', global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Human-readable text.
    Text,
    /// JSON on stdout.
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print ferry's version.
    Version,
    /// Check the connection to a cluster: server version, discovered API resources, permissions.
    ClusterInfo {
        /// Namespace to check create/patch/delete permissions in.
        #[arg(long, short = 'n', default_value = "default")]
        namespace: String,
    },
    /// Render an app's manifests from Git and print them (no cluster needed).
    Render {
        #[command(flatten)]
        app: AppArgs,
        /// Git revision to render instead of the app's ref (branch, tag, SHA).
        #[arg(long)]
        revision: Option<String>,
    },
    /// Show what `apply` would change. Exit 0 in sync, 1 changes pending, 2 error.
    ///
    /// With `--revision A --against B` no cluster is used: both revisions are rendered
    /// and compared, e.g. a pull request's head against its base.
    Diff {
        #[command(flatten)]
        app: AppArgs,
        /// Git revision to diff instead of the app's ref.
        #[arg(long)]
        revision: Option<String>,
        /// Compare --revision with this revision offline instead of with the cluster.
        #[arg(long, requires = "revision")]
        against: Option<String>,
        /// Diff every app of the ferry.yaml, dependencies first (`dependsOn`); stops at
        /// the first error. Exit 1 when any app has changes pending.
        #[arg(long, conflicts_with_all = ["name", "repo", "revision"])]
        all: bool,
    },
    /// Apply an app: server-side apply, prune what left Git, wait for health.
    /// Exit 0 healthy, 1 unhealthy or timed out, 2 error.
    Apply {
        #[command(flatten)]
        app: AppArgs,
        /// Deploy this Git revision instead of the app's ref (e.g. to roll back).
        #[arg(long)]
        revision: Option<String>,
        /// Delete and re-create objects whose immutable fields changed.
        #[arg(long)]
        force: bool,
        /// Do not wait for health after applying.
        #[arg(long)]
        no_wait: bool,
        /// Health wait timeout (default: the app's wait.timeout, 5m).
        #[arg(long)]
        timeout: Option<String>,
        /// Do not delete objects that left Git.
        #[arg(long)]
        no_prune: bool,
        /// Apply every app of the ferry.yaml, dependencies first (`dependsOn`, ties in
        /// file order), each waited for as usual; stops at the first app that fails or
        /// is unhealthy, with its exit code.
        #[arg(long, conflicts_with_all = ["name", "repo", "revision"])]
        all: bool,
    },
    /// Run the pull-mode agent: poll Git, take webhooks, watch for drift and reconcile
    /// continuously; serves the dashboard at /, /api/v1 (described by
    /// /api/openapi.json), /metrics, /healthz, /readyz and /hooks/<provider>.
    ///
    /// Without --token / --tokens-file the API listens on localhost only and every local
    /// caller may act; with tokens, viewer tokens read and operator tokens also act.
    Agent(AgentArgs),
    /// Print (or apply) what runs the agent in a cluster: the Application and Project
    /// CRDs, RBAC, a Deployment with leader election and a Service.
    ///
    /// The RBAC lets the agent impersonate service accounts (each project's
    /// serviceAccount applies its apps), read what it watches, and write only its own
    /// records; --cluster-admin grants it everything instead.
    Install {
        /// Apply to the current cluster instead of printing YAML.
        #[arg(long)]
        apply: bool,
        /// Namespace for the agent.
        #[arg(long, default_value = "ferry-system")]
        namespace: String,
        /// Container image of ferry.
        #[arg(long, default_value = concat!("ghcr.io/ferry-dev/ferry:", env!("CARGO_PKG_VERSION")))]
        image: String,
        /// Let the agent do anything in the cluster (needed for apps whose project names
        /// no serviceAccount, which the agent applies as itself).
        #[arg(long)]
        cluster_admin: bool,
    },
    /// List the agent's apps (or show one with its objects).
    Get {
        /// What to get: `apps`, or `app`.
        #[arg(value_parser = ["apps", "app"])]
        what: String,
        /// App name (with `app`).
        name: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Ask the agent to sync an app now (applies even when self-heal is off).
    Sync(AppAction),
    /// Ask the agent to fetch an app's repository now and re-compare.
    Refresh(AppAction),
    /// Stop reconciling an app.
    Suspend(AppAction),
    /// Reconcile an app again (also clears a rollback pin).
    Resume(AppAction),
    /// Show an app's sync history.
    History(AppAction),
    /// Roll an app back to a history entry id or a Git revision (pinned until `resume`).
    Rollback {
        /// App name.
        name: String,
        /// History entry id or Git revision.
        target: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// List a ferry.yaml's apps, including those its app sets generate (no cluster needed).
    Apps {
        /// App definitions file.
        #[arg(long, short = 'f', default_value = "ferry.yaml")]
        file: std::path::PathBuf,
        /// Expand app sets at this Git revision instead of each set's ref.
        #[arg(long)]
        revision: Option<String>,
    },
    /// Copy image tags from one directory of an app set to another (Kustomize `images:`
    /// or a Helm values key) in the set's local working copy, and commit the change.
    /// Exit 0 also when already promoted (nothing committed).
    Promote {
        /// App set name.
        set: String,
        /// Source directory: its name (`staging`) or path (`infra/staging`).
        #[arg(long)]
        from: String,
        /// Target directory: its name or path.
        #[arg(long)]
        to: String,
        /// App definitions file.
        #[arg(long, short = 'f', default_value = "ferry.yaml")]
        file: std::path::PathBuf,
    },
    /// Print a shell completion script, e.g. `ferry completion bash > /etc/bash_completion.d/ferry`.
    Completion {
        /// The shell.
        #[arg(value_enum)]
        shell: Shell,
    },
    /// Print the man page ferry(1), or write it and one page per subcommand to a directory.
    Man {
        /// Write `ferry.1` and `ferry-<command>.1` here instead of printing `ferry.1`.
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
    },
}

/// Shells `ferry completion` writes scripts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    /// Bash.
    Bash,
    /// Zsh.
    Zsh,
    /// Fish.
    Fish,
    /// PowerShell.
    Powershell,
}

/// Where the agent's API is.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// The agent's address.
    #[arg(long, env = "FERRY_SERVER", default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// API token, when the agent requires one (sent as `Authorization: Bearer`).
    #[arg(long, env = "FERRY_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The namespace of an app given by a bare name (default: the `namespace` of
    /// ./ferry.yaml, else `ferry-system`); `NAMESPACE/NAME` names one explicitly.
    #[arg(long, short = 'n', env = "FERRY_NAMESPACE")]
    pub namespace: Option<String>,
    /// Longest one request to the agent may take, connecting included.
    #[arg(long, env = "FERRY_REQUEST_TIMEOUT", default_value = "30s")]
    pub request_timeout: String,
}

/// An action on one app through the agent.
#[derive(Debug, Args)]
pub struct AppAction {
    /// The app: `NAMESPACE/NAME`, or a name in the default namespace (`--namespace`).
    pub name: String,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// Flags of `ferry agent`.
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// The apps to reconcile (default: ferry.yaml, unless --applications is given).
    #[arg(long, short = 'f')]
    pub file: Option<std::path::PathBuf>,
    /// Also reconcile `Application` resources (ferry.dev/v1alpha1) in this namespace,
    /// or `all` for every namespace (install the CRD with `ferry install`).
    #[arg(long)]
    pub applications: Option<String>,
    /// HTTP listen address (dashboard, API, metrics, webhooks). Without API tokens only
    /// a loopback address is accepted.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,
    /// An API token as ROLE:TOKEN, ROLE `viewer` (read) or `operator` (read and act);
    /// repeat for more (FERRY_TOKENS: comma-separated). Tokens are never logged.
    #[arg(
        long = "token",
        value_name = "ROLE:TOKEN",
        env = "FERRY_TOKENS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub tokens: Vec<String>,
    /// A file of API tokens, one ROLE:TOKEN per line (`#` comments).
    #[arg(long)]
    pub tokens_file: Option<std::path::PathBuf>,
    /// Directory for the sync history (default: ~/.cache/ferry/agent).
    #[arg(long)]
    pub data_dir: Option<std::path::PathBuf>,
    /// Webhook secret: HMAC key (GitHub, Gitea, Bitbucket, generic) or token (GitLab).
    #[arg(long, env = "FERRY_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<String>,
    /// Reconciles running at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Longest one sync may take.
    #[arg(long, default_value = "5m")]
    pub sync_timeout: String,
    /// Longest one Kubernetes API request may take (connecting: 10 s); watches excepted.
    #[arg(long, default_value = "30s")]
    pub kube_timeout: String,
    /// Longest one Git fetch or ref listing may take, waiting for the cache lock included.
    #[arg(long, default_value = "60s")]
    pub git_timeout: String,
    /// How often every app is compared with Git even when no change was seen (a safety
    /// net for missed watch events; unchanged objects cost no dry-run); `0s` turns it off.
    #[arg(long, default_value = "10m")]
    pub resync_interval: String,
    /// Elect a leader through Lease `ferry-agent` in this namespace (run several agents
    /// for failover). Without it the agent still holds a Lease of its own apps
    /// (`ferry-system/ferry-agent-<hash of the app names>`), so a second agent of the same
    /// apps stands by and logs who holds it.
    #[arg(long)]
    pub leader_elect_namespace: Option<String>,
    /// This agent's identity in the lease (default: hostname and a hash of --data-dir).
    #[arg(long)]
    pub identity: Option<String>,
    /// The dashboard's public base URL (e.g. https://ferry.example.com): notifications
    /// and commit statuses link to the app's page there.
    #[arg(long, env = "FERRY_DASHBOARD_URL")]
    pub dashboard_url: Option<String>,
    /// Log as JSON lines.
    #[arg(long)]
    pub log_json: bool,
}

/// Which app: a name in a ferry.yaml, or a one-off app from flags.
#[derive(Debug, Args)]
pub struct AppArgs {
    /// App name in the ferry.yaml, an `apps` entry or one generated by an app set
    /// (optional when it has one app).
    pub name: Option<String>,
    /// App definitions file.
    #[arg(long, short = 'f', default_value = "ferry.yaml")]
    pub file: std::path::PathBuf,
    /// One-off app: repository URL or local path (instead of a ferry.yaml).
    #[arg(long, conflicts_with = "file")]
    pub repo: Option<String>,
    /// One-off app: branch, tag or commit (default: the remote HEAD).
    #[arg(long = "ref", requires = "repo")]
    pub git_ref: Option<String>,
    /// One-off app: directory inside the repository.
    #[arg(long, requires = "repo", default_value = "")]
    pub path: String,
    /// One-off app: destination namespace.
    #[arg(long, short = 'n', requires = "repo")]
    pub namespace: Option<String>,
    /// One-off app: create the namespace if missing.
    #[arg(long, requires = "repo")]
    pub create_namespace: bool,
}

/// Sets up logging to stderr; `RUST_LOG` overrides the level.
pub fn init_tracing(verbose: u8, json: bool) {
    let level = match verbose {
        // kube's client logs each failed request as an ERROR; ferry reports the same
        // failure itself, as one `error:` line, so those logs only show with -v.
        0 => "warn,kube_client=off",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        fmt.json().init();
    } else {
        fmt.init();
    }
}
