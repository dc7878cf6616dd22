//! YAML/JSON documents to manifests, and manifests back to YAML.

use ferry_model::{Manifest, Origin};
use serde_json::Value;
use serde_saphyr::{MessageFormatter, UserMessageFormatter};

use crate::RenderError;

/// One document of a YAML stream, as text.
pub(crate) struct Chunk<'a> {
    /// Zero-based line of the file where the document starts.
    first_line: usize,
    /// The document, including its `---` line.
    pub(crate) text: &'a str,
}

impl Chunk<'_> {
    /// Parses the document; `Null` for an empty one. Errors carry `file` and the location
    /// within the whole stream.
    pub(crate) fn parse(&self, file: &str) -> Result<Value, RenderError> {
        let mut options = serde_saphyr::Options::default();
        options.legacy_octal_numbers = true;
        options.with_snippet = false;
        serde_saphyr::from_str_with_options(self.text, options).map_err(|err| {
            let (line, column) = err.location().map_or((1, 1), |l| (l.line(), l.column()));
            RenderError::Syntax {
                file: file.to_string(),
                line: self.first_line as u64 + line,
                column,
                message: yaml_message(&err),
            }
        })
    }
}

fn yaml_message(err: &serde_saphyr::Error) -> String {
    let mut inner = err;
    while let serde_saphyr::Error::AliasError { error, .. }
    | serde_saphyr::Error::WithSnippet { error, .. } = inner
    {
        inner = error;
    }
    one_line(&UserMessageFormatter.format_message(inner))
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Splits a YAML stream into its documents at `---` and `...` lines, counting empty
/// documents. Comments and directives before the first document belong to it.
pub(crate) fn yaml_chunks(text: &str) -> Vec<Chunk<'_>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut chunks = Vec::new();
    let (mut start, mut first_line, mut content, mut offset) = (0, 0, false, 0);
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let bare = line.trim_end_matches(['\n', '\r']);
        if is_marker(bare, "---") {
            if content {
                chunks.push(Chunk {
                    first_line,
                    text: &text[start..offset],
                });
                (start, first_line) = (offset, i);
            }
            content = true;
        } else if is_marker(bare, "...") {
            if content {
                let end = offset + line.len();
                chunks.push(Chunk {
                    first_line,
                    text: &text[start..end],
                });
                (start, first_line, content) = (end, i + 1, false);
            }
        } else if !content {
            let trimmed = bare.trim_start();
            content = !(trimmed.is_empty() || trimmed.starts_with('#') || bare.starts_with('%'));
        }
        offset += line.len();
    }
    if content {
        chunks.push(Chunk {
            first_line,
            text: &text[start..],
        });
    }
    chunks
}

fn is_marker(line: &str, marker: &str) -> bool {
    line.strip_prefix(marker)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t']))
}

/// Parses a multi-document YAML stream, or a JSON file (one or more values) when `file`
/// ends in `.json`, into manifests. Empty documents are skipped, `List` kinds with
/// `items` are flattened, and every manifest's origin is `file` and its document index
/// (counting empty documents).
///
/// YAML values are read the way kubectl (YAML 1.1) reads them where it matters for
/// Kubernetes: plain `yes`/`no`/`on`/`off`/`y`/`n` are booleans and `0644` is octal
/// (420), so `defaultMode: 0644` means what it means to kubectl, while a ConfigMap value
/// `yes` stays a boolean that the API server rejects, as it does for kubectl. Quoted and
/// `!!str` scalars always stay strings. Mapping keys stay as written (`on:` is the key
/// `"on"`, where kubectl would make it `"true"`). Integral floats (`1e3`, `2.0`) become
/// integers, as they do when kubectl re-encodes them, and duplicate keys are an error.
pub fn parse_documents(text: &str, file: &str) -> Result<Vec<Manifest>, RenderError> {
    let mut out = Vec::new();
    if file.ends_with(".json") {
        let values = serde_json::Deserializer::from_str(text).into_iter::<Value>();
        for (doc, value) in values.enumerate() {
            let value = value.map_err(|err| json_error(&err, file))?;
            let origin = Origin {
                file: file.to_string(),
                doc,
            };
            push_manifests(value, &origin, &mut out)?;
        }
    } else {
        for (doc, chunk) in yaml_chunks(text).iter().enumerate() {
            let origin = Origin {
                file: file.to_string(),
                doc,
            };
            push_manifests(chunk.parse(file)?, &origin, &mut out)?;
        }
    }
    Ok(out)
}

