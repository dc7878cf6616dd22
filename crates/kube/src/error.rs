use ferry_model::ObjectRef;

/// An error from the API server or the connection to it, naming what it concerns.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    /// The kubeconfig is missing, invalid, or names an unknown context.
    #[error("kubeconfig: {message}")]
    Config {
        /// What is wrong.
        message: String,
    },
    /// The API server could not be reached or the TLS handshake failed.
    #[error("cannot reach the cluster at {server}: {message}")]
    Unreachable {
        /// API server URL.
        server: String,
        /// Root cause.
        message: String,
    },
    /// Discovery does not know the kind.
    #[error("kind {kind} ({api_version}) is not known to the cluster (is its CRD installed?)")]
    UnknownKind {
        /// The `apiVersion`.
        api_version: String,
        /// The kind.
        kind: String,
    },
    /// RBAC denied the request.
    #[error("forbidden: {} cannot {verb} {subject}: {message}", user.as_deref().unwrap_or("ferry"))]
    Forbidden {
        /// The verb.
        verb: &'static str,
        /// The object (boxed to keep `Result`s small).
        subject: Box<ObjectRef>,
        /// The server's message.
        message: String,
        /// The impersonated user (a project's service account); `None`: ferry's own
        /// identity.
        user: Option<String>,
    },
    /// The server rejected the object as invalid (422); `immutable` when an immutable field changed.
    #[error("{subject} is invalid: {message}")]
    Invalid {
        /// The object (boxed to keep `Result`s small).
        subject: Box<ObjectRef>,
        /// The server's message (names the field).
        message: String,
        /// True when the rejection is an immutable-field change.
        immutable: bool,
    },
    /// The object's namespace does not exist (the server's 404 `NotFound` names the
    /// namespace, not the object).
    #[error("cannot {verb} {subject}: {message} (HTTP 404)")]
    NamespaceNotFound {
        /// The verb.
        verb: &'static str,
        /// The missing namespace.
        namespace: String,
        /// The object (boxed to keep `Result`s small).
        subject: Box<ObjectRef>,
        /// The server's message.
        message: String,
    },
    /// Any other API error.
    #[error("cannot {verb} {subject}: {message} (HTTP {code})")]
    Api {
        /// The verb.
        verb: &'static str,
        /// The object (boxed to keep `Result`s small).
        subject: Box<ObjectRef>,
        /// HTTP status code (0 when there was no response).
        code: u16,
        /// The server's message or the transport error.
        message: String,
    },
    /// An app's inventory does not fit in its most shards, even without its memo.
    #[error(
        "the inventory of app {app} ({objects} objects) needs {bytes} compressed bytes, more than the {limit} its ConfigMaps may hold"
    )]
    InventoryTooLarge {
        /// The app.
        app: String,
        /// How many objects it has.
        objects: usize,
        /// The compressed size.
        bytes: usize,
        /// The most compressed bytes of one inventory.
        limit: usize,
    },
    /// The API server did not answer a request in time (connect or read timeout).
    #[error("timed out after {seconds} s: {verb} {subject} on {server}")]
    TimedOut {
        /// The verb.
        verb: &'static str,
        /// The object (boxed to keep `Result`s small).
        subject: Box<ObjectRef>,
        /// API server URL.
        server: String,
        /// The request timeout.
        seconds: u64,
    },
    /// A response could not be decoded.
    #[error("cannot decode the API server's response: {message}")]
    Decode {
        /// The decoder's message.
        message: String,
    },
}

impl KubeError {
    /// Maps a `kube` error for `verb` on `subject`.
    pub(crate) fn from_api(err: kube::Error, verb: &'static str, subject: &ObjectRef) -> Self {
        match err {
            kube::Error::Api(status) => {
                let message = status.message.clone();
                if status.is_forbidden() {
                    KubeError::Forbidden {
                        verb,
                        subject: Box::new(subject.clone()),
                        message,
                        user: None,
                    }
                } else if status.is_invalid() {
                    KubeError::Invalid {
                        immutable: is_immutable_message(&message),
                        subject: Box::new(subject.clone()),
                        message,
                    }
                } else if let Some(namespace) = missing_namespace(&status, subject) {
                    KubeError::NamespaceNotFound {
                        verb,
                        namespace,
                        subject: Box::new(subject.clone()),
                        message,
                    }
                } else {
                    KubeError::Api {
                        verb,
                        subject: Box::new(subject.clone()),
                        code: status.code,
                        message,
                    }
                }
            }
            other => KubeError::Api {
                verb,
                subject: Box::new(subject.clone()),
                code: 0,
                message: chain(&other),
            },
        }
    }

    /// A connection-level failure talking to `server`.
    pub(crate) fn unreachable(server: &str, err: &kube::Error) -> Self {
        match err {
            kube::Error::Api(status) if status.is_forbidden() => KubeError::Forbidden {
                verb: "discover",
                subject: Box::new(ObjectRef::new("v1", "APIResourceList", None, "/apis")),
                message: status.message.clone(),
                user: None,
            },
            _ => KubeError::Unreachable {
                server: server.into(),
                message: chain(err),
            },
        }
    }

    /// True when retrying later may succeed (network, server overload, conflicts).
    pub fn is_transient(&self) -> bool {
        match self {
            KubeError::Unreachable { .. } | KubeError::TimedOut { .. } => true,
            KubeError::Api { code, .. } => matches!(code, 0 | 409 | 429 | 500..),
            _ => false,
        }
    }

