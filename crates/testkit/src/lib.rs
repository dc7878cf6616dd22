//! Test support: test-bed access, per-test namespaces, Git repositories made by tests.
//!
//! Cluster tests run against the real control plane that `testbed/up` starts (etcd,
//! kube-apiserver, kube-controller-manager, kube-scheduler and kwok for the nodes):
//!
//! ```text
//! eval "$(testbed/up)"   # exports KUBECONFIG
//! cargo test -p <crate>
//! testbed/down
//! ```
//!
//! Cluster tests never skip: [`client`] panics when the test bed cannot be reached, both
//! locally and in CI, so a missing test bed shows up as failed tests rather than green ones.
//!
//! Tests that need a Git repository make one with [`TestRepo`]; those that need a chart
//! repository or an OCI registry start one with [`charts`]; a private Git server over
//! HTTP or SSH, one with [`gitserve`]; a real Git forge (Gitea), one with [`forge`];
//! paths, copies and process output, [`files`].

pub mod charts;
pub mod files;
pub mod forge;
pub mod gitserve;
pub mod repo;

use std::fmt::Display;
use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

pub use files::{copy_dir, manifest_dir, output_text, workspace_root};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
pub use repo::TestRepo;

/// The kubeconfig context that `testbed/up` writes; [`client`] connects through this
/// context only, so that tests cannot touch whatever cluster another context points at.
pub const TESTBED_CONTEXT: &str = "ferry-testbed";

/// The label that marks namespaces made by [`TestNamespace`], for manual clean-up with
/// `kubectl delete namespace -l app.kubernetes.io/managed-by=ferry-testkit`.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "ferry-testkit");

const START_HINT: &str = "start it with `eval \"$(testbed/up)\"`";

/// How long [`client`] waits for the API server to answer before declaring it unreachable.
const REACH_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the `Drop` of a [`TestNamespace`] waits for its DELETE to be answered.
const DROP_DELETE_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether the CustomResourceDefinition's `Established` condition is `True` (its
/// resources are served).
pub fn established(crd: &CustomResourceDefinition) -> bool {
    crd.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| {
            c.iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
        })
}

/// A client for the test bed, from the `ferry-testbed` context of `$KUBECONFIG`.
///
/// # Panics
///
/// When `KUBECONFIG` is unset or lacks the `ferry-testbed` context, or the API server does
/// not answer within 10 s, with the message `test bed unreachable at …: start it with
/// testbed/up`. This holds whether or not `CI=true`: cluster tests fail, they never skip.
pub async fn client() -> Client {
    let config = testbed_config().await.unwrap_or_else(|e| panic!("{e}"));
    let url = config.cluster_url.clone();
    let client = Client::try_from(config)
        .unwrap_or_else(|e| panic!("test bed unreachable at {url}: {e}; {START_HINT}"));
    match tokio::time::timeout(REACH_TIMEOUT, client.apiserver_version()).await {
        Ok(Ok(_)) => client,
        Ok(Err(e)) => panic!("test bed unreachable at {url}: {e}; {START_HINT}"),
        Err(_) => panic!(
            "test bed unreachable at {url}: no answer within {REACH_TIMEOUT:?}; {START_HINT}"
        ),
    }
}

/// The client configuration of the `ferry-testbed` context in `$KUBECONFIG`.
async fn testbed_config() -> Result<Config, String> {
    // Several rustls crypto providers may be linked into a test binary, and then rustls
    // cannot pick one by itself; an error only means that one is installed already.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let Some(path) = std::env::var_os("KUBECONFIG") else {
        return Err(format!(
            "test bed unreachable at $KUBECONFIG: KUBECONFIG is not set; {START_HINT}"
        ));
    };
    let unreachable = |e: &dyn Display| {
        format!(
            "test bed unreachable at KUBECONFIG={}: {e}; {START_HINT}",
            path.display()
        )
    };
    let kubeconfig = Kubeconfig::from_env()
        .map_err(|e| unreachable(&e))?
        .ok_or_else(|| unreachable(&"no kubeconfig there"))?;
    let options = KubeConfigOptions {
        context: Some(TESTBED_CONTEXT.to_owned()),
        ..KubeConfigOptions::default()
    };
    Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|e| unreachable(&e))
}

