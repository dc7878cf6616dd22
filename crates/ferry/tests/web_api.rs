//! Integration tests of the agent's HTTP API as the dashboard uses it: the real `ferry
//! agent` binary as a child process against the test bed (`eval "$(testbed/up)"`).
//!
//! Covered: token auth (none, invalid, viewer, operator), cross-site and DNS-rebinding
//! guards, list with filters and pagination, app detail, resource tree, live diff with
//! drift explained (field manager and time), one object's live YAML, events, the SSE
//! stream, sync, rollback, the OpenAPI document (every documented route is served and
//! sample answers carry the documented fields), and that no Secret value ever leaves the
//! agent.

mod agent_common;
mod common;

use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use agent_common::{Agent, AgentHome, WAIT, app_entry, apps_file, eventually};
use common::{Fixture, deployment};
use ferry_testkit::TESTBED_CONTEXT;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};

const VIEWER: &str = "viewer-token-for-web-tests-0001";
const OPERATOR: &str = "operator-token-for-web-tests-0002";
/// The Secret's value: must never appear in any answer.
const SECRET_VALUE: &str = "hunter2-web-api-test-value";
/// The same, base64-encoded, as stored in `data`.
const SECRET_B64: &str = "aHVudGVyMi13ZWItYXBpLXRlc3QtdmFsdWU=";
/// The drifted Secret value.
const SECRET_VALUE_2: &str = "changed-by-hand-secret-value";
/// The same, base64-encoded.
const SECRET_B64_2: &str = "Y2hhbmdlZC1ieS1oYW5kLXNlY3JldC12YWx1ZQ==";

/// An HTTP client for one agent with one token (or none), keeping every body it received.
struct Api<'a> {
    agent: &'a Agent,
    token: Option<&'a str>,
    http: reqwest::Client,
    bodies: &'a Mutex<Vec<String>>,
}

impl<'a> Api<'a> {
    fn new(agent: &'a Agent, token: Option<&'a str>, bodies: &'a Mutex<Vec<String>>) -> Self {
        Self {
            agent,
            token,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("HTTP client"),
            bodies,
        }
    }

    async fn send(&self, req: reqwest::RequestBuilder, what: &str) -> (u16, Value) {
        let req = match self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        let resp = req.send().await.unwrap_or_else(|e| panic!("{what}: {e}"));
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        self.bodies.lock().unwrap().push(text.clone());
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let req = self.http.get(format!("{}{path}", self.agent.url));
        self.send(req, &format!("GET {path}")).await
    }

