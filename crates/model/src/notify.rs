//! Notifications: where the agent reports an app's sync outcomes, health and drift. The
//! same schema is `ferry.yaml`'s top-level `notifications:` (every app of the agent) and a
//! project's `notifications:` (the project's apps).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::SecretRef;

/// What happened to an app.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub enum EventKind {
    /// A revision was synced (applied, or found already applied).
    SyncSucceeded,
    /// A sync failed (the first failure of a run of retries).
    SyncFailed,
    /// An object of the app turned Failed.
    HealthDegraded,
    /// Live objects differ from Git without a new revision.
    DriftDetected,
    /// Drifted objects were restored from Git (self-heal).
    DriftHealed,
}

impl EventKind {
    /// Every kind, in a fixed order.
    pub const ALL: [EventKind; 5] = [
        Self::SyncSucceeded,
        Self::SyncFailed,
        Self::HealthDegraded,
        Self::DriftDetected,
        Self::DriftHealed,
    ];

    /// The kind's name as written in `events:` and sent in payloads.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::SyncSucceeded => "SyncSucceeded",
            Self::SyncFailed => "SyncFailed",
            Self::HealthDegraded => "HealthDegraded",
            Self::DriftDetected => "DriftDetected",
            Self::DriftHealed => "DriftHealed",
        }
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kind of receiver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReceiverKind {
    /// Any HTTP endpoint: a JSON body, signed with HMAC-SHA256 when a token is given.
    Webhook,
    /// A Slack-compatible incoming webhook (`{"text": ...}`).
    Slack,
    /// GitHub commit statuses.
    Github,
    /// GitLab commit statuses.
    Gitlab,
    /// Gitea (and Forgejo) commit statuses.
    Gitea,
}

impl ReceiverKind {
    /// Whether the receiver sets commit statuses (and so needs a revision).
    pub fn is_commit_status(&self) -> bool {
        matches!(self, Self::Github | Self::Gitlab | Self::Gitea)
    }

    /// The lowercase name, for logs and metric labels.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Webhook => "webhook",
            Self::Slack => "slack",
            Self::Github => "github",
            Self::Gitlab => "gitlab",
            Self::Gitea => "gitea",
        }
    }
}

/// One receiver of notifications.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NotificationSpec {
    /// Names the receiver in logs and metrics; unique in its list.
    pub name: String,
    /// `webhook`, `slack`, `github`, `gitlab` or `gitea`.
    #[serde(rename = "type")]
    pub kind: ReceiverKind,
    /// The endpoint (webhook, slack) or the forge's base URL (`https://api.github.com`,
    /// `https://gitlab.com` by default; required for gitea). A Secret's `address` key
    /// replaces it, for URLs that are themselves secrets (Slack's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// A Secret with key `token` (the webhook's HMAC key, the forge's API token) and
    /// optionally `address`; without a namespace, `ferry-system`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretRef>,
    /// A file holding the token (`ferry.yaml` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<String>,
    /// Which events to send (default all; commit statuses use the sync and health ones).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<EventKind>,
    /// Commit statuses: the repository (`owner/name`; GitLab: the project path or ID)
    /// when it is not the one in the app's `source.repo` URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// Longest one request may take, e.g. `10s` (the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
}

impl NotificationSpec {
    /// Whether this receiver wants `event`.
    pub fn wants(&self, event: EventKind) -> bool {
        let listed = self.events.is_empty() || self.events.contains(&event);
        let statusable = !self.kind.is_commit_status()
            || matches!(
                event,
                EventKind::SyncSucceeded | EventKind::SyncFailed | EventKind::HealthDegraded
            );
        listed && statusable
    }

    /// The request timeout (10 s unless set).
    pub fn timeout(&self) -> std::time::Duration {
        self.timeout
            .as_deref()
            .and_then(|t| crate::parse_duration(t).ok())
            .unwrap_or(std::time::Duration::from_secs(10))
    }

    /// Checks field values; returns the offending field and why.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if !crate::app::is_dns_label(&self.name) {
            return Err((
                "name".into(),
                format!("{:?} must be a DNS label (a-z, 0-9, -)", self.name),
            ));
        }
        match &self.url {
            Some(url) if !(url.starts_with("https://") || url.starts_with("http://")) => {
                return Err((
                    "url".into(),
                    format!("{:?} is not an http(s) URL", crate::redact_url(url)),
                ));
            }
            None if matches!(self.kind, ReceiverKind::Webhook | ReceiverKind::Slack)
                && self.secret_ref.is_none() =>
            {
                return Err((
                    "url".into(),
                    "required (or an address key in the Secret named by secretRef)".into(),
                ));
            }
            None if self.kind == ReceiverKind::Gitea => {
                return Err(("url".into(), "required: the Gitea server's URL".into()));
            }
            _ => {}
        }
        if self.secret_ref.is_some() && self.token_file.is_some() {
            return Err((
                "tokenFile".into(),
                "set either secretRef or tokenFile".into(),
            ));
        }
        if self.kind.is_commit_status() && self.secret_ref.is_none() && self.token_file.is_none() {
            return Err((
                "secretRef".into(),
                "commit statuses need a token: set secretRef or tokenFile".into(),
            ));
        }
        if let Some(secret) = &self.secret_ref
            && !crate::app::is_dns_subdomain(&secret.name)
        {
            return Err((
                "secretRef.name".into(),
                format!("{:?} is not a valid Secret name", secret.name),
            ));
        }
        if let Some(t) = &self.timeout {
            crate::parse_duration(t).map_err(|m| ("timeout".into(), m))?;
        }
        if let Some(repo) = &self.repository
            && repo.trim().is_empty()
        {
            return Err(("repository".into(), "must not be empty".into()));
        }
        Ok(())
    }
}

