//! End to end: the example `examples/llm-app` deployed to the test bed by `ferry agent`
//! through its app set (`appset.yaml`), all three environments Synced and Healthy, with the
//! per-environment differences visible in the cluster.

mod agent_common;
mod common;

use std::time::Duration;

use agent_common::{Agent, AgentHome, eventually};
use ferry_testkit::{TestRepo, copy_dir, manifest_dir};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::Api;
use kube::api::{DeleteParams, ListParams};

const ENVIRONMENTS: [(&str, i32, &str); 3] = [
    ("dev", 1, "0.3.0"),
    ("staging", 2, "0.2.1"),
    ("production", 3, "0.2.0"),
];

#[tokio::test]
async fn agent_deploys_all_three_environments_of_the_example() {
    let client = ferry_testkit::client().await;
    let repo = TestRepo::new();
    let example = manifest_dir().join("../../examples/llm-app");
    copy_dir(&example, repo.dir());
    repo.commit("llm-app");

    let appset = std::fs::read_to_string(repo.dir().join("appset.yaml")).expect("appset.yaml");
    let appset = appset.replace("repo: .", &format!("repo: {}", repo.path()));
    let home = AgentHome::new(&appset);
    let agent = Agent::start(&home, "llm", &[]).await;

    let took = eventually(
        "dev, staging and production Synced and Healthy",
        Duration::from_secs(120),
        || async {
            let list = agent.get_json("/api/v1/apps").await;
            let items = list["items"].as_array().cloned().unwrap_or_default();
            items.len() == 3
                && items
                    .iter()
                    .all(|a| a["sync"] == "Synced" && a["health"] == "Current")
        },
    )
    .await;
    eprintln!("latency: all three environments healthy after {took:?}");

    for (env, replicas, tag) in ENVIRONMENTS {
        let ns = format!("llm-{env}");
        let deploy: Api<Deployment> = Api::namespaced(client.clone(), &ns);
        let d = deploy.get("llm-app").await.expect("the Deployment exists");
        let spec = d.spec.expect("spec");
        assert_eq!(spec.replicas, Some(replicas), "{ns} replicas");
        let image = spec.template.spec.expect("pod spec").containers[0]
            .image
            .clone()
            .unwrap_or_default();
        assert_eq!(
            image,
            format!("registry.example/llm-app:{tag}"),
            "{ns} image"
        );
        assert_eq!(
            d.status.and_then(|s| s.available_replicas),
            Some(replicas),
            "{ns} available replicas"
        );
        let config: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
        let maps = config
            .list(&ListParams::default().labels(&format!("ferry.dev/app=llm-{env}")))
            .await
            .expect("listing ConfigMaps");
        assert!(
            maps.items.iter().any(|cm| cm
                .data
                .as_ref()
                .and_then(|d| d.get("MODEL_NAME"))
                .is_some_and(|m| m.ends_with(match env {
                    "dev" => "small",
                    "staging" => "medium",
                    _ => "large",
                }))),
            "{ns} has its own model setting"
        );
    }

    drop(agent);
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let inventories: Api<ConfigMap> = Api::namespaced(client, "ferry-system");
    for (env, _, _) in ENVIRONMENTS {
        let _ = namespaces
            .delete(&format!("llm-{env}"), &DeleteParams::default())
            .await;
        let _ = inventories
            .delete(
                &format!("ferry-inventory-ferry-system.llm-{env}"),
                &DeleteParams::default(),
            )
            .await;
    }
}