    /// GET that must answer 200.
    async fn ok(&self, path: &str) -> Value {
        let (status, body) = self.get(path).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    async fn post(
        &self,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        let mut req = self.http.post(format!("{}{path}", self.agent.url));
        if let Some(body) = body {
            req = req.json(&body);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.send(req, &format!("POST {path}")).await
    }

    /// `POST /api/v1/apps/ferry-system/<app>/<action>` without a body.
    async fn action(&self, app: &str, action: &str) -> (u16, Value) {
        self.post(
            &format!("/api/v1/apps/ferry-system/{app}/{action}"),
            None,
            &[],
        )
        .await
    }

    async fn wait_app(&self, app: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let status = self.ok(&format!("/api/v1/apps/ferry-system/{app}")).await;
            if check(&status) {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "app {app}: timed out waiting for {what}; last status:\n{status:#}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// `GET /api/v1/stream` of `agent` with `token`, answered within [`WAIT`]. The client has
/// no overall timeout (the stream never ends): [`read_chunk`] bounds each read.
async fn open_stream(agent: &Agent, token: Option<&str>) -> reqwest::Response {
    let req = reqwest::Client::new().get(format!("{}/api/v1/stream", agent.url));
    let req = match token {
        Some(t) => req.bearer_auth(t),
        None => req,
    };
    tokio::time::timeout(WAIT, req.send())
        .await
        .expect("GET /api/v1/stream: no answer")
        .expect("GET /api/v1/stream")
}

/// Appends the stream's next chunk to `seen`; past `deadline` panics with `missing` and
/// what came so far.
async fn read_chunk(
    stream: &mut reqwest::Response,
    seen: &mut String,
    deadline: tokio::time::Instant,
    missing: &str,
) {
    let chunk = tokio::time::timeout_at(deadline, stream.chunk())
        .await
        .unwrap_or_else(|_| panic!("{missing} on the stream; got:\n{seen}"))
        .expect("reading the stream")
        .expect("the stream stays open");
    seen.push_str(&String::from_utf8_lossy(&chunk));
}

/// The OpenAPI document the agent serves.
fn openapi() -> Value {
    serde_json::from_str(ferry_web::OPENAPI).expect("openapi.json is JSON")
}

/// Follows a `$ref` within the document.
fn resolve<'d>(doc: &'d Value, schema: &'d Value) -> &'d Value {
    match schema["$ref"].as_str() {
        Some(r) => doc
            .pointer(r.trim_start_matches('#'))
            .unwrap_or_else(|| panic!("dangling $ref {r}")),
        None => schema,
    }
}

/// Asserts that `body`, answered with `status` to `method template`, is documented: the
/// status is listed and the body has the schema's required top-level fields (and so does
/// the first item of each documented array field).
fn check_documented(doc: &Value, method: &str, template: &str, status: u16, body: &Value) {
    let response = &doc["paths"][template][method]["responses"][status.to_string()];
    assert!(
        response.is_object(),
        "{method} {template} answered {status}, which openapi.json does not document"
    );
    let Some(schema) = response.pointer("/content/application~1json/schema") else {
        return;
    };
    let schema = resolve(doc, schema);
    let required = |schema: &Value, value: &Value, at: &str| {
        for field in schema["required"].as_array().into_iter().flatten() {
            let field = field.as_str().unwrap();
            assert!(
                value.get(field).is_some(),
                "{method} {template} ({status}): {at} lacks documented field {field:?}: {value:#}"
            );
        }
    };
    required(schema, body, "the answer");
    for (name, prop) in schema["properties"].as_object().into_iter().flatten() {
        let prop = resolve(doc, prop);
        if prop["type"] == "array"
            && let Some(first) = body[name].as_array().and_then(|a| a.first())
        {
            required(resolve(doc, &prop["items"]), first, &format!("{name}[0]"));
        }
    }
}

/// Every node of a tree answer, depth first.
fn nodes(tree: &Value) -> Vec<&Value> {
    fn walk<'v>(n: &'v Value, out: &mut Vec<&'v Value>) {
        out.push(n);
        for c in n["children"].as_array().into_iter().flatten() {
            walk(c, out);
        }
    }
    let mut out = Vec::new();
    for n in tree["nodes"].as_array().into_iter().flatten() {
        walk(n, &mut out);
    }
    out
}

fn kubectl(args: &[&str]) {
    let out = Command::new("kubectl")
        .args(["--context", TESTBED_CONTEXT])
        .args(args)
        .output()
        .expect("running kubectl");
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn secret_manifest() -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: creds\nstringData:\n  password: {SECRET_VALUE}\n"
    )
}

fn service_manifest() -> &'static str {
    "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  selector:\n    app: web\n  ports:\n  - port: 80\n"
}

/// One app of four objects (a Deployment of 2 replicas, a Service, a ConfigMap and a
/// Secret) at its first commit, and an agent with a viewer and an operator token that
/// self-heals nothing. Every answer is kept for [`finish`](Self::finish), which checks that
/// no Secret value and no token leaked.
struct WithTokens {
    // Dropped first: a failing test's agent is killed (its log printed) before clean-up.
    agent: Agent,
    _home: AgentHome,
    f: Fixture,
    app: String,
    /// The first commit.
    first: String,
    /// `/api/v1/apps/<app>`.
    base: String,
    doc: Value,
    bodies: Mutex<Vec<String>>,
}

impl WithTokens {
    async fn start(prefix: &str) -> Self {
        let f = Fixture::new(prefix).await;
        let app = f.app("");
        f.repo.write(
            "app/web.yaml",
            &deployment("web", "web", "", "").replace("replicas: 1", "replicas: 2"),
        );
        f.repo.write("app/svc.yaml", service_manifest());
        f.write_configmap("settings", &[("color", "blue")]);
        f.repo.write("app/creds.yaml", &secret_manifest());
        let first = f.repo.commit("first: blue");
        let home = AgentHome::new(&apps_file(&[app_entry(
            &app,
            f.repo.path(),
            "app",
            f.ns(),
            "1s",
            "    selfHeal: false\n",
        )]));
        let agent = Agent::start(
            &home,
            "agent",
            &[
                "--token",
                &format!("viewer:{VIEWER}"),
                "--token",
                &format!("operator:{OPERATOR}"),
            ],
        )
        .await;
        let base = format!("/api/v1/apps/ferry-system/{app}");
        Self {
            f,
            app,
            first,
            base,
            doc: openapi(),
            bodies: Mutex::new(Vec::new()),
            agent,
            _home: home,
        }
    }

    /// Checks `body` against the OpenAPI document of
    /// `<method> /api/v1/apps/{namespace}/{name}<route>`.
    fn documented(&self, method: &str, route: &str, status: u16, body: &Value) {
        let template = format!("/api/v1/apps/{{namespace}}/{{name}}{route}");
        check_documented(&self.doc, method, &template, status, body);
    }

    /// `GET /api/v1/apps/ferry-system/<app><route>` as the viewer: 200 and as documented.
    async fn viewed(&self, route: &str) -> Value {
        let body = self.viewer().ok(&format!("{}{route}", self.base)).await;
        self.documented("get", route, 200, &body);
        body
    }

    fn client(&self, token: Option<&'static str>) -> Api<'_> {
        Api::new(&self.agent, token, &self.bodies)
    }

    fn anon(&self) -> Api<'_> {
        self.client(None)
    }

    fn viewer(&self) -> Api<'_> {
        self.client(Some(VIEWER))
    }

    fn operator(&self) -> Api<'_> {
        self.client(Some(OPERATOR))
    }

