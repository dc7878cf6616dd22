//! The Jsonnet timeout, in a test binary of its own: the runs it gives up keep running
//! (and count against [`MAX_ABANDONED`]) until the process ends, which would refuse the
//! Jsonnet renders of other tests in the same process.

use std::time::{Duration, Instant};

use ferry_model::SourceSpec;
use ferry_render::{MAX_ABANDONED, RenderError, RenderRequest, Tools, render};

#[test]
fn runaway_evaluations_time_out_and_are_bounded() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("app");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(
        dir.join("main.jsonnet"),
        "local f(n) = if n == 0 then 0 else f(n - 1) + f(n - 1);\n{ n: f(40) }\n",
    )
    .unwrap();
    let spec = SourceSpec::default();
    let req = RenderRequest {
        app: "demo",
        dir: &dir,
        root: root.path(),
        namespace: None,
        spec: &spec,
        kube_version: None,
        api_versions: &[],
    };
    let tools = Tools {
        helm: None,
        kustomize: None,
        timeout: Duration::from_secs(1),
        max_output: 1 << 20,
        chart_cache: root.path().join("charts"),
    };
    for _ in 0..MAX_ABANDONED {
        let started = Instant::now();
        let err = render(&req, &tools).unwrap_err();
        assert!(matches!(err, RenderError::EvalTimeout { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            "jsonnet did not finish within 1s; the evaluation was abandoned"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
    }
    let started = Instant::now();
    let err = render(&req, &tools).unwrap_err().to_string();
    assert!(
        err.ends_with(&format!(
            "{MAX_ABANDONED} earlier evaluations that timed out are still running; not starting another until they end"
        )),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "refused at once"
    );
}
