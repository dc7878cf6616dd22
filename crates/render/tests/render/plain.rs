use ferry_model::{Manifest, RendererKind};
use ferry_render::{Plain, RenderError, Renderer, parse_documents, render, to_yaml};
use serde_json::json;

use crate::common::{App, no_tools, write};

fn cm(name: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n")
}

fn names(manifests: &[Manifest]) -> Vec<String> {
    manifests
        .iter()
        .map(|m| format!("{} {}", m.name(), m.origin))
        .collect()
}

#[test]
fn files_are_read_recursively_in_path_order() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    write(r, "app/b.yaml", &cm("b"));
    write(r, "app/a.yaml", &cm("a"));
    write(r, "app/a/z.yml", &cm("a-z"));
    write(
        r,
        "app/c.json",
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"}}"#,
    );
    write(r, "app/sub/dir/x.yaml", &cm("x"));
    write(r, "app/README.md", "# not a manifest\n");
    write(r, "app/.git/config.yaml", "not: [valid");
    write(r, "app/.hidden.yaml", "not: [valid");
    let app = App::new(r, "app");
    let ms = render(&app.request(), &no_tools()).unwrap();
    assert_eq!(
        names(&ms),
        [
            "a-z a/z.yml (document 1)",
            "a a.yaml (document 1)",
            "b b.yaml (document 1)",
            "c c.json (document 1)",
            "x sub/dir/x.yaml (document 1)",
        ]
    );
}

#[test]
fn multi_document_files_skip_empty_documents() {
    let text = format!(
        "# leading comment\n---\n{}---\n---\n# only a comment\n---\n{}...\n---\n{}\n",
        cm("one"),
        cm("two"),
        cm("three")
    );
    let ms = parse_documents(&text, "multi.yaml").unwrap();
    assert_eq!(
        names(&ms),
        [
            "one multi.yaml (document 1)",
            "two multi.yaml (document 4)",
            "three multi.yaml (document 5)",
        ]
    );
    assert!(parse_documents("", "empty.yaml").unwrap().is_empty());
    assert!(
        parse_documents("---\n---\n", "empty.yaml")
            .unwrap()
            .is_empty()
    );
}

#[test]
fn lists_are_flattened() {
    let text = format!(
        "apiVersion: v1\nkind: List\nitems:\n- {}\n- apiVersion: v1\n  kind: ConfigMapList\n  items:\n  - {{apiVersion: v1, kind: ConfigMap, metadata: {{name: nested}}}}\n---\n{}",
        "{apiVersion: v1, kind: ConfigMap, metadata: {name: first}}",
        cm("after")
    );
    let ms = parse_documents(&text, "list.yaml").unwrap();
    assert_eq!(
        names(&ms),
        [
            "first list.yaml (document 1)",
            "nested list.yaml (document 1)",
            "after list.yaml (document 2)",
        ]
    );
    let json = r#"{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"v1","kind":"Secret","metadata":{"name":"s"}}]}"#;
    let ms = parse_documents(json, "list.json").unwrap();
    assert_eq!(ms[0].kind(), "Secret");
}

#[test]
fn json_files_may_hold_several_values() {
    let text = "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"a\"},\"data\":{\"n\":\"0755\"}}\n{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"b\"}}";
    let ms = parse_documents(text, "two.json").unwrap();
    assert_eq!(
        names(&ms),
        ["a two.json (document 1)", "b two.json (document 2)"]
    );
    assert_eq!(ms[0].object["data"]["n"], "0755");
}