    /// Waits until the app is Synced and Current at the first commit; its status.
    async fn synced(&self) -> Value {
        let first = self.first.as_str();
        self.viewer()
            .wait_app(&self.app, "Synced and Current at the first commit", |s| {
                s["sync"] == "Synced" && s["health"] == "Current" && s["revision"] == first
            })
            .await
    }

    /// Waits until the tree shows 2 ready Pods; the tree then.
    async fn ready_tree(&self) -> Value {
        let viewer = self.viewer();
        let (v, tree_path) = (&viewer, &format!("{}/tree", self.base));
        let tree = eventually("the tree shows 2 ready Pods", WAIT, || async move {
            let tree = v.ok(tree_path).await;
            let pods = nodes(&tree)
                .iter()
                .filter(|n| n["subject"]["kind"] == "Pod" && n["health"]["status"] == "Current")
                .count();
            pods == 2
        })
        .await;
        eprintln!("latency: tree complete after {tree:?}");
        viewer.ok(tree_path).await
    }

    /// Drift: kubectl scales the Deployment, someone edits the ConfigMap and the Secret;
    /// waits until the app is OutOfSync with these 3 objects drifted.
    async fn drift(&self) {
        let f = &self.f;
        kubectl(&["-n", f.ns(), "scale", "deployment", "web", "--replicas=3"]);
        let edit = PatchParams {
            field_manager: Some("kubectl-edit".into()),
            ..Default::default()
        };
        f.api::<ConfigMap>()
            .patch(
                "settings",
                &edit,
                &Patch::Merge(json!({"data": {"color": "red"}})),
            )
            .await
            .expect("editing the ConfigMap");
        f.api::<Secret>()
            .patch(
                "creds",
                &edit,
                &Patch::Merge(json!({"data": {"password": SECRET_B64_2}})),
            )
            .await
            .expect("editing the Secret");
        let status = self
            .viewer()
            .wait_app(&self.app, "OutOfSync with 3 drifted objects", |s| {
                s["sync"] == "OutOfSync" && s["drifted"].as_array().is_some_and(|d| d.len() == 3)
            })
            .await;
        assert_eq!(status["revision"], self.first.as_str());
    }

    /// No Secret value anywhere: not in any answer, not in the agent's log; no token
    /// logged. Then the fixture's clean-up.
    async fn finish(self) {
        let bodies = self.bodies.into_inner().unwrap();
        for body in &bodies {
            for value in [SECRET_VALUE, SECRET_B64, SECRET_VALUE_2, SECRET_B64_2] {
                assert!(
                    !body.contains(value),
                    "a Secret value reached the API: {body}"
                );
            }
        }
        eprintln!("checked {} answers for Secret values", bodies.len());
        let log = self.agent.log();
        for word in [VIEWER, OPERATOR, SECRET_VALUE, SECRET_B64, SECRET_B64_2] {
            assert!(!log.contains(word), "the agent logged {word:?}");
        }
        self.f.finish().await;
    }
}

