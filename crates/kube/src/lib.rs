//! The only crate that talks to the Kubernetes API server.
//!
//! [`Cluster`] wraps a `kube` client with cached discovery and exposes the few
//! operations the engine needs: resolve a kind, get, server-side apply (optionally
//! dry-run), delete, read and write an app's inventory and ferry's own records, and
//! answer "can I?".
//! Every error is a [`KubeError`] that names the object it concerns.

mod error;
mod inventory;
mod lease;
mod own;
mod system;
mod watch;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use ferry_model::{FIELD_MANAGER, ObjectRef};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::config::KubeConfigOptions;
use kube::core::GroupVersionKind;
use kube::discovery::{ApiCapabilities, ApiResource, Discovery, Scope};
use serde_json::Value;
use tokio::sync::{Mutex, RwLock};
use tokio::time::Instant;

pub use error::KubeError;
pub use inventory::{Inventory, VersionedInventory};
pub use own::{EventRecorder, Watched};
pub use watch::WatchEvent;

/// A resolved kind: how to address it and whether it is namespaced.
#[derive(Clone, Debug)]
pub struct Resolved {
    /// Group, version, kind and plural.
    pub resource: ApiResource,
    /// True for namespaced kinds.
    pub namespaced: bool,
}

/// What `ferry cluster-info` reports.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ClusterInfo {
    /// API server URL.
    pub server: String,
    /// Server version, e.g. `v1.34.4`.
    pub version: String,
    /// Number of API groups discovered.
    pub groups: usize,
    /// Number of resource kinds discovered (all versions).
    pub resources: usize,
    /// Namespace the permission checks were made in.
    pub namespace: String,
    /// (verb, allowed) for create, patch and delete.
    pub permissions: Vec<(String, bool)>,
}

/// How long one ordinary API request may take to be answered (`--kube-timeout`).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How long connecting to the API server may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The read timeout of watches: longer than kube-runtime's watch idle timeout (the
/// server-side watch timeout, 290 s, plus 5 s), which reconnects an idle watch first, so
/// it only bounds a watcher's list or a watch that stopped in mid-response.
pub const WATCH_READ_TIMEOUT: Duration = Duration::from_secs(300);

/// The least time between two discovery runs caused by an unknown kind
/// ([`Cluster::resolve`]), so that manifests of a kind that really is unknown do not
/// rerun discovery for every object.
pub const DISCOVERY_MIN_AGE: Duration = Duration::from_secs(5);

/// Objects per page of [`Cluster::list_names`].
pub const NAMES_PAGE: u32 = 500;

/// A connection to one cluster, with discovery cached and refreshable.
///
/// Two clients share the configuration. Ordinary requests (get, list, apply, delete,
/// Events, status writes, leases) go through `client`, which has a connect timeout and
/// a read timeout of `timeout` counted from when the request was sent
/// (`reset_reader_on_write`), so a black-holed API server fails a request within that
/// time instead of hanging it. Watches go through `watcher`, whose read timeout is
/// [`WATCH_READ_TIMEOUT`]: a watch is idle for minutes when nothing changes, and a read
/// timeout of `timeout` would cut it every `timeout` and make the watcher re-watch (and on
/// a compacted resource version re-list) over and over. A dead watch connection is caught
/// by kube-runtime's own idle timeout (the server-side watch timeout, 290 s, plus 5 s),
/// after which the watcher reconnects; the longer read timeout bounds the rest (the
/// watcher's lists).
///
/// [`Cluster::impersonating`] gives a view whose requests about apps' objects (get, list,
/// apply, create, delete, namespaces, can-i) carry `Impersonate-User`, over the same
/// connections; inventories, ferry's records, its own resources, discovery and watches
/// keep ferry's own identity.
#[derive(Clone)]
pub struct Cluster {
    client: kube::Client,
    objects: kube::Client,
    watcher: kube::Client,
    server: String,
    timeout: Duration,
    discovery: Arc<RwLock<Discovery>>,
    /// When discovery last ran; held while it runs again.
    discovered: Arc<Mutex<Instant>>,
    user: Option<Arc<str>>,
    impersonated: Arc<std::sync::Mutex<HashMap<String, kube::Client>>>,
    /// Namespaces seen to exist, by the identity that saw them (`""`: ferry's own), so
    /// that [`Cluster::ensure_namespace`] asks once; forgotten when a request answers
    /// that one does not exist.
    namespaces: Arc<std::sync::Mutex<HashSet<(String, String)>>>,
}

