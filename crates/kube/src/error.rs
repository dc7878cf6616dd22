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
    #[error("forbidden: cannot {verb} {subject}: {message}")]
    Forbidden {
        /// The verb.
        verb: &'static str,
        /// The object.
        subject: ObjectRef,
        /// The server's message.
        message: String,
    },
    /// The server rejected the object as invalid (422); `immutable` when an immutable field changed.
    #[error("{subject} is invalid: {message}")]
    Invalid {
        /// The object.
        subject: ObjectRef,
        /// The server's message (names the field).
        message: String,
        /// True when the rejection is an immutable-field change.
        immutable: bool,
    },
    /// Any other API error.
    #[error("cannot {verb} {subject}: {message} (HTTP {code})")]
    Api {
        /// The verb.
        verb: &'static str,
        /// The object.
        subject: ObjectRef,
        /// HTTP status code (0 when there was no response).
        code: u16,
        /// The server's message or the transport error.
        message: String,
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
                        subject: subject.clone(),
                        message,
                    }
                } else if status.is_invalid() {
                    KubeError::Invalid {
                        immutable: message.contains("immutable"),
                        subject: subject.clone(),
                        message,
                    }
                } else {
                    KubeError::Api {
                        verb,
                        subject: subject.clone(),
                        code: status.code,
                        message,
                    }
                }
            }
            other => KubeError::Api {
                verb,
                subject: subject.clone(),
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
                subject: ObjectRef::new("v1", "APIResourceList", None, "/apis"),
                message: status.message.clone(),
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
            KubeError::Unreachable { .. } => true,
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