#[test]
fn syntax_errors_give_file_line_and_column() {
    let text = format!(
        "{}---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [x\ndata: {{}}\n",
        cm("ok")
    );
    let err = parse_documents(&text, "bad.yaml").unwrap_err();
    assert!(
        matches!(err, RenderError::Syntax { line: 10, .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.starts_with("bad.yaml:10:"), "{msg}");
    assert!(!msg.contains('\n'), "{msg}");

    let err = parse_documents("a: 1\na: 2\n", "dup.yaml").unwrap_err();
    assert_eq!(
        err.to_string(),
        "dup.yaml:2:1: duplicate mapping key `a` is not allowed here"
    );

    let err = parse_documents("{\"a\": 1,\n \"b\": }", "bad.json").unwrap_err();
    assert_eq!(err.to_string(), "bad.json:2:7: expected value");
}

#[test]
fn documents_must_be_objects_with_identity() {
    let text = format!(
        "{}---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  namespace: x\n",
        cm("ok")
    );
    let err = parse_documents(&text, "cm.yaml").unwrap_err();
    assert_eq!(
        err.to_string(),
        "cm.yaml (document 2): object has no metadata.name"
    );

    let err = parse_documents("- a\n- b\n", "seq.yaml").unwrap_err();
    assert_eq!(
        err.to_string(),
        "seq.yaml (document 1): document is not a mapping"
    );

    let err = parse_documents("kind: ConfigMap\nmetadata: {name: a}\n", "k.yaml").unwrap_err();
    assert_eq!(
        err.to_string(),
        "k.yaml (document 1): object has no apiVersion"
    );
}

#[test]
fn duplicate_objects_name_both_origins() {
    let root = tempfile::tempdir().unwrap();
    write(root.path(), "a.yaml", &cm("same"));
    write(
        root.path(),
        "b/c.yaml",
        &format!("{}---\n{}", cm("other"), cm("same")),
    );
    let app = App::new(root.path(), "");
    let err = render(&app.request(), &no_tools()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "duplicate object ConfigMap/same: in a.yaml (document 1) and b/c.yaml (document 2)"
    );
}

/// kubectl reads YAML 1.1: plain `yes`/`on` are booleans and `0755` is octal. ferry does
/// the same for values (the API server then rejects a boolean where it wants a string,
/// as it does for kubectl), never touches quoted or `!!str` scalars, and keeps keys as
/// written.
#[test]
fn yaml_1_1_scalars_are_pinned() {
    let text = "apiVersion: v1
kind: ConfigMap
metadata:
  name: flags
data:
  plainYes: yes
  plainOn: on
  plainN: n
  octal: 0755
  nine: 09
  quotedYes: \"yes\"
  singleOn: 'on'
  quotedOctal: \"0755\"
  tagged: !!str yes
  on: key-as-written
  float: 1.5
  intFloat: 2.0
";
    let ms = parse_documents(text, "flags.yaml").unwrap();
    assert_eq!(
        ms[0].object["data"],
        json!({
            "plainYes": true, "plainOn": true, "plainN": false, "octal": 493, "nine": 9,
            "quotedYes": "yes", "singleOn": "on", "quotedOctal": "0755", "tagged": "yes",
            "on": "key-as-written", "float": 1.5, "intFloat": 2
        })
    );
    let secret = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  volumes:\n  - name: s\n    secret: {secretName: s, defaultMode: 0644}\n";
    let ms = parse_documents(secret, "pod.yaml").unwrap();
    assert_eq!(
        ms[0].object["spec"]["volumes"][0]["secret"]["defaultMode"],
        420
    );

    // The classic gotcha: a plain `n` (or `y`, `no`, ...) is a boolean, not a name.
    let err = parse_documents(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: n}\n",
        "n.yaml",
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "n.yaml (document 1): object has no metadata.name"
    );
}

#[test]
fn to_yaml_round_trips_and_quotes_ambiguous_strings() {
    let text = format!(
        "{}data:\n  a: \"yes\"\n  b: \"0755\"\n  c: \"on\"\n  d: \"1e3\"\n  e: \"\"\n  f: \"null\"\n  g: |\n    two\n    lines\n---\n{}",
        cm("x"),
        cm("second")
    );
    let ms = parse_documents(&text, "in.yaml").unwrap();
    let yaml = to_yaml(&ms);
    assert_eq!(yaml, to_yaml(&ms), "deterministic");
    assert_eq!(yaml.matches("\n---\n").count(), 1, "{yaml}");
    for quoted in ["\"yes\"", "\"0755\"", "\"on\"", "\"1e3\"", "\"null\""] {
        assert!(yaml.contains(quoted), "{quoted} in {yaml}");
    }
    let back = parse_documents(&yaml, "out.yaml").unwrap();
    let objects = |ms: &[Manifest]| ms.iter().map(|m| m.object.clone()).collect::<Vec<_>>();
    assert_eq!(objects(&back), objects(&ms));
    assert_eq!(to_yaml(&[]), "");
}

#[test]
fn symlinked_files_must_stay_inside_the_working_copy() {
    let root = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    write(outside.path(), "secret.yaml", &cm("secret"));
    write(root.path(), "app/inside.yaml", &cm("inside"));
    std::os::unix::fs::symlink(
        root.path().join("app/inside.yaml"),
        root.path().join("app/link.yaml"),
    )
    .unwrap();
    let app = App::new(root.path(), "app");
    let ms = Plain.render(&app.request()).unwrap();
    assert_eq!(ms.len(), 2, "a link inside the working copy is followed");

    std::os::unix::fs::symlink(
        outside.path().join("secret.yaml"),
        root.path().join("app/escape.yaml"),
    )
    .unwrap();
    let err = Plain.render(&app.request()).unwrap_err();
    assert!(matches!(err, RenderError::OutsideRoot { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("escape.yaml is outside the working copy"),
        "{err}"
    );
}

#[test]
fn forced_plain_renders_a_kustomize_directory_as_files() {
    let root = tempfile::tempdir().unwrap();
    write(root.path(), "kustomization.yaml", "resources: [cm.yaml]\n");
    write(root.path(), "cm.yaml", &cm("a"));
    let mut app = App::new(root.path(), "");
    app.spec.renderer = RendererKind::Plain;
    let err = render(&app.request(), &no_tools()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "kustomization.yaml (document 1): object has no apiVersion"
    );
}

#[test]
fn a_directory_without_manifests_is_an_error_naming_its_files() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    write(r, "app/README.md", "# docs\n");
    write(r, "app/config.toml", "a = 1\n");
    write(r, "app/notes/todo.txt", "later\n");
    let err = render(&App::new(r, "app").request(), &no_tools()).unwrap_err();
    assert!(matches!(err, RenderError::NoManifests { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.ends_with("found only README.md, config.toml, notes/todo.txt"),
        "{text}"
    );
}

#[test]
fn an_empty_directory_renders_no_objects() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("app")).unwrap();
    let ms = render(&App::new(root.path(), "app").request(), &no_tools()).unwrap();
    assert!(ms.is_empty());
}