impl Cluster {
    /// Connects with the kubeconfig (`$KUBECONFIG` or `~/.kube/config`; in a pod, the
    /// service account), using `context` or the current context, and runs discovery;
    /// requests time out after [`DEFAULT_REQUEST_TIMEOUT`].
    pub async fn connect(context: Option<&str>) -> Result<Self, KubeError> {
        Self::connect_with_timeout(context, DEFAULT_REQUEST_TIMEOUT).await
    }

    /// Like [`connect`](Self::connect), with every ordinary request answered within
    /// `timeout` or failed with [`KubeError::TimedOut`] (watches excepted, see [`Cluster`]).
    pub async fn connect_with_timeout(
        context: Option<&str>,
        timeout: Duration,
    ) -> Result<Self, KubeError> {
        let mut config = match context {
            None => kube::Config::infer().await.map_err(|e| error::chain(&e)),
            Some(c) => {
                let options = KubeConfigOptions {
                    context: Some(c.to_string()),
                    ..Default::default()
                };
                kube::Config::from_kubeconfig(&options)
                    .await
                    .map_err(|e| error::chain(&e))
            }
        }
        .map_err(|message| KubeError::Config { message })?;
        let server = config.cluster_url.to_string();
        config.connect_timeout = Some(CONNECT_TIMEOUT);
        config.write_timeout = Some(timeout);
        config.reset_reader_on_write = true;
        let mut ordinary = config.clone();
        ordinary.read_timeout = Some(timeout);
        config.read_timeout = Some(WATCH_READ_TIMEOUT.max(timeout));
        let build = |config: kube::Config| {
            kube::Client::try_from(config).map_err(|e| KubeError::Config {
                message: error::chain(&e),
            })
        };
        Self::from_clients(build(ordinary)?, build(config)?, server, timeout).await
    }

    /// Wraps an existing client (`server` is used in messages, `timeout` is the one it
    /// was configured with) for requests and watches alike, and runs discovery.
    pub async fn from_client(
        client: kube::Client,
        server: String,
        timeout: Duration,
    ) -> Result<Self, KubeError> {
        Self::from_clients(client.clone(), client, server, timeout).await
    }

    /// The cluster of `client` (requests) and `watcher` (watches), after discovery.
    async fn from_clients(
        client: kube::Client,
        watcher: kube::Client,
        server: String,
        timeout: Duration,
    ) -> Result<Self, KubeError> {
        let discovery = discover(&client, &server).await?;
        Ok(Self {
            objects: client.clone(),
            client,
            watcher,
            server,
            timeout,
            discovery: Arc::new(RwLock::new(discovery)),
            discovered: Arc::new(Mutex::new(Instant::now())),
            user: None,
            impersonated: Arc::default(),
            namespaces: Arc::default(),
        })
    }

    /// This cluster with the requests about apps' objects made as the service account
    /// `namespace/name` (`Impersonate-User: system:serviceaccount:<namespace>:<name>`),
    /// so that its RBAC decides; inventories, records, watches and discovery stay ferry's.
    /// The view shares this cluster's connections and discovery; the impersonating client
    /// of each account is made once.
    pub fn impersonating(&self, namespace: &str, name: &str) -> Cluster {
        let user = format!("system:serviceaccount:{namespace}:{name}");
        let objects = self
            .impersonated
            .lock()
            .expect("impersonating clients")
            .entry(user.clone())
            .or_insert_with(|| impersonating_client(&self.client, &user))
            .clone();
        Cluster {
            objects,
            user: Some(user.into()),
            ..self.clone()
        }
    }

    /// The user this view impersonates (`None`: ferry's own identity).
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// The client of ordinary requests with ferry's own identity (with a read timeout).
    pub(crate) fn client(&self) -> &kube::Client {
        &self.client
    }

    /// The client of watches (read timeout [`WATCH_READ_TIMEOUT`]).
    pub(crate) fn watch_client(&self) -> &kube::Client {
        &self.watcher
    }

    /// Maps a `kube` error of `verb` on `subject`: a request the server did not answer
    /// in time becomes [`KubeError::TimedOut`], naming this cluster and the timeout.
    pub(crate) fn api_error(
        &self,
        err: kube::Error,
        verb: &'static str,
        subject: &ObjectRef,
    ) -> KubeError {
        if error::is_timeout(&err) {
            return KubeError::TimedOut {
                verb,
                subject: Box::new(subject.clone()),
                server: self.server.clone(),
                seconds: self.timeout.as_secs(),
            };
        }
        let error = KubeError::from_api(err, verb, subject);
        if let KubeError::NamespaceNotFound { namespace, .. } = &error {
            (self.namespaces.lock().expect("namespaces seen")).retain(|(_, ns)| ns != namespace);
        }
        error
    }

