use ferry_model::{JsonnetOptions, Manifest, RendererKind};
use ferry_render::{detect, render, to_yaml};

use crate::common::{App, fixtures, no_tools, write};

fn names(manifests: &[Manifest]) -> Vec<String> {
    manifests
        .iter()
        .map(|m| format!("{}/{} {}", m.kind(), m.name(), m.origin))
        .collect()
}

fn options(ext_vars: &[(&str, &str)], tlas: &[(&str, &str)]) -> Option<JsonnetOptions> {
    let map = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    Some(JsonnetOptions {
        ext_vars: map(ext_vars),
        tlas: map(tlas),
        libs: Vec::new(),
    })
}

/// Renders `dir` of the fixture copied into a temporary working copy.
fn render_err(root: &std::path::Path, dir: &str) -> String {
    let app = App::new(root, dir);
    render(&app.request(), &no_tools()).unwrap_err().to_string()
}

/// Argo CD's `jsonnet-guestbook` layout: one entry point importing `params.libsonnet`,
/// with the environment passed as an external variable and the replica count as a
/// top-level argument.
#[test]
fn guestbook_matches_its_golden_file() {
    let mut app = App::new(&fixtures(), "jsonnet/guestbook");
    assert_eq!(detect(&app.dir, RendererKind::Auto), RendererKind::Jsonnet);
    app.namespace = Some("guestbook".into());
    app.spec.jsonnet = options(&[("env", "staging")], &[("replicas", "3")]);
    let ms = render(&app.request(), &no_tools()).unwrap();
    assert_eq!(
        names(&ms),
        [
            "Service/jsonnet-guestbook-ui guestbook-ui.jsonnet (document 1)",
            "Deployment/jsonnet-guestbook-ui guestbook-ui.jsonnet (document 2)",
        ]
    );
    let golden = fixtures().join("../golden/jsonnet-guestbook.yaml");
    let actual = to_yaml(&ms);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden, &actual).unwrap();
    }
    assert_eq!(actual, std::fs::read_to_string(&golden).unwrap());
    assert_eq!(ms[1].object["spec"]["replicas"], 3);
    assert_eq!(ms[1].object["metadata"]["labels"]["env"], "staging");
}

#[test]
fn missing_ext_var_and_tla_are_named() {
    let mut app = App::new(&fixtures(), "jsonnet/guestbook");
    app.spec.jsonnet = options(&[], &[("replicas", "3")]);
    let err = render(&app.request(), &no_tools()).unwrap_err().to_string();
    assert!(
        err.starts_with("guestbook-ui.jsonnet:")
            && err.contains("external variable \"env\" is not defined"),
        "{err}"
    );
    app.spec.jsonnet = options(&[("env", "x")], &[]);
    let err = render(&app.request(), &no_tools()).unwrap_err().to_string();
    assert!(err.contains("parameter \"replicas\" has no value"), "{err}");
}

#[test]
fn imports_resolve_relative_to_the_importer_then_libs() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    write(
        r,
        "apps/web/main.jsonnet",
        r#"
local k = import 'k.libsonnet';
local shared = import '../shared/names.libsonnet';
k.configMap(shared.name, { script: importstr 'files/run.sh', motd: importstr 'motd.txt' })
"#,
    );
    write(r, "apps/web/files/run.sh", "#!/bin/sh\necho hi\n");
    write(
        r,
        "apps/shared/names.libsonnet",
        "{ name: (import 'suffix.libsonnet').prefix + '-web' }",
    );
    write(r, "apps/shared/suffix.libsonnet", "{ prefix: 'team' }");
    write(
        r,
        "vendor/k.libsonnet",
        "{ configMap(name, data):: { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: name }, data: data } }",
    );
    write(r, "vendor/motd.txt", "welcome");
    let mut app = App::new(r, "apps/web");
    app.spec.jsonnet = Some(JsonnetOptions {
        libs: vec!["vendor".into()],
        ..JsonnetOptions::default()
    });
    let ms = render(&app.request(), &no_tools()).unwrap();
    assert_eq!(names(&ms), ["ConfigMap/team-web main.jsonnet (document 1)"]);
    assert_eq!(ms[0].object["data"]["script"], "#!/bin/sh\necho hi\n");
    assert_eq!(ms[0].object["data"]["motd"], "welcome");

    app.spec.jsonnet = None;
    let err = render(&app.request(), &no_tools()).unwrap_err().to_string();
    assert_eq!(err, "main.jsonnet:2:11: import \"k.libsonnet\" not found");
}