    /// True for an immutable-field rejection.
    pub fn is_immutable(&self) -> bool {
        matches!(
            self,
            KubeError::Invalid {
                immutable: true,
                ..
            }
        )
    }
}

/// The namespace of `subject` when `status` says that it does not exist: a 404
/// `NotFound` whose details name the core resource `namespaces` and that namespace.
fn missing_namespace(status: &kube::core::Status, subject: &ObjectRef) -> Option<String> {
    let details = status.details.as_ref()?;
    let namespace = subject.namespace.as_deref()?;
    (status.code == 404
        && status.is_not_found()
        && details.kind == "namespaces"
        && details.group.is_empty()
        && details.name == namespace)
        .then(|| namespace.to_string())
}

/// Whether a 422 message rejects a change to a field that cannot change after creation.
/// The API server words this in several ways: `field is immutable` (Deployment selector,
/// Job template), `may not change once set` (Service clusterIP), and StatefulSet's
/// `updates to statefulset spec for fields other than … are forbidden`.
fn is_immutable_message(message: &str) -> bool {
    message.contains("immutable")
        || message.contains("may not change once set")
        || (message.contains("updates to") && message.contains("are forbidden"))
}

/// Whether `err` (or one of its sources) is a connect or read timeout: `hyper-timeout`
/// reports an `io::Error` of kind `TimedOut` (shown as `timed out` when a wrapper
/// keeps only its message).
pub(crate) fn is_timeout(err: &kube::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        {
            return true;
        }
        source = e.source();
    }
    !matches!(err, kube::Error::Api(_)) && chain(err).contains("timed out")
}

/// Joins an error and its sources into one line, skipping repeats.
pub(crate) fn chain(err: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = vec![err.to_string()];
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts
        .join(": ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use ferry_model::ObjectRef;

    use super::{KubeError, is_immutable_message, is_timeout};

    /// A `kube` API error from the JSON Status the API server answers.
    fn api_error(status: serde_json::Value) -> kube::Error {
        kube::Error::Api(Box::new(serde_json::from_value(status).unwrap()))
    }

    /// The Status of a request whose object or namespace is missing.
    fn not_found(kind: &str, name: &str) -> kube::Error {
        api_error(serde_json::json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": format!("{kind} \"{name}\" not found"), "reason": "NotFound",
            "details": {"name": name, "kind": kind}, "code": 404,
        }))
    }

    #[test]
    fn a_missing_namespace_is_named() {
        let cm = ObjectRef::new("v1", "ConfigMap", Some("nowhere"), "cfg");
        let err = KubeError::from_api(not_found("namespaces", "nowhere"), "apply", &cm);
        assert!(
            matches!(&err, KubeError::NamespaceNotFound { namespace, subject, .. }
                if namespace == "nowhere" && **subject == cm),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "cannot apply ConfigMap/nowhere/cfg: namespaces \"nowhere\" not found (HTTP 404)"
        );
        assert!(!err.is_transient());
    }

    #[test]
    fn other_not_found_errors_stay_api_errors() {
        let cm = ObjectRef::new("v1", "ConfigMap", Some("here"), "cfg");
        for (kind, name) in [("configmaps", "cfg"), ("namespaces", "elsewhere")] {
            let err = KubeError::from_api(not_found(kind, name), "apply", &cm);
            assert!(
                matches!(err, KubeError::Api { code: 404, .. }),
                "{kind}/{name}: {err:?}"
            );
        }
        let ns = ObjectRef::new("v1", "Namespace", None, "here");
        let err = KubeError::from_api(not_found("namespaces", "here"), "get", &ns);
        assert!(matches!(err, KubeError::Api { code: 404, .. }), "{err:?}");
    }

    #[test]
    fn read_and_connect_timeouts_are_told_apart_from_other_failures() {
        let timed_out =
            kube::Error::Service(Box::new(std::io::Error::from(std::io::ErrorKind::TimedOut)));
        assert!(is_timeout(&timed_out));
        let refused = kube::Error::Service(Box::new(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused,
        )));
        assert!(!is_timeout(&refused));
        assert!(!is_timeout(&not_found("configmaps", "cfg")));
        let err = KubeError::TimedOut {
            verb: "get",
            subject: Box::new(ObjectRef::new("apps/v1", "Deployment", Some("shop"), "web")),
            server: "https://127.0.0.1:6443/".into(),
            seconds: 30,
        };
        assert_eq!(
            err.to_string(),
            "timed out after 30 s: get Deployment/shop/web on https://127.0.0.1:6443/"
        );
        assert!(err.is_transient());
    }

    #[test]
    fn immutable_messages() {
        for m in [
            r#"Deployment.apps "web" is invalid: spec.selector: Invalid value: {"matchLabels":{"app":"v2"}}: field is immutable"#,
            r#"Service "s" is invalid: spec.clusterIPs[0]: Invalid value: ["10.0.0.51"]: may not change once set"#,
            r#"StatefulSet.apps "ss" is invalid: spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"#,
            r#"PersistentVolumeClaim "data" is invalid: spec: Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims"#,
        ] {
            assert!(is_immutable_message(m), "{m}");
        }
        assert!(!is_immutable_message(
            r#"ConfigMap "x" is invalid: metadata.name: Invalid value: "X": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters"#
        ));
    }
}