    /// [`api_error`](Self::api_error) of a request about an app's object: a Forbidden
    /// names the impersonated user.
    fn object_error(&self, err: kube::Error, verb: &'static str, subject: &ObjectRef) -> KubeError {
        match self.api_error(err, verb, subject) {
            KubeError::Forbidden {
                verb,
                subject,
                message,
                ..
            } => KubeError::Forbidden {
                verb,
                subject,
                message,
                user: self.user.as_deref().map(str::to_string),
            },
            other => other,
        }
    }

    /// The API server URL.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// Re-runs discovery (after CRDs were applied).
    pub async fn refresh(&self) -> Result<(), KubeError> {
        let mut discovered = self.discovered.lock().await;
        self.rediscover(&mut discovered).await
    }

    async fn rediscover(&self, discovered: &mut Instant) -> Result<(), KubeError> {
        let fresh = discover(&self.client, &self.server).await?;
        *self.discovery.write().await = fresh;
        *discovered = Instant::now();
        Ok(())
    }

    /// Resolves an `apiVersion` and kind through discovery. A kind the cached discovery
    /// does not know (a CRD installed since, by anyone) reruns discovery first, unless it
    /// ran less than [`DISCOVERY_MIN_AGE`] ago; callers asking at once share one run.
    pub async fn resolve(&self, api_version: &str, kind: &str) -> Result<Resolved, KubeError> {
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let gvk = GroupVersionKind::gvk(group, version, kind);
        if let Some(found) = self.lookup(&gvk).await {
            return Ok(found);
        }
        {
            let mut discovered = self.discovered.lock().await;
            if discovered.elapsed() >= DISCOVERY_MIN_AGE {
                self.rediscover(&mut discovered).await?;
            }
        }
        self.lookup(&gvk)
            .await
            .ok_or_else(|| KubeError::UnknownKind {
                api_version: api_version.into(),
                kind: kind.into(),
            })
    }

    async fn lookup(&self, gvk: &GroupVersionKind) -> Option<Resolved> {
        let (resource, ApiCapabilities { scope, .. }) =
            self.discovery.read().await.resolve_gvk(gvk)?;
        Some(Resolved {
            resource,
            namespaced: scope == Scope::Namespaced,
        })
    }

    async fn api(&self, subject: &ObjectRef) -> Result<Api<DynamicObject>, KubeError> {
        let r = self.resolve(&subject.api_version(), &subject.kind).await?;
        Ok(match (&subject.namespace, r.namespaced) {
            (Some(ns), true) => Api::namespaced_with(self.objects.clone(), ns, &r.resource),
            _ => Api::all_with(self.objects.clone(), &r.resource),
        })
    }

    /// Reads an object; `None` when it does not exist.
    pub async fn get(&self, subject: &ObjectRef) -> Result<Option<Value>, KubeError> {
        let api = self.api(subject).await?;
        let obj = api
            .get_opt(&subject.name)
            .await
            .map_err(|e| self.object_error(e, "get", subject))?;
        obj.map(to_value).transpose()
    }

    /// Lists every object of one kind in one namespace (no selector): the dashboard's
    /// resource tree finds ReplicaSets, Pods and Events this way.
    pub async fn list_in(
        &self,
        api_version: &str,
        kind: &str,
        namespace: &str,
    ) -> Result<Vec<Value>, KubeError> {
        self.list_selected(api_version, kind, Some(namespace), None)
            .await
    }

    /// Lists the objects of one kind in `namespace` (all namespaces, or cluster-scoped,
    /// with `None`) matching `label_selector` (all with `None`). Items carry their
    /// apiVersion and kind, as a GET returns them.
    pub async fn list_selected(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        label_selector: Option<&str>,
    ) -> Result<Vec<Value>, KubeError> {
        let r = self.resolve(api_version, kind).await?;
        let api: Api<DynamicObject> = match namespace {
            Some(ns) => Api::namespaced_with(self.objects.clone(), ns, &r.resource),
            None => Api::all_with(self.objects.clone(), &r.resource),
        };
        let subject = ObjectRef::new(api_version, kind, namespace, "*");
        let mut params = kube::api::ListParams::default();
        if let Some(selector) = label_selector {
            params = params.labels(selector);
        }
        let list = api
            .list(&params)
            .await
            .map_err(|e| self.object_error(e, "list", &subject))?;
        // List items come without apiVersion and kind.
        list.items
            .into_iter()
            .map(|mut o| {
                o.types = Some(kube::core::TypeMeta {
                    api_version: r.resource.api_version.clone(),
                    kind: r.resource.kind.clone(),
                });
                to_value(o)
            })
            .collect()
    }