/// The Deployment's node among the roots of a tree answer.
fn deployment_node(tree: &Value) -> &Value {
    tree["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["subject"]["kind"] == "Deployment")
        .expect("the Deployment is a root")
}

/// No token or a wrong one: 401; a viewer's action: 403; a cross-origin action: 403;
/// probes, the dashboard and the OpenAPI document need no token; `whoami` names the role.
#[tokio::test]
async fn tokens_decide_who_may_read_and_act() {
    let t = WithTokens::start("web-auth").await;
    let (doc, base) = (&t.doc, &t.base);
    let (anon, viewer, operator) = (t.anon(), t.viewer(), t.operator());
    let wrong = t.client(Some("not-a-valid-token-at-all"));
    let (status, body) = anon.get("/api/v1/apps").await;
    assert_eq!(status, 401, "{body}");
    check_documented(doc, "get", "/api/v1/apps", status, &body);
    let (status, body) = wrong.get("/api/v1/apps").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid token"))
    );
    let (status, body) = viewer.action(&t.app, "sync").await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("operator"),
        "{body}"
    );
    t.documented("post", "/{action}", status, &body);
    let (status, body) = operator
        .post(
            &format!("{base}/refresh"),
            None,
            &[("Origin", "http://evil.example")],
        )
        .await;
    assert_eq!(status, 403, "a cross-origin action is refused: {body}");
    let (status, _) = anon.get("/healthz").await;
    assert_eq!(status, 200, "probes need no token");
    let (status, html) = anon.get("/").await;
    assert_eq!(status, 200);
    assert!(
        html.as_str().unwrap().starts_with("<!doctype html>"),
        "{html}"
    );
    let (status, served) = anon.get("/api/openapi.json").await;
    assert_eq!((status, &served), (200, doc));
    assert_eq!(viewer.ok("/api/v1/whoami").await["role"], "viewer");
    assert_eq!(operator.ok("/api/v1/whoami").await["role"], "operator");
    t.finish().await;
}

/// The app's detail lists its objects; the list filters by sync, health and name, and
/// pages.
#[tokio::test]
async fn detail_and_list_with_filters_and_pages() {
    let t = WithTokens::start("web-list").await;
    let (doc, app, viewer) = (&t.doc, &t.app, t.viewer());
    let status = t.synced().await;
    t.documented("get", "", 200, &status);
    assert_eq!(status["objects"].as_array().unwrap().len(), 4, "{status:#}");

    let list = viewer.ok("/api/v1/apps").await;
    check_documented(doc, "get", "/api/v1/apps", 200, &list);
    assert_eq!(list["total"], 1, "{list}");
    assert_eq!(list["items"][0]["name"], app.as_str());
    assert_eq!(viewer.ok("/api/v1/apps?sync=Synced").await["total"], 1);
    assert_eq!(viewer.ok("/api/v1/apps?sync=OutOfSync").await["total"], 0);
    assert_eq!(viewer.ok("/api/v1/apps?health=Current").await["total"], 1);
    assert_eq!(
        viewer.ok(&format!("/api/v1/apps?q={app}")).await["total"],
        1
    );
    assert_eq!(viewer.ok("/api/v1/apps?q=no-such-app").await["total"], 0);
    let page = viewer.ok("/api/v1/apps?offset=1&limit=10").await;
    assert_eq!(
        (page["total"].as_u64(), page["offset"].as_u64()),
        (Some(1), Some(1))
    );
    assert!(page["items"].as_array().unwrap().is_empty(), "{page}");
    assert_eq!(
        viewer.ok("/api/v1/apps?limit=0").await["items"],
        json!([]),
        "limit 0"
    );
    t.finish().await;
}