/// Polls `check` every 200 ms until it yields `Some(value)`, and returns that value.
///
/// Errors from `check` count as "not yet" (an object may not exist yet, the API server may
/// be briefly busy); the last one is kept for the panic message.
///
/// # Panics
///
/// When `timeout` passes first, naming `what`.
pub async fn wait_for<T, E, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>, E>>,
    E: Display,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last_error = None;
    loop {
        match tokio::time::timeout_at(deadline, check()).await {
            Ok(Ok(Some(value))) => return value,
            Ok(Ok(None)) | Err(_) => {}
            Ok(Err(e)) => last_error = Some(e.to_string()),
        }
        if tokio::time::Instant::now() >= deadline {
            match last_error {
                Some(e) => {
                    panic!("timed out after {timeout:?} waiting for {what}; last error: {e}")
                }
                None => panic!("timed out after {timeout:?} waiting for {what}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A namespace of one test's own, named `<prefix>-<random suffix>` and labelled
/// [`MANAGED_BY`].
///
/// Call [`cleanup`](Self::cleanup) at the end of the test: it deletes the namespace with
/// the test's client and fails the test if that is refused. When the test ends without it
/// (a failed assertion, an early return), `Drop` deletes the namespace best-effort.
///
/// `Drop` cannot await, and it may run inside a current-thread runtime that is blocked in
/// that very drop, so it cannot use the test's client. It sends the DELETE from a new
/// thread with its own runtime and its own client (same kubeconfig) and joins it: one
/// round trip of at most 10 s, no `kubectl` needed, works while the test panics. Failures
/// are printed, never raised.
pub struct TestNamespace {
    client: Client,
    name: String,
    deleted: bool,
}

impl TestNamespace {
    /// Creates a namespace named `<prefix>-<random suffix>`.
    ///
    /// # Panics
    ///
    /// When `prefix` cannot start a namespace name (a DNS label of at most 54 characters
    /// here) or the API server refuses the namespace.
    pub async fn new(client: &Client, prefix: &str) -> Self {
        assert!(
            !prefix.is_empty()
                && prefix.len() <= 54
                && prefix.starts_with(|c: char| c.is_ascii_lowercase())
                && prefix
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
            "namespace prefix {prefix:?} must be a lowercase DNS label of at most 54 characters"
        );
        let name = format!("{prefix}-{}", random_suffix());
        let namespace = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some([(MANAGED_BY.0.to_owned(), MANAGED_BY.1.to_owned())].into()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &namespace)
            .await
            .unwrap_or_else(|e| panic!("creating test namespace {name}: {e}"));
        Self {
            client: client.clone(),
            name,
            deleted: false,
        }
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Deletes the namespace. The namespace controller then empties and removes it in the
    /// background, which takes several seconds once it holds pods, so this does not wait.
    ///
    /// # Panics
    ///
    /// When the API server refuses the deletion.
    pub async fn cleanup(mut self) {
        self.deleted = true;
        if let Err(e) = delete_namespace(self.client.clone(), &self.name).await {
            panic!("deleting test namespace {}: {e}", self.name);
        }
    }
}

/// Deletes a namespace; one that is gone already counts as deleted.
async fn delete_namespace(client: Client, name: &str) -> Result<(), kube::Error> {
    match Api::<Namespace>::all(client)
        .delete(name, &DeleteParams::background())
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

impl std::fmt::Debug for TestNamespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestNamespace")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if self.deleted {
            return;
        }
        let name = self.name.clone();
        let outcome = std::thread::spawn(move || -> Result<(), String> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let client =
                    Client::try_from(testbed_config().await?).map_err(|e| e.to_string())?;
                tokio::time::timeout(DROP_DELETE_TIMEOUT, delete_namespace(client, &name))
                    .await
                    .map_err(|_| format!("no answer within {DROP_DELETE_TIMEOUT:?}"))?
                    .map_err(|e| e.to_string())
            })
        })
        .join()
        .unwrap_or_else(|_| Err("the deleting thread panicked".to_owned()));
        if let Err(e) = outcome {
            eprintln!(
                "ferry-testkit: could not delete test namespace {}: {e}",
                self.name
            );
        }
    }
}

/// Eight random characters from `[0-9a-z]`, different on every call.
fn random_suffix() -> String {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let mut n = RandomState::new().hash_one((
        SystemTime::now(),
        std::process::id(),
        CALLS.fetch_add(1, Ordering::Relaxed),
    ));
    (0..8)
        .map(|_| {
            let digit = (n % 36) as u32;
            n /= 36;
            char::from_digit(digit, 36).expect("a digit below 36")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::random_suffix;

    #[test]
    fn suffixes_are_dns_label_characters_and_differ() {
        let a = random_suffix();
        let b = random_suffix();
        assert_eq!(a.len(), 8);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        );
        assert_ne!(a, b);
    }
}