    /// The names of every object of one kind in `namespace` (or of a cluster-scoped
    /// kind), whoever owns them: a metadata-only LIST, in pages of [`NAMES_PAGE`].
    pub async fn list_names(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
    ) -> Result<HashSet<String>, KubeError> {
        let subject = ObjectRef::new(api_version, kind, namespace, "*");
        let api = self.api(&subject).await?;
        let mut names = HashSet::new();
        let mut params = kube::api::ListParams::default().limit(NAMES_PAGE);
        loop {
            let page = api
                .list_metadata(&params)
                .await
                .map_err(|e| self.object_error(e, "list", &subject))?;
            names.extend(page.items.into_iter().filter_map(|o| o.metadata.name));
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(next) => params = params.continue_token(&next),
                None => return Ok(names),
            }
        }
    }

    /// Server-side applies `object` as field manager `ferry` with force-conflicts;
    /// with `dry_run`, nothing is persisted and the would-be object is returned.
    pub async fn apply(&self, object: &Value, dry_run: bool) -> Result<Value, KubeError> {
        let subject = object_ref(object);
        let api = self.api(&subject).await?;
        let mut params = PatchParams::apply(FIELD_MANAGER).force();
        params.dry_run = dry_run;
        let applied = api
            .patch(&subject.name, &params, &Patch::Apply(object))
            .await
            .map_err(|e| self.object_error(e, "apply", &subject))?;
        to_value(applied)
    }

    /// Creates `object` (a POST, not an apply: a `metadata.generateName` gets its name
    /// from the server) as field manager `ferry`; returns the object as stored.
    pub async fn create(&self, object: &Value) -> Result<Value, KubeError> {
        let mut subject = object_ref(object);
        if subject.name.is_empty()
            && let Some(prefix) = object
                .pointer("/metadata/generateName")
                .and_then(Value::as_str)
        {
            subject.name = format!("{prefix}*");
        }
        let api = self.api(&subject).await?;
        let typed: DynamicObject =
            serde_json::from_value(object.clone()).map_err(|e| KubeError::Decode {
                message: format!("{subject}: {e}"),
            })?;
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        let created = api
            .create(&params, &typed)
            .await
            .map_err(|e| self.object_error(e, "create", &subject))?;
        to_value(created)
    }

    /// Deletes an object (background propagation). Already gone is not an error.
    pub async fn delete(&self, subject: &ObjectRef) -> Result<(), KubeError> {
        let api = self.api(subject).await?;
        match api.delete(&subject.name, &DeleteParams::background()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.is_not_found() => Ok(()),
            Err(e) => Err(self.object_error(e, "delete", subject)),
        }
    }

    /// Creates a namespace when it does not exist; one this view's identity saw exist is
    /// not asked for again until a request answers that it does not.
    pub async fn ensure_namespace(&self, name: &str) -> Result<(), KubeError> {
        let user = self.user.as_deref().unwrap_or_default();
        self.ensure_namespace_with(&self.objects, user, name).await
    }

    /// Creates a namespace when it does not exist, through `client` acting as `user`
    /// (`""`: ferry's own identity). A namespace this view's identity saw already is
    /// not asked for again until a request answers that it does not exist.
    pub(crate) async fn ensure_namespace_with(
        &self,
        client: &kube::Client,
        user: &str,
        name: &str,
    ) -> Result<(), KubeError> {
        let seen = (user.to_string(), name.to_string());
        if (self.namespaces.lock().expect("namespaces seen")).contains(&seen) {
            return Ok(());
        }
        let subject = ObjectRef::new("v1", "Namespace", None, name);
        let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
        let found = api
            .get_opt(name)
            .await
            .map_err(|e| self.object_error(e, "get", &subject))?;
        if found.is_none() {
            let ns = serde_json::from_value(serde_json::json!({"metadata": {"name": name}}))
                .expect("static namespace object");
            match api.create(&PostParams::default(), &ns).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.is_already_exists() => {}
                Err(e) => return Err(self.object_error(e, "create", &subject)),
            }
        }
        (self.namespaces.lock().expect("namespaces seen")).insert(seen);
        Ok(())
    }

    /// Asks the API server whether the current identity may `verb` `resource`
    /// (plural, group) in `namespace`.
    pub async fn can_i(
        &self,
        verb: &str,
        group: &str,
        resource: &str,
        namespace: Option<&str>,
    ) -> Result<bool, KubeError> {
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(verb.into()),
                    group: Some(group.into()),
                    resource: Some(resource.into()),
                    namespace: namespace.map(str::to_string),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let api: Api<SelfSubjectAccessReview> = Api::all(self.objects.clone());
        let subject = ObjectRef::new(
            "authorization.k8s.io/v1",
            "SelfSubjectAccessReview",
            None,
            verb,
        );
        let answer = api
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| self.api_error(e, "create", &subject))?;
        Ok(answer.status.is_some_and(|s| s.allowed))
    }

    /// Server version and the served group/versions (`apps/v1`) and group/version/kinds
    /// (`apps/v1/Deployment`), as Helm's own capabilities list them, for renderers.
    pub async fn facts(&self) -> Result<(String, Vec<String>), KubeError> {
        let version = self
            .client
            .apiserver_version()
            .await
            .map_err(|e| KubeError::unreachable(&self.server, &e))?;
        let d = self.discovery.read().await;
        let mut versions: Vec<String> = Vec::new();
        for group in d.groups() {
            for v in group.versions() {
                let gv = match group.name() {
                    "" => v.to_string(),
                    name => format!("{name}/{v}"),
                };
                for (resource, _) in group.versioned_resources(v) {
                    versions.push(format!("{gv}/{}", resource.kind));
                }
                versions.push(gv);
            }
        }
        versions.sort();
        versions.dedup();
        Ok((version.git_version, versions))
    }

    /// Server version, discovery counts and create/patch/delete permissions in `namespace`.
    pub async fn info(&self, namespace: &str) -> Result<ClusterInfo, KubeError> {
        let version = self
            .client
            .apiserver_version()
            .await
            .map_err(|e| KubeError::unreachable(&self.server, &e))?;
        let (groups, resources) = {
            let d = self.discovery.read().await;
            let groups = d.groups().count();
            let resources = d
                .groups()
                .flat_map(|g| g.versions().flat_map(move |v| g.versioned_resources(v)))
                .count();
            (groups, resources)
        };
        let mut permissions = Vec::new();
        for verb in ["create", "patch", "delete"] {
            let allowed = self.can_i(verb, "*", "*", Some(namespace)).await?;
            permissions.push((verb.to_string(), allowed));
        }
        Ok(ClusterInfo {
            server: self.server.clone(),
            version: version.git_version,
            groups,
            resources,
            namespace: namespace.into(),
            permissions,
        })
    }
}

