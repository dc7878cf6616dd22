//! An app's identity: the namespace and name of its `Application` (or of its entry in
//! `ferry.yaml`, whose apps live in one configurable namespace).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The identity of an app, `namespace/name`. Two apps of one name in different
/// namespaces are different apps: their stores, inventories, labels, histories and
/// metrics are apart.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AppKey {
    /// The namespace of the `Application` (for `ferry.yaml` apps, the apps' namespace).
    pub namespace: String,
    /// The app's name.
    pub name: String,
}

/// A text that is not an app key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppKeyError {
    /// The namespace part is not a namespace name.
    #[error("app {text:?}: {namespace:?} is not a valid namespace name")]
    Namespace {
        /// The whole text.
        text: String,
        /// The namespace part.
        namespace: String,
    },
    /// The name part is not a valid app name.
    #[error(
        "app {text:?}: {name:?} is not a valid app name (at most 63 characters: a-z, 0-9, '-' and '.', starting and ending with a letter or digit)"
    )]
    Name {
        /// The whole text.
        text: String,
        /// The name part.
        name: String,
    },
}

impl AppKey {
    /// A key from its parts, unchecked.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// Parses `namespace/name`, or a bare `name` in `default_namespace`; both parts are
    /// checked ([`AppKey::check`]).
    pub fn parse(text: &str, default_namespace: &str) -> Result<Self, AppKeyError> {
        let key = match text.split_once('/') {
            Some((namespace, name)) => Self::new(namespace, name),
            None => Self::new(default_namespace, text),
        };
        key.check().map_err(|e| match e {
            AppKeyError::Namespace { namespace, .. } => AppKeyError::Namespace {
                text: text.into(),
                namespace,
            },
            AppKeyError::Name { name, .. } => AppKeyError::Name {
                text: text.into(),
                name,
            },
        })?;
        Ok(key)
    }

    /// Checks that the namespace is a DNS label and the name a lowercase DNS subdomain
    /// of at most 63 characters, so that both fit label values and object names.
    pub fn check(&self) -> Result<(), AppKeyError> {
        if !crate::app::is_dns_label(&self.namespace) {
            return Err(AppKeyError::Namespace {
                text: self.to_string(),
                namespace: self.namespace.clone(),
            });
        }
        if !is_app_name(&self.name) {
            return Err(AppKeyError::Name {
                text: self.to_string(),
                name: self.name.clone(),
            });
        }
        Ok(())
    }

    /// A form usable inside object names and file names, `namespace.name`: unique per
    /// key, since a namespace has no dot.
    pub fn dotted(&self) -> String {
        format!("{}.{}", self.namespace, self.name)
    }
}

/// Whether `name` is a valid app name: a lowercase DNS subdomain of at most 63
/// characters (a label value too).
pub(crate) fn is_app_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 63 && name.split('.').all(crate::app::is_dns_label)
}

impl fmt::Display for AppKey {
    /// `namespace/name`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

impl FromStr for AppKey {
    type Err = AppKeyError;

    /// Parses `namespace/name`; a bare name is in [`crate::SYSTEM_NAMESPACE`].
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text, crate::SYSTEM_NAMESPACE)
    }
}

impl Serialize for AppKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for AppKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl utoipa::PartialSchema for AppKey {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some("An app's identity, `namespace/name`."))
            .examples([serde_json::json!("team-a/web")])
            .into()
    }
}

impl utoipa::ToSchema for AppKey {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_parse_round_trip() {
        let key = AppKey::new("team-a", "web");
        assert_eq!(key.to_string(), "team-a/web");
        assert_eq!(AppKey::parse("team-a/web", "ferry-system").unwrap(), key);
        assert_eq!(key.dotted(), "team-a.web");
        assert_eq!(
            AppKey::parse("web", "apps").unwrap(),
            AppKey::new("apps", "web")
        );
        assert_eq!("web".parse::<AppKey>().unwrap().namespace, "ferry-system");
        let json = serde_json::to_string(&key).unwrap();
        assert_eq!(json, "\"team-a/web\"");
        assert_eq!(serde_json::from_str::<AppKey>(&json).unwrap(), key);
    }

    #[test]
    fn bad_parts_are_named() {
        assert_eq!(
            AppKey::parse("Team/web", "x").unwrap_err().to_string(),
            "app \"Team/web\": \"Team\" is not a valid namespace name"
        );
        let err = AppKey::parse("a/b/c", "x").unwrap_err();
        assert!(
            matches!(err, AppKeyError::Name { ref name, .. } if name == "b/c"),
            "{err}"
        );
        assert!(AppKey::parse("/web", "x").is_err());
        assert!(AppKey::parse("a/", "x").is_err());
        assert!(AppKey::parse(&"w".repeat(64), "x").is_err());
        assert!(AppKey::parse("a/web.v2", "x").is_ok());
        assert!(AppKey::parse("a/web..v2", "x").is_err());
        assert!(serde_json::from_str::<AppKey>("\"a/B\"").is_err());
    }
}