#[test]
fn imports_escaping_the_repository_are_refused() {
    let outside = tempfile::tempdir().unwrap();
    write(outside.path(), "secret.libsonnet", "{ a: 1 }");
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let escape = format!(
        "../../{}/secret.libsonnet",
        outside.path().file_name().unwrap().to_string_lossy()
    );
    let above = root.path().parent().unwrap();
    assert!(above.join(&escape[6..]).exists());
    for (kind, text) in [
        ("import", format!("(import '{escape}')")),
        ("importstr", format!("{{ a: importstr '{escape}' }}")),
        (
            "absolute",
            format!("(import '{}/secret.libsonnet')", outside.path().display()),
        ),
    ] {
        write(r, "app/main.jsonnet", &format!("// {kind}\n{text}\n"));
        let err = render_err(r, "app");
        let import = if kind == "absolute" {
            format!("{}/secret.libsonnet", outside.path().display())
        } else {
            escape.clone()
        };
        assert_eq!(
            err,
            format!(
                "main.jsonnet:2:{}: import {import:?} is outside the repository",
                if kind == "importstr" { 6 } else { 2 }
            ),
            "{kind}"
        );
    }
    std::os::unix::fs::symlink(
        outside.path().join("secret.libsonnet"),
        r.join("app/link.libsonnet"),
    )
    .unwrap();
    write(r, "app/main.jsonnet", "import 'link.libsonnet'\n");
    assert_eq!(
        render_err(r, "app"),
        "main.jsonnet:1:1: import \"link.libsonnet\" is outside the repository"
    );
}

#[test]
fn arrays_nested_arrays_and_lists_are_flattened() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    write(
        r,
        "app/a.jsonnet",
        r#"
local cm(n) = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: n } };
[cm('a1'), [cm('a2'), [cm('a3')]], { apiVersion: 'v1', kind: 'List', items: [cm('a4'), cm('a5')] }]
"#,
    );
    write(
        r,
        "app/b.jsonnet",
        "{ apiVersion: 'v1', kind: 'ConfigMapList', items: [{ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'b' } }] }",
    );
    write(
        r,
        "app/c.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n",
    );
    write(
        r,
        "app/lib.libsonnet",
        "error 'a library is never an entry point'",
    );
    write(
        r,
        "app/sub/d.jsonnet",
        "error 'subdirectories are only imported'",
    );
    write(r, "app/sub/e.yaml", "not: [valid");
    let app = App::new(r, "app");
    let ms = render(&app.request(), &no_tools()).unwrap();
    assert_eq!(
        names(&ms),
        [
            "ConfigMap/c c.yaml (document 1)",
            "ConfigMap/a1 a.jsonnet (document 1)",
            "ConfigMap/a2 a.jsonnet (document 2)",
            "ConfigMap/a3 a.jsonnet (document 3)",
            "ConfigMap/a4 a.jsonnet (document 4)",
            "ConfigMap/a5 a.jsonnet (document 4)",
            "ConfigMap/b b.jsonnet (document 1)",
        ]
    );
}

#[test]
fn bad_jsonnet_names_file_and_line() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    write(r, "app/main.jsonnet", "{\n  a: 1,\n  b: ,\n}\n");
    assert_eq!(
        render_err(r, "app"),
        "main.jsonnet:3:6: syntax error: unexpected token Comma"
    );
    write(r, "app/main.jsonnet", "local x = 1;\n\n{ a: y }\n");
    assert_eq!(
        render_err(r, "app"),
        "main.jsonnet:3:6: unknown variable \"y\""
    );
    write(
        r,
        "app/main.jsonnet",
        "local lib = import 'lib.libsonnet';\nlib.f(1)\n",
    );
    write(
        r,
        "app/lib.libsonnet",
        "{\n  f(x):: error 'bad value ' + x,\n}\n",
    );
    assert_eq!(
        render_err(r, "app"),
        "lib.libsonnet:2:10: error: bad value 1"
    );
    write(r, "app/main.jsonnet", "[1]\n");
    assert_eq!(
        render_err(r, "app"),
        "main.jsonnet (document 1): document is not a mapping"
    );
}

#[test]
fn output_cap_applies() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let app = App::new(r, "app");
    write(
        r,
        "app/main.jsonnet",
        "{ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'big' }, data: { x: std.join('', std.makeArray(20000, function(i) 'a')) } }",
    );
    let mut tools = no_tools();
    tools.max_output = 10_000;
    let err = render(&app.request(), &tools).unwrap_err();
    assert_eq!(
        err.to_string(),
        "jsonnet output exceeds the limit of 10000 bytes"
    );
}