async fn discover(client: &kube::Client, server: &str) -> Result<Discovery, KubeError> {
    match Discovery::new(client.clone()).run_aggregated().await {
        Ok(d) => Ok(d),
        Err(kube::Error::Api(_)) => Discovery::new(client.clone())
            .run()
            .await
            .map_err(|e| KubeError::unreachable(server, &e)),
        Err(e) => Err(KubeError::unreachable(server, &e)),
    }
}

/// A client sending every request of `base` with `Impersonate-User: user`, over
/// `base`'s connections.
fn impersonating_client(base: &kube::Client, user: &str) -> kube::Client {
    let value =
        http::HeaderValue::from_str(user).expect("a service account name is a header value");
    let base = base.clone();
    let default_namespace = base.default_namespace().to_string();
    let service = tower::service_fn(move |mut request: http::Request<kube::client::Body>| {
        request
            .headers_mut()
            .insert("impersonate-user", value.clone());
        let base = base.clone();
        async move { base.send(request).await }
    });
    kube::Client::new(service, default_namespace)
}

/// The reference of a JSON object (`apiVersion`, `kind`, `metadata.namespace/name`).
pub fn object_ref(object: &Value) -> ObjectRef {
    let s = |p: &str| object.pointer(p).and_then(Value::as_str).unwrap_or("");
    ObjectRef::new(
        s("/apiVersion"),
        s("/kind"),
        Some(s("/metadata/namespace")),
        s("/metadata/name"),
    )
}

fn to_value(obj: DynamicObject) -> Result<Value, KubeError> {
    serde_json::to_value(obj).map_err(|e| KubeError::Decode {
        message: e.to_string(),
    })
}
