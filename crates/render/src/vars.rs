//! `${VAR}` substitution in rendered manifests.

use std::borrow::Cow;
use std::collections::BTreeMap;

use ferry_model::Manifest;
use serde_json::Value;

use crate::RenderError;

/// Substitutes variables in `text`:
///
/// - `${NAME}` becomes the value of `NAME`;
/// - `${NAME:=default}` becomes the value of `NAME`, or `default` when `NAME` is
///   undefined or empty (the default ends at the first `}`);
/// - `$${` becomes a literal `${` (so `$${NAME}` stays `${NAME}`);
/// - an undefined `NAME` without a default is an error naming it when `strict`,
///   else it becomes the empty string.
///
/// Names match `[A-Za-z_][A-Za-z0-9_]*`; any other `$` text is kept as it is.
pub fn substitute<'t>(
    text: &'t str,
    vars: &BTreeMap<String, String>,
    strict: bool,
) -> Result<Cow<'t, str>, String> {
    if !text.contains('$') {
        return Ok(Cow::Borrowed(text));
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        rest = &rest[pos..];
        if let Some(after) = rest.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if let Some((name, default, after)) = reference(rest) {
            match (vars.get(name), default) {
                (Some(value), Some(default)) if value.is_empty() => out.push_str(default),
                (Some(value), _) => out.push_str(value),
                (None, Some(default)) => out.push_str(default),
                (None, None) if strict => return Err(name.to_string()),
                (None, None) => {}
            }
            rest = after;
        } else {
            out.push('$');
            rest = &rest[1..];
        }
    }
    out.push_str(rest);
    Ok(Cow::Owned(out))
}

/// Parses `${NAME}` or `${NAME:=default}` at the start of `text`: the name, the default
/// and the text after the reference.
fn reference(text: &str) -> Option<(&str, Option<&str>, &str)> {
    let body = text.strip_prefix("${")?;
    let name_len = body
        .char_indices()
        .find(|&(i, c)| !(c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())))
        .map_or(body.len(), |(i, _)| i);
    let (name, after_name) = body.split_at(name_len);
    if name.is_empty() {
        return None;
    }
    if let Some(after) = after_name.strip_prefix('}') {
        return Some((name, None, after));
    }
    let default_and_rest = after_name.strip_prefix(":=")?;
    let (default, after) = default_and_rest.split_once('}')?;
    Some((name, Some(default), after))
}

/// Substitutes variables in every string value (not key) of every manifest, then
/// validates each object again (a substituted name may have become empty).
pub(crate) fn substitute_manifests(
    manifests: Vec<Manifest>,
    vars: &BTreeMap<String, String>,
    strict: bool,
) -> Result<Vec<Manifest>, RenderError> {
    manifests
        .into_iter()
        .map(|mut m| {
            let object = m.object_ref(); // as written, before substitution
            if let Err(name) = substitute_value(&mut m.object, vars, strict) {
                return Err(RenderError::UndefinedVariable {
                    name,
                    object: object.to_string(),
                    origin: m.origin,
                });
            }
            Ok(Manifest::new(m.object, m.origin)?)
        })
        .collect()
}

fn substitute_value(
    value: &mut Value,
    vars: &BTreeMap<String, String>,
    strict: bool,
) -> Result<(), String> {
    match value {
        Value::String(s) => {
            if let Cow::Owned(new) = substitute(s, vars, strict)? {
                *s = new;
            }
        }
        Value::Array(items) => {
            for item in items {
                substitute_value(item, vars, strict)?;
            }
        }
        Value::Object(map) => {
            for item in map.values_mut() {
                substitute_value(item, vars, strict)?;
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_model::Origin;
    use serde_json::json;

    fn vars() -> BTreeMap<String, String> {
        [("ENV", "prod"), ("EMPTY", ""), ("n_1", "x")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn sub(text: &str, strict: bool) -> Result<String, String> {
        substitute(text, &vars(), strict).map(Cow::into_owned)
    }

    #[test]
    fn defined_variables() {
        assert_eq!(sub("${ENV}", true).unwrap(), "prod");
        assert_eq!(sub("a-${ENV}-${n_1}.", true).unwrap(), "a-prod-x.");
        assert_eq!(sub("${ENV}${ENV}", true).unwrap(), "prodprod");
        assert_eq!(sub("${EMPTY}|", true).unwrap(), "|");
    }

    #[test]
    fn defaults() {
        assert_eq!(sub("${MISSING:=fallback}", true).unwrap(), "fallback");
        assert_eq!(sub("${ENV:=fallback}", true).unwrap(), "prod");
        assert_eq!(sub("${EMPTY:=fallback}", true).unwrap(), "fallback");
        assert_eq!(sub("${MISSING:=}", true).unwrap(), "");
        assert_eq!(sub("${MISSING:=a b:c}!", true).unwrap(), "a b:c!");
    }

    #[test]
    fn escapes_and_non_references_stay() {
        assert_eq!(sub("$${ENV}", true).unwrap(), "${ENV}");
        assert_eq!(sub("$${MISSING} ${ENV}", true).unwrap(), "${MISSING} prod");
        assert_eq!(
            sub("$$ $ $ENV ${} ${1A} ${ENV", true).unwrap(),
            "$$ $ $ENV ${} ${1A} ${ENV"
        );
        assert_eq!(sub("${ENV:-x} ${A:=b", true).unwrap(), "${ENV:-x} ${A:=b");
        assert_eq!(sub("price: 5$", true).unwrap(), "price: 5$");
        assert!(matches!(
            substitute("plain", &vars(), true),
            Ok(Cow::Borrowed("plain"))
        ));
    }

    #[test]
    fn undefined_strict_and_lenient() {
        assert_eq!(sub("a${MISSING}b", true).unwrap_err(), "MISSING");
        assert_eq!(sub("a${MISSING}b", false).unwrap(), "ab");
        assert_eq!(sub("${ÄB}", true).unwrap(), "${ÄB}");
    }

    fn manifest(object: Value) -> Manifest {
        Manifest::new(
            object,
            Origin {
                file: "cm.yaml".into(),
                doc: 0,
            },
        )
        .unwrap()
    }

    #[test]
    fn manifests_substitute_values_not_keys() {
        let m = manifest(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "app-${ENV}", "namespace": "ns"},
            "data": {"${ENV}": "${ENV}", "list": ["${ENV}", 1, true]}
        }));
        let out = substitute_manifests(vec![m], &vars(), true).unwrap();
        assert_eq!(
            out[0].object,
            json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "app-prod", "namespace": "ns"},
                "data": {"${ENV}": "prod", "list": ["prod", 1, true]}
            })
        );
    }

    #[test]
    fn undefined_variable_names_object_and_origin() {
        let m = manifest(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "a", "namespace": "ns"}, "data": {"k": "${NOPE}"}
        }));
        let err = substitute_manifests(vec![m], &vars(), true).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cm.yaml (document 1): ConfigMap/ns/a: variable NOPE is not defined (strictVars is on)"
        );
    }

    #[test]
    fn name_emptied_by_substitution_is_rejected() {
        let m = manifest(
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "${NOPE}"}}),
        );
        let err = substitute_manifests(vec![m], &vars(), false).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cm.yaml (document 1): object has no metadata.name"
        );
    }
}