fn json_error(err: &serde_json::Error, file: &str) -> RenderError {
    let message = err.to_string();
    let message = message
        .rsplit_once(" at line ")
        .map_or(message.as_str(), |(m, _)| m);
    RenderError::Syntax {
        file: file.to_string(),
        line: err.line() as u64,
        column: err.column() as u64,
        message: message.to_string(),
    }
}

/// Validates a parsed document and appends it (or, for a list, its items) to `out`.
/// A `Null` (empty) document adds nothing.
pub(crate) fn push_manifests(
    mut value: Value,
    origin: &Origin,
    out: &mut Vec<Manifest>,
) -> Result<(), RenderError> {
    if value.is_null() {
        return Ok(());
    }
    normalize_numbers(&mut value);
    flatten(value, origin, out)
}

fn flatten(value: Value, origin: &Origin, out: &mut Vec<Manifest>) -> Result<(), RenderError> {
    let is_list = value
        .get("kind")
        .and_then(Value::as_str)
        .is_some_and(|kind| kind.ends_with("List"));
    match value {
        Value::Object(mut map) if is_list && map.get("items").is_some_and(Value::is_array) => {
            if let Some(Value::Array(items)) = map.remove("items") {
                for item in items {
                    flatten(item, origin, out)?;
                }
            }
            Ok(())
        }
        value => {
            out.push(Manifest::new(value, origin.clone())?);
            Ok(())
        }
    }
}

/// Turns floats with an integral value that an `f64` holds exactly into integers.
fn normalize_numbers(value: &mut Value) {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    match value {
        Value::Number(n) if n.is_f64() => {
            if let Some(f) = n.as_f64()
                && f.fract() == 0.0
                && f.abs() <= EXACT
            {
                *value = Value::from(f as i64);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(normalize_numbers),
        Value::Object(map) => map.values_mut().for_each(normalize_numbers),
        _ => {}
    }
}

/// Writes manifests as one YAML stream, documents separated by `---`. The output is
/// deterministic and reads back to the same objects (strings such as `"yes"` or `"0755"`
/// stay quoted, so YAML 1.1 readers such as kubectl see strings too).
pub fn to_yaml(manifests: &[Manifest]) -> String {
    manifests
        .iter()
        .map(|m| serde_saphyr::to_string(&m.object).expect("a JSON value always serializes"))
        .collect::<Vec<_>>()
        .join("---\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn texts(text: &str) -> Vec<(usize, &str)> {
        yaml_chunks(text)
            .into_iter()
            .map(|c| (c.first_line, c.text))
            .collect()
    }

    #[test]
    fn chunks_split_at_markers() {
        assert_eq!(texts(""), vec![]);
        assert_eq!(texts("# only a comment\n\n"), vec![]);
        assert_eq!(texts("a: 1\n"), vec![(0, "a: 1\n")]);
        assert_eq!(
            texts("# c\n%YAML 1.2\n---\na: 1\n--- # x\n---\nb: |\n  ---\n...\nc: 3"),
            vec![
                (0, "# c\n%YAML 1.2\n---\na: 1\n"),
                (4, "--- # x\n"),
                (5, "---\nb: |\n  ---\n...\n"),
                (9, "c: 3"),
            ]
        );
        assert_eq!(
            texts("---\r\na: 1\r\n---\r\n"),
            vec![(0, "---\r\na: 1\r\n"), (2, "---\r\n")]
        );
        assert_eq!(texts("\u{feff}---x: 1\n"), vec![(0, "---x: 1\n")]);
    }

    #[test]
    fn numbers_are_normalized() {
        let mut v = json!({"a": 2.0, "b": [1e3, 2.5, -0.0], "c": 1e300});
        normalize_numbers(&mut v);
        assert_eq!(v, json!({"a": 2, "b": [1000, 2.5, 0], "c": 1e300}));
        assert!(v["a"].is_i64());
    }
}
