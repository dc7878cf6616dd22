//! The OpenAPI document (`openapi.json`) is the one generated from the API types and the
//! handlers' `#[utoipa::path]` attributes, and lists exactly the routes the agent serves:
//! the agent's own router (`crates/agent/src/api.rs`) and the dashboard's (`src/lib.rs`),
//! read from their `.route(...)` calls. That every documented route answers, and that
//! sample answers carry the documented fields, is checked against a running agent in
//! `crates/ferry/tests/web_api.rs`.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;

const METHODS: &[&str] = &["get", "post", "put", "patch", "delete"];

/// `(method, path)` of every `.route("path", method(..).method(..))` call in `file`
/// (line numbers in its messages count the calls joined).
fn routes(file: &Path) -> BTreeSet<(String, String)> {
    let text =
        std::fs::read_to_string(file).unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
    // A call rustfmt wrapped (`.route(\n    "path",\n    get(..),\n)`) on one line again.
    let text = (text.lines().map(str::trim).collect::<Vec<_>>().join("\n"))
        .replace(".route(\n", ".route(")
        .replace("\",\n", "\", ");
    let mut out = BTreeSet::new();
    for (n, line) in text.lines().enumerate() {
        let Some(rest) = line.trim().strip_prefix(".route(\"") else {
            continue;
        };
        let (path, handlers) = rest
            .split_once('"')
            .unwrap_or_else(|| panic!("{}:{}: unterminated path", file.display(), n + 1));
        let mut found = false;
        for method in METHODS {
            let call = format!("{method}(");
            let as_chain = format!(".{method}(");
            let first = handlers.trim_start_matches(", ").starts_with(&call);
            if first || handlers.contains(&as_chain) {
                out.insert((method.to_string(), path.to_string()));
                found = true;
            }
        }
        assert!(
            found,
            "{}:{}: no method in {line:?}: route on one line, please",
            file.display(),
            n + 1
        );
    }
    out
}

fn document() -> Value {
    serde_json::from_str(ferry_web::OPENAPI).expect("openapi.json is valid JSON")
}

/// Set to rewrite `openapi.json` from the types instead of comparing with it.
const BLESS: &str = "FERRY_BLESS";

#[test]
fn openapi_json_is_the_generated_document() {
    let path = manifest_dir().join("openapi.json");
    let generated = ferry_web::openapi_document();
    if std::env::var_os(BLESS).is_some() {
        std::fs::write(&path, &generated)
            .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        return;
    }
    let checked_in = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    assert!(
        checked_in == generated,
        "crates/web/openapi.json is not the document generated from the API types and \
         handlers (first difference at line {}); regenerate it with \
         `{BLESS}=1 cargo test -p ferry-web --test openapi` and commit it",
        first_difference(&checked_in, &generated)
    );
}

/// The 1-based number of the first line where `a` and `b` differ.
fn first_difference(a: &str, b: &str) -> usize {
    let mut lines = a.lines().zip(b.lines());
    1 + lines
        .position(|(x, y)| x != y)
        .unwrap_or(a.lines().count().min(b.lines().count()))
}

#[test]
fn every_route_is_documented_and_vice_versa() {
    let here = &manifest_dir();
    let mut served = routes(&here.join("../agent/src/api.rs"));
    served.extend(routes(&here.join("src/lib.rs")));
    assert!(
        served.contains(&("get".into(), "/api/v1/apps".into())),
        "the route scan found nothing sensible: {served:?}"
    );
    let doc = document();
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(path, ops)| {
            ops.as_object()
                .expect("operations")
                .keys()
                .map(move |m| (m.clone(), path.clone()))
        })
        .collect();
    let undocumented: Vec<_> = served.difference(&documented).collect();
    let unserved: Vec<_> = documented.difference(&served).collect();
    assert!(
        undocumented.is_empty(),
        "routes missing from crates/web/openapi.json: {undocumented:?}"
    );
    assert!(
        unserved.is_empty(),
        "documented routes no router serves: {unserved:?}"
    );
}

/// Every `$ref` in `v`.
fn refs<'v>(v: &'v Value, out: &mut Vec<&'v str>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get("$ref") {
                out.push(r);
            }
            m.values().for_each(|v| refs(v, out));
        }
        Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[test]
fn document_is_well_formed() {
    let doc = document();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(!all.is_empty());
    for r in all {
        let pointer = r.strip_prefix('#').expect("local $ref");
        assert!(doc.pointer(pointer).is_some(), "dangling $ref {r}");
    }
    let mut ids = BTreeSet::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            assert!(METHODS.contains(&method.as_str()), "{method} {path}");
            let id = op["operationId"].as_str().expect("operationId");
            assert!(ids.insert(id.to_string()), "duplicate operationId {id}");
            assert!(op["summary"].is_string(), "{method} {path}: summary");
            assert!(
                op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                "{method} {path}: responses"
            );
            // Every path parameter is declared.
            for segment in path.split('/') {
                if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    let declared =
                        op["parameters"].as_array().into_iter().flatten().any(|p| {
                            p["in"] == "path" && p["name"] == name && p["required"] == true
                        });
                    assert!(declared, "{method} {path}: path parameter {name}");
                }
            }
        }
    }
}

/// The package directory, read when the test runs (cargo sets it) rather than baked in at
/// compile time: a test binary reused from a shared target dir may have been built from
/// another checkout of the same sources.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .expect("cargo test sets CARGO_MANIFEST_DIR")
        .into()
}
