use ferry_render::render;

use crate::common::{App, no_tools, write};

const CM: &str = "apiVersion: v1
kind: ConfigMap
metadata:
  name: app-${ENV}
data:
  url: https://${HOST:=example.com}/${ENV}
  script: echo $${HOME} ${UNSET}
";

fn app(root: &std::path::Path) -> App {
    write(root, "cm.yaml", CM);
    App::new(root, "")
}

#[test]
fn variables_are_substituted_after_rendering() {
    let root = tempfile::tempdir().unwrap();
    let mut app = app(root.path());
    app.spec.vars.insert("ENV".into(), "prod".into());
    let ms = render(&app.request(), &no_tools()).unwrap();
    assert_eq!(ms[0].name(), "app-prod");
    assert_eq!(ms[0].object["data"]["url"], "https://example.com/prod");
    assert_eq!(ms[0].object["data"]["script"], "echo ${HOME} ");
}

#[test]
fn strict_mode_names_the_variable_and_object() {
    let root = tempfile::tempdir().unwrap();
    let mut app = app(root.path());
    app.spec.vars.insert("ENV".into(), "prod".into());
    app.spec.strict_vars = true;
    let err = render(&app.request(), &no_tools()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cm.yaml (document 1): ConfigMap/app-${ENV}: variable UNSET is not defined (strictVars is on)"
    );
}

#[test]
fn apps_without_variables_are_left_alone() {
    let root = tempfile::tempdir().unwrap();
    let app = app(root.path());
    let ms = render(&app.request(), &no_tools()).unwrap();
    assert_eq!(ms[0].name(), "app-${ENV}");
    assert_eq!(ms[0].object["data"]["script"], "echo $${HOME} ${UNSET}");
}