/// Checks a list of receivers (each, and that names are unique); returns the offending
/// field, e.g. `notifications[1].url`, and why.
pub fn validate_all(list: &[NotificationSpec]) -> Result<(), (String, String)> {
    let mut seen = std::collections::HashSet::new();
    for (i, n) in list.iter().enumerate() {
        let at = |f: &str| format!("notifications[{i}].{f}");
        n.validate().map_err(|(f, m)| (at(&f), m))?;
        if !seen.insert(n.name.as_str()) {
            return Err((at("name"), format!("duplicate receiver name {:?}", n.name)));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> NotificationSpec {
        serde_saphyr::from_str(yaml).unwrap()
    }

    #[test]
    fn parses_and_validates_receivers() {
        let w = spec(
            "name: ops\ntype: webhook\nurl: https://hooks.example.com/ferry\nevents: [SyncFailed]\ntimeout: 3s\n",
        );
        assert_eq!(w.kind, ReceiverKind::Webhook);
        assert!(w.validate().is_ok());
        assert!(w.wants(EventKind::SyncFailed));
        assert!(!w.wants(EventKind::SyncSucceeded));
        assert_eq!(w.timeout(), std::time::Duration::from_secs(3));

        let g = spec(
            "name: statuses\ntype: gitea\nurl: http://127.0.0.1:3000\nsecretRef: {name: gitea-token}\n",
        );
        assert!(g.validate().is_ok());
        assert!(g.wants(EventKind::SyncSucceeded));
        assert!(
            !g.wants(EventKind::DriftDetected),
            "no commit status for drift"
        );
        assert_eq!(g.timeout(), std::time::Duration::from_secs(10));
    }

    #[test]
    fn invalid_receivers_name_the_field() {
        let field = |yaml: &str| spec(yaml).validate().unwrap_err().0;
        assert_eq!(field("name: a\ntype: webhook\n"), "url");
        assert_eq!(field("name: a\ntype: gitea\nsecretRef: {name: t}\n"), "url");
        assert_eq!(field("name: a\ntype: github\n"), "secretRef");
        assert_eq!(field("name: a\ntype: slack\nurl: ftp://x\n"), "url");
        assert_eq!(
            field("name: a\ntype: github\nsecretRef: {name: t}\ntokenFile: /t\n"),
            "tokenFile"
        );
        assert_eq!(
            field("name: a\ntype: webhook\nurl: http://x\ntimeout: soon\n"),
            "timeout"
        );
        assert_eq!(field("name: A\ntype: webhook\nurl: http://x\n"), "name");
        let two = vec![
            spec("name: a\ntype: webhook\nurl: http://x\n"),
            spec("name: a\ntype: slack\nurl: http://y\n"),
        ];
        assert_eq!(validate_all(&two).unwrap_err().0, "notifications[1].name");
        assert!(serde_saphyr::from_str::<NotificationSpec>("name: a\ntype: teams\n").is_err());
    }

    #[test]
    fn ferry_yaml_errors_name_the_file_and_field() {
        let path = std::path::Path::new("ferry.yaml");
        let err =
            crate::FerryFile::parse("notifications:\n  - name: ops\n    type: webhook\n", path)
                .unwrap_err()
                .to_string();
        assert!(
            err.starts_with("ferry.yaml: field notifications[0].url: required"),
            "{err}"
        );
        let project = "projects:\n  - name: team\n    notifications:\n      - name: s\n        type: github\n";
        let err = crate::FerryFile::parse(project, path)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("ferry.yaml project \"team\": field notifications[0].secretRef:"),
            "{err}"
        );
        let resource: crate::ProjectSpec = serde_saphyr::from_str(
            "notifications:\n  - name: s\n    type: gitea\n    url: https://git.example.com\n    tokenFile: /t\n",
        )
        .unwrap();
        assert!(resource.validate().is_ok());
        assert_eq!(
            resource.validate_resource().unwrap_err().0,
            "notifications[0].tokenFile"
        );
    }
}