/// The tree: Deployment → ReplicaSet → 2 Pods, Service → EndpointSlice, all healthy; the
/// tree of an unknown app is 404.
#[tokio::test]
async fn resource_tree_of_the_app() {
    let t = WithTokens::start("web-tree").await;
    t.synced().await;
    let tree = t.ready_tree().await;
    t.documented("get", "/tree", 200, &tree);
    let roots: Vec<&str> = tree["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["subject"]["kind"].as_str().unwrap())
        .collect();
    assert_eq!(roots.len(), 4, "{roots:?}");
    let deploy = deployment_node(&tree);
    assert_eq!(deploy["managed"], true);
    assert_eq!(deploy["health"]["status"], "Current");
    assert_eq!(deploy["info"], "2/2 ready");
    let rs = &deploy["children"][0];
    assert_eq!(rs["subject"]["kind"], "ReplicaSet", "{deploy:#}");
    assert_eq!(rs["managed"], false);
    assert_eq!(rs["children"].as_array().unwrap().len(), 2, "{rs:#}");
    assert_eq!(rs["children"][0]["subject"]["kind"], "Pod");
    let (status, body) = t
        .viewer()
        .get("/api/v1/apps/ferry-system/no-such-app/tree")
        .await;
    assert_eq!(status, 404, "{body}");
    t.documented("get", "/tree", status, &body);
    t.finish().await;
}

/// The live diff explains each drifted field: path, manager, subresource and when; a
/// Secret's change is masked.
#[tokio::test]
async fn diff_explains_drift() {
    let t = WithTokens::start("web-diff").await;
    t.synced().await;
    t.drift().await;
    let diff = t.viewed("/diff").await;
    assert_eq!(diff["inSync"], false, "{diff:#}");
    assert_eq!(diff["summary"]["update"], 3, "{diff:#}");
    let change = |kind: &str| {
        diff["changes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["subject"]["kind"] == kind)
            .unwrap_or_else(|| panic!("no change for {kind}: {diff:#}"))
            .clone()
    };
    let d = change("Deployment");
    assert_eq!(d["action"], "update");
    let field = &d["drift"][0];
    assert_eq!(field["path"], "spec.replicas", "{d:#}");
    assert_eq!(field["manager"], "kubectl", "{d:#}");
    assert_eq!(field["subresource"], "scale", "{d:#}");
    // A write through the scale subresource has no time: the detection time stands in.
    assert_eq!(field["timeSource"], "detected", "{d:#}");
    let summary = field["summary"].as_str().unwrap();
    assert!(
        summary.starts_with("spec.replicas changed by kubectl ")
            && (summary.ends_with(" ago") || summary.ends_with(" just now")),
        "{summary}"
    );
    let c = change("ConfigMap");
    assert_eq!(c["drift"][0]["path"], "data.color", "{c:#}");
    assert_eq!(c["drift"][0]["manager"], "kubectl-edit", "{c:#}");
    assert_eq!(c["drift"][0]["timeSource"], "managedFields", "{c:#}");
    let s = change("Secret");
    assert_eq!(s["drift"][0]["path"], "data.password", "{s:#}");
    assert_eq!(s["drift"][0]["manager"], "kubectl-edit", "{s:#}");
    let secret_diff = s["diff"].as_str().unwrap();
    assert!(
        secret_diff.contains("*** (before)") && secret_diff.contains("*** (after)"),
        "{secret_diff}"
    );
    t.finish().await;
}

/// One object: live YAML (Secrets masked, no managedFields), diff, drift and managers;
/// an object the app does not own has no comparison; objects outside the app are 404.
#[tokio::test]
async fn one_object_with_its_diff_and_managers() {
    let t = WithTokens::start("web-res").await;
    let (f, base, viewer) = (&t.f, &t.base, t.viewer());
    t.synced().await;
    let pod =
        deployment_node(&t.ready_tree().await)["children"][0]["children"][0]["subject"].clone();
    t.drift().await;
    let q = |group: &str, version: &str, kind: &str, name: &str| {
        format!(
            "{base}/resource?group={group}&version={version}&kind={kind}&namespace={}&name={name}",
            f.ns()
        )
    };
    let res = viewer.ok(&q("apps", "v1", "Deployment", "web")).await;
    t.documented("get", "/resource", 200, &res);
    assert_eq!(
        (res["managed"].as_bool(), res["exists"].as_bool()),
        (Some(true), Some(true))
    );
    let cmp = &res["comparison"];
    let text = cmp["diff"].as_str().unwrap();
    assert!(text.contains("-  replicas: 3\n+  replicas: 2\n"), "{text}");
    assert_eq!(cmp["drift"][0]["manager"], "kubectl");
    let yaml = res["yaml"].as_str().unwrap();
    assert!(
        yaml.contains("kind: Deployment") && yaml.contains("replicas: 3"),
        "{yaml}"
    );
    assert!(!yaml.contains("managedFields"), "{yaml}");
    let managers: Vec<&str> = res["managers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["manager"].as_str().unwrap())
        .collect();
    assert!(
        managers.contains(&"ferry") && managers.contains(&"kubectl"),
        "{managers:?}"
    );
    let res = viewer.ok(&q("", "v1", "Secret", "creds")).await;
    let yaml = res["yaml"].as_str().unwrap();
    assert!(yaml.contains("password: \"***\""), "{yaml}");
    let pod_res = viewer
        .ok(&q("", "v1", "Pod", pod["name"].as_str().unwrap()))
        .await;
    assert_eq!(pod_res["managed"], false);
    assert_eq!(pod_res["comparison"], Value::Null);
    assert!(pod_res["yaml"].as_str().unwrap().contains("kind: Pod"));
    let (status, body) = viewer
        .get(&q("", "v1", "ConfigMap", "kube-root-ca.crt"))
        .await;
    assert_eq!(
        status, 404,
        "objects outside the app are not served: {body}"
    );
    t.documented("get", "/resource", status, &body);
    t.finish().await;
}

/// Events about the app's objects, such as the Deployment's scaling.
#[tokio::test]
async fn events_of_the_app_objects() {
    let t = WithTokens::start("web-events").await;
    t.synced().await;
    t.drift().await;
    let events = t.viewed("/events").await;
    let reasons: Vec<&str> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["reason"].as_str().unwrap())
        .collect();
    assert!(reasons.contains(&"ScalingReplicaSet"), "{events:#}");
    t.finish().await;
}

/// The stream says `ready`, then sends an `app` event once an operator's Sync changes the
/// status; the Sync heals the drift.
#[tokio::test]
async fn stream_reports_a_sync_that_heals_drift() {
    let t = WithTokens::start("web-stream").await;
    let (f, app, base) = (&t.f, &t.app, &t.base);
    t.synced().await;
    t.drift().await;
    let mut stream = open_stream(&t.agent, Some(VIEWER)).await;
    assert_eq!(stream.status().as_u16(), 200);
    assert_eq!(
        stream.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let mut seen = String::new();
    let mut sync_sent_at = None;
    let deadline = tokio::time::Instant::now() + WAIT;
    let app_event = format!("event: app\ndata: {{\"name\":\"{app}\"");
    while sync_sent_at.is_none_or(|at| !seen[at..].contains(&app_event)) {
        read_chunk(&mut stream, &mut seen, deadline, "no app event").await;
        if sync_sent_at.is_none() && seen.contains("event: ready\n") {
            // Sync heals the drift (self-heal is off, so only an action does).
            let (status, body) = t.operator().action(app, "sync").await;
            assert_eq!(status, 202, "{body}");
            t.documented("post", "/{action}", status, &body);
            sync_sent_at = Some(seen.len());
        }
    }
    t.bodies.lock().unwrap().push(seen.clone());
    drop(stream);
    t.viewer()
        .wait_app(app, "Synced again after Sync", |s| s["sync"] == "Synced")
        .await;
    let replicas = f
        .get::<Deployment>("web")
        .await
        .and_then(|d| d.spec)
        .and_then(|s| s.replicas);
    assert_eq!(replicas, Some(2), "Sync restored Git's replicas");
    assert_eq!(
        f.cm_value("settings", "color").await.as_deref(),
        Some("blue")
    );
    let diff = t.viewer().ok(&format!("{base}/diff")).await;
    assert_eq!(diff["inSync"], true, "{diff:#}");
    t.finish().await;
}

/// After a second commit, an operator (not a viewer) rolls back to the first one from the
/// history: the app is pinned there and the cluster follows.
#[tokio::test]
async fn operators_roll_back_to_an_earlier_commit() {
    let t = WithTokens::start("web-rollback").await;
    let (f, app, base, first) = (&t.f, &t.app, &t.base, &t.first);
    let (viewer, operator) = (t.viewer(), t.operator());
    t.synced().await;
    f.write_configmap("settings", &[("color", "green")]);
    let second = f.repo.commit("second: green");
    viewer
        .wait_app(app, "the second commit", |s| {
            s["revision"] == second.as_str() && s["sync"] == "Synced"
        })
        .await;
    let history = t.viewed("/history").await;
    let target = history["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["revision"] == first.as_str() && e["outcome"] == "succeeded")
        .expect("a history entry of the first commit")["id"]
        .to_string();
    let (status, body) = viewer
        .post(
            &format!("{base}/rollback"),
            Some(json!({ "target": target })),
            &[],
        )
        .await;
    assert_eq!(status, 403, "viewers cannot roll back: {body}");
    let (status, body) = operator
        .post(
            &format!("{base}/rollback"),
            Some(json!({ "target": target })),
            &[],
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["revision"], first.as_str());
    t.documented("post", "/{action}", status, &body);
    viewer
        .wait_app(app, "rolled back to the first commit", |s| {
            s["revision"] == first.as_str() && s["pinned"] == first.as_str()
        })
        .await;
    eventually("the ConfigMap is blue again", WAIT, || async {
        f.cm_value("settings", "color").await.as_deref() == Some("blue")
    })
    .await;
    t.finish().await;
}

/// `ferry get apps --server` sends its `--token`; without one it reports the 401.
#[tokio::test]
async fn the_cli_sends_its_token() {
    let t = WithTokens::start("web-cli").await;
    let (f, url) = (&t.f, &t.agent.url);
    t.synced().await;
    let run = f
        .ferry(&["get", "apps", "--server", url, "--token", VIEWER])
        .await;
    run.expect_code(0).expect_stdout(&t.app);
    let run = f.ferry(&["get", "apps", "--server", url]).await;
    run.expect_code(2)
        .expect_error(&["authentication required", "HTTP 401"]);
    t.finish().await;
}

/// Every documented route is served (no 404 from the router, no 405), and what it answers
/// is documented.
#[tokio::test]
async fn every_documented_route_is_served() {
    let t = WithTokens::start("web-routes").await;
    let (f, app, doc, operator) = (&t.f, &t.app, &t.doc, t.operator());
    t.synced().await;
    for (template, methods) in doc["paths"].as_object().unwrap() {
        for method in methods.as_object().unwrap().keys() {
            let path = template
                .replace("{name}", app)
                .replace("{action}", "refresh")
                .replace("{provider}", "github")
                .replace("{file}", "app.js");
            let path = if template.ends_with("/resource") {
                format!(
                    "{path}?version=v1&kind=ConfigMap&namespace={}&name=settings",
                    f.ns()
                )
            } else {
                path
            };
            if template == "/api/v1/stream" {
                continue; // checked by stream_reports_a_sync_that_heals_drift; it never ends
            }
            let (status, body) = match method.as_str() {
                "get" => operator.get(&path).await,
                "post" => operator.post(&path, Some(json!({})), &[]).await,
                other => panic!("undocumented method {other}"),
            };
            assert!(
                status != 405 && !(status == 404 && body == Value::String(String::new())),
                "{method} {template}: the router does not serve it ({status})"
            );
            check_documented(doc, method, template, status, &body);
        }
    }
    t.finish().await;
}

/// Without tokens: a non-loopback listen address is refused at start; on localhost every
/// local caller may act, but cross-site and DNS-rebinding requests are refused.
#[tokio::test]
async fn without_tokens_localhost_only() {
    let f = Fixture::new("web-local").await;
    let app = f.app("");
    f.write_configmap("settings", &[("color", "blue")]);
    f.repo.commit("one");
    let home = AgentHome::new(&apps_file(&[app_entry(
        &app,
        f.repo.path(),
        "app",
        f.ns(),
        "1s",
        "",
    )]));

    let refused = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["agent", "--listen", "0.0.0.0:0", "--file"])
        .arg(home.apps_file())
        .env("FERRY_CONTEXT", TESTBED_CONTEXT)
        .env_remove("FERRY_TOKENS")
        .output()
        .expect("running ferry agent");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "error: refusing to serve the API on 0.0.0.0:0 without tokens: anyone who can \
             reach it could sync and roll back apps; give --token operator:<token>"
        ),
        "{stderr}"
    );

    let agent = Agent::start(&home, "agent", &[]).await;
    let bodies = Mutex::new(Vec::new());
    let local = Api::new(&agent, None, &bodies);
    local
        .wait_app(&app, "Synced", |s| s["sync"] == "Synced")
        .await;
    assert!(
        agent.log().contains("no API tokens: localhost only"),
        "the agent says it is localhost only: {}",
        agent.log()
    );
    assert_eq!(local.ok("/api/v1/whoami").await["role"], "operator");
    let sync = format!("/api/v1/apps/ferry-system/{app}/sync");
    let (status, body) = local
        .post(&sync, None, &[("Content-Type", "text/plain")])
        .await;
    assert_eq!(status, 403, "a form-like POST is refused: {body}");
    let (status, body) = local
        .post(
            &sync,
            None,
            &[("Content-Type", "application/x-www-form-urlencoded")],
        )
        .await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = local
        .post(
            &sync,
            Some(json!({})),
            &[
                ("Origin", "http://evil.example"),
                ("Sec-Fetch-Site", "cross-site"),
            ],
        )
        .await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = local
        .post(&sync, Some(json!({})), &[("Origin", &agent.url)])
        .await;
    assert_eq!(status, 202, "a same-origin JSON POST is accepted: {body}");
    let rebinding = reqwest::Client::new()
        .get(format!("{}/api/v1/apps", agent.url))
        .header("Host", "evil.example")
        .send()
        .await
        .expect("GET with another Host");
    assert_eq!(rebinding.status().as_u16(), 403, "DNS rebinding is refused");
    f.ferry(&["sync", &app, "--server", &agent.url])
        .await
        .expect_code(0);

    // An open dashboard stream does not hold up a graceful stop.
    let mut stream = open_stream(&agent, None).await;
    let mut first = String::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    read_chunk(&mut stream, &mut first, deadline, "nothing").await;
    assert!(first.starts_with("event: ready\n"), "{first}");
    drop(local);
    let mut agent = agent;
    let (status, took) = agent.terminate(Duration::from_secs(10)).await;
    assert!(status.success(), "{status}");
    eprintln!("latency: SIGTERM with an open stream → exit: {took:?}");
    f.finish().await;
}

/// Tokens limited to a project (`viewer:team-a:<token>`, `operator:team-a:<token>`) see
/// and act on only the apps of that project: the list, the detail, the dashboard routes,
/// the history, actions and the stream; an app of another project answers 404, as an
/// app that does not exist. An unlimited token still sees both apps.
#[tokio::test]
async fn project_limited_tokens_see_only_their_apps() {
    const TEAM_VIEWER: &str = "team-a-viewer-token-0003";
    const TEAM_OPERATOR: &str = "team-a-operator-token-0004";
    let f = Fixture::new("web-scope").await;
    let (mine, theirs) = (f.app("-a"), f.app("-b"));
    f.repo
        .write("a/cfg.yaml", &common::configmap("a", &[("k", "v")]));
    f.repo
        .write("b/cfg.yaml", &common::configmap("b", &[("k", "v")]));
    f.repo.commit("two apps");
    let entry = |app: &str, path: &str, project: &str| {
        app_entry(
            app,
            f.repo.path(),
            path,
            f.ns(),
            "1s",
            &format!("    project: {project}\n"),
        )
    };
    let file = format!(
        "projects:\n  - name: team-a\n    sourceRepos: [\"*\"]\n    destinations: [\"*\"]\n{}",
        apps_file(&[entry(&mine, "a", "team-a"), entry(&theirs, "b", "default")])
    );
    let home = AgentHome::new(&file);
    let agent = Agent::start(
        &home,
        "agent",
        &[
            "--token",
            &format!("viewer:team-a:{TEAM_VIEWER}"),
            "--token",
            &format!("operator:team-a:{TEAM_OPERATOR}"),
            "--token",
            &format!("operator:{OPERATOR}"),
        ],
    )
    .await;
    let bodies = Mutex::new(Vec::new());
    let (viewer, operator, admin) = (
        Api::new(&agent, Some(TEAM_VIEWER), &bodies),
        Api::new(&agent, Some(TEAM_OPERATOR), &bodies),
        Api::new(&agent, Some(OPERATOR), &bodies),
    );
    for app in [&mine, &theirs] {
        admin
            .wait_app(app, "Synced", |s| s["sync"] == "Synced")
            .await;
    }
    let names = |list: &Value| -> Vec<String> {
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["name"].as_str().unwrap().to_string())
            .collect()
    };
    let q = format!("/api/v1/apps?q={}", f.ns());
    let listed = viewer.ok(&q).await;
    assert_eq!(
        (names(&listed), &listed["total"]),
        (vec![mine.clone()], &json!(1))
    );
    let mut all = names(&admin.ok(&q).await);
    all.sort();
    assert_eq!(all, [mine.clone(), theirs.clone()]);

    assert_eq!(
        viewer
            .ok(&format!("/api/v1/apps/ferry-system/{mine}"))
            .await["name"],
        mine
    );
    viewer
        .ok(&format!("/api/v1/apps/ferry-system/{mine}/tree"))
        .await;
    for route in ["", "/tree", "/diff", "/events", "/history"] {
        let (status, body) = viewer
            .get(&format!("/api/v1/apps/ferry-system/{theirs}{route}"))
            .await;
        assert_eq!(status, 404, "{route}: {body}");
        assert_eq!(
            body["error"],
            format!("no app ferry-system/{theirs}"),
            "{route}"
        );
    }
    let (status, body) = operator.action(&theirs, "sync").await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = operator.action(&mine, "refresh").await;
    assert_eq!(status, 202, "{body}");

    // The stream: a sync of the other team's app first, then one of this team's; only
    // the latter reaches the limited viewer.
    let mut stream = open_stream(&agent, Some(TEAM_VIEWER)).await;
    assert_eq!(stream.status().as_u16(), 200);
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    let (mine_event, theirs_event) = (
        format!("data: {{\"name\":\"{mine}\""),
        format!("\"name\":\"{theirs}\""),
    );
    let mut sent = false;
    while !seen.contains(&mine_event) {
        let missing = format!("no event of {mine}");
        read_chunk(&mut stream, &mut seen, deadline, &missing).await;
        if !sent && seen.contains("event: ready\n") {
            sent = true;
            let (status, body) = admin.action(&theirs, "sync").await;
            assert_eq!(status, 202, "{body}");
            admin
                .wait_app(&theirs, "synced again", |s| s["sync"] == "Synced")
                .await;
            let (status, body) = operator.action(&mine, "sync").await;
            assert_eq!(status, 202, "{body}");
        }
    }
    assert!(!seen.contains(&theirs_event), "{seen}");
    drop(stream);
    drop(agent);
    f.finish().await;
}
