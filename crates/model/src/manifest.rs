use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ObjectRef;

/// Where a rendered object came from: a file in the repository and its document index.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// Path relative to the app directory (or the renderer's name for generated output).
    pub file: String,
    /// Zero-based index of the YAML document within the file.
    pub doc: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (document {})", self.file, self.doc + 1)
    }
}

/// A manifest that is not a valid Kubernetes object.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ManifestError {
    /// The document is not a mapping.
    #[error("{origin}: document is not a mapping")]
    NotAnObject {
        /// Where the document is.
        origin: Origin,
    },
    /// A required field is absent or empty.
    #[error("{origin}: object has no {field}")]
    MissingField {
        /// Where the object is.
        origin: Origin,
        /// The missing field's path, e.g. `metadata.name`.
        field: &'static str,
    },
}

/// One desired object as rendered from the source, with its origin.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The object, as JSON.
    pub object: Value,
    /// Where it came from.
    #[serde(skip)]
    pub origin: Origin,
}

impl Manifest {
    /// Validates that `object` has `apiVersion`, `kind` and `metadata.name`; a hook (an
    /// object with one of [`crate::hook::HOOK_ANNOTATIONS`]) may have
    /// `metadata.generateName` instead.
    pub fn new(object: Value, origin: Origin) -> Result<Self, ManifestError> {
        if !object.is_object() {
            return Err(ManifestError::NotAnObject { origin });
        }
        let present = |pointer: &str| {
            object
                .pointer(pointer)
                .and_then(Value::as_str)
                .is_some_and(|s| !s.is_empty())
        };
        let hook = crate::hook::HOOK_ANNOTATIONS
            .iter()
            .any(|key| object["metadata"]["annotations"].get(key).is_some());
        for (field, pointer) in [
            ("apiVersion", "/apiVersion"),
            ("kind", "/kind"),
            ("metadata.name", "/metadata/name"),
        ] {
            let generated = field == "metadata.name" && hook && present("/metadata/generateName");
            if !present(pointer) && !generated {
                return Err(ManifestError::MissingField { origin, field });
            }
        }
        Ok(Self { object, origin })
    }

    fn str_at(&self, pointer: &str) -> Option<&str> {
        self.object.pointer(pointer).and_then(Value::as_str)
    }

    /// `apiVersion`.
    pub fn api_version(&self) -> &str {
        self.str_at("/apiVersion").unwrap_or_default()
    }

    /// `kind`.
    pub fn kind(&self) -> &str {
        self.str_at("/kind").unwrap_or_default()
    }

    /// `metadata.name`.
    pub fn name(&self) -> &str {
        self.str_at("/metadata/name").unwrap_or_default()
    }

    /// `metadata.generateName`, if set and non-empty (hooks only).
    pub fn generate_name(&self) -> Option<&str> {
        self.str_at("/metadata/generateName")
            .filter(|s| !s.is_empty())
    }

    /// `metadata.namespace`, if set and non-empty.
    pub fn namespace(&self) -> Option<&str> {
        self.str_at("/metadata/namespace").filter(|s| !s.is_empty())
    }

    /// Sets `metadata.namespace`.
    pub fn set_namespace(&mut self, namespace: &str) {
        self.metadata_mut()
            .insert("namespace".into(), Value::String(namespace.into()));
    }

    /// Removes `metadata.namespace` (for cluster-scoped kinds).
    pub fn clear_namespace(&mut self) {
        self.metadata_mut().remove("namespace");
    }

    /// Sets a label, creating `metadata.labels` when needed.
    pub fn set_label(&mut self, key: &str, value: &str) {
        self.map_in_metadata("labels")
            .insert(key.into(), Value::String(value.into()));
    }

    /// Sets an annotation, creating `metadata.annotations` when needed.
    pub fn set_annotation(&mut self, key: &str, value: &str) {
        self.map_in_metadata("annotations")
            .insert(key.into(), Value::String(value.into()));
    }

    /// An annotation's value.
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.object
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(key))
            .and_then(Value::as_str)
    }

    /// The object's reference.
    pub fn object_ref(&self) -> ObjectRef {
        ObjectRef::new(
            self.api_version(),
            self.kind(),
            self.namespace(),
            self.name(),
        )
    }

    fn metadata_mut(&mut self) -> &mut serde_json::Map<String, Value> {
        let obj = self.object.as_object_mut().expect("validated in new");
        obj.entry("metadata")
            .or_insert_with(|| Value::Object(Default::default()))
            .as_object_mut()
            .expect("validated in new")
    }

    fn map_in_metadata(&mut self, key: &str) -> &mut serde_json::Map<String, Value> {
        let entry = self
            .metadata_mut()
            .entry(key)
            .or_insert_with(|| Value::Object(Default::default()));
        if !entry.is_object() {
            *entry = Value::Object(Default::default());
        }
        entry.as_object_mut().expect("just made an object")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn origin() -> Origin {
        Origin {
            file: "app/cm.yaml".into(),
            doc: 1,
        }
    }

    #[test]
    fn missing_name_names_file_and_field() {
        let err = Manifest::new(
            json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{}}),
            origin(),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "app/cm.yaml (document 2): object has no metadata.name"
        );
    }

    #[test]
    fn only_hooks_may_have_a_generated_name() {
        let job = |annotations: Value| {
            json!({"apiVersion": "batch/v1", "kind": "Job",
                   "metadata": {"generateName": "migrate-", "annotations": annotations}})
        };
        for key in crate::hook::HOOK_ANNOTATIONS {
            let m = Manifest::new(job(json!({key: "PreSync"})), origin()).unwrap();
            assert_eq!((m.name(), m.generate_name()), ("", Some("migrate-")));
        }
        let err = Manifest::new(job(json!({"other": "x"})), origin()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "app/cm.yaml (document 2): object has no metadata.name"
        );
        let mut nameless = job(json!({"ferry.dev/hook": "PreSync"}));
        nameless["metadata"]["generateName"] = json!("");
        assert!(Manifest::new(nameless, origin()).is_err());
    }

    #[test]
    fn labels_and_namespace() {
        let mut m = Manifest::new(
            json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a"}}),
            origin(),
        )
        .unwrap();
        m.set_namespace("team");
        m.set_label("ferry.dev/app", "web");
        assert_eq!(m.namespace(), Some("team"));
        assert_eq!(m.object["metadata"]["labels"]["ferry.dev/app"], "web");
        assert_eq!(m.object_ref().to_string(), "ConfigMap/team/a");
    }
}
