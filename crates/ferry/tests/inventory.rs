//! Inventories beyond one ConfigMap: an app of 20,000 objects, inventories of the older
//! formats, and the states a crashed inventory write leaves.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::Fixture;
use ferry_kube::{Cluster, Inventory};
use ferry_model::{Digest, Known, ObjectRef, SYSTEM_NAMESPACE};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{ListParams, PostParams};
use serde_json::json;

/// ConfigMaps of the big app, and the files they are spread over.
const OBJECTS: usize = 20_000;
const FILES: usize = 20;
/// How long one `ferry apply` of the big app may take: the first one, 20,000 dry-runs
/// and 20,000 writes, takes about three and a half minutes on the test bed.
const LARGE_RUN: Duration = Duration::from_secs(420);

fn config_map_name(i: usize) -> String {
    format!("cm-{i:05}")
}

/// `ferry apply --no-wait` of the big app, which must succeed printing `summary`; logs
/// how long `what` took.
async fn apply_big(f: &Fixture, app: &str, summary: &str, what: &str) {
    let start = Instant::now();
    f.one_off_within(LARGE_RUN, "apply", app, "app", &["--no-wait"])
        .await
        .expect_code(0)
        .expect_stderr(summary);
    eprintln!("{what}: {:?}", start.elapsed());
}

/// Names of `app`'s inventory shards in `ferry-system`, sorted.
async fn shards(f: &Fixture, app: &str) -> Vec<String> {
    let api: Api<ConfigMap> = Api::namespaced(f.client.clone(), SYSTEM_NAMESPACE);
    let list = api
        .list(&ListParams::default().labels(&format!("ferry.dev/inventory={app}")))
        .await
        .expect("listing inventory shards");
    let mut names: Vec<String> = list
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect();
    names.sort();
    names
}

/// `ferry apply` of 20,000 small ConfigMaps: the inventory (sharded, with its memo) reads
/// back whole, a re-apply writes nothing, and removing half of them from Git prunes
/// exactly those.
#[tokio::test]
async fn an_app_of_twenty_thousand_objects_applies_re_applies_and_prunes_half() {
    let f = Fixture::new("inv-big").await;
    let app = f.app("");
    let per_file = OBJECTS / FILES;
    for file in 0..FILES {
        let docs: Vec<String> = (file * per_file..(file + 1) * per_file)
            .map(|i| {
                format!(
                    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {}\ndata:\n  n: \"{i}\"\n",
                    config_map_name(i)
                )
            })
            .collect();
        f.repo
            .write(&format!("app/part-{file:02}.yaml"), &docs.join("---\n"));
    }
    let first = f.repo.commit("20,000 ConfigMaps");

    apply_big(
        &f,
        &app,
        &format!("applied: {OBJECTS} to create, 0 to update, 0 to prune, 0 unchanged"),
        &format!("first apply of {OBJECTS} objects"),
    )
    .await;
    let all: Vec<String> = (0..OBJECTS).map(config_map_name).collect();
    let inv = f.inventory(&app).await.expect("inventory written");
    assert_eq!(inv.revision, first);
    assert_eq!(inv.entries.len(), OBJECTS);
    assert_eq!(inv.names(), all);
    assert_eq!(f.configmaps().await, all);
    let sharded = shards(&f, &app).await;
    assert!(
        sharded.len() >= 2,
        "entries and memo of {OBJECTS} objects need shards: {sharded:?}"
    );
    let memo = read(&f.cluster().await, &app).await.unwrap();
    assert_eq!(memo.in_sync.len(), OBJECTS, "the memo is kept");

    apply_big(
        &f,
        &app,
        &format!("applied: 0 to create, 0 to update, 0 to prune, {OBJECTS} unchanged"),
        &format!("no-op re-apply of {OBJECTS} objects"),
    )
    .await;
    assert_eq!(
        f.inventory(&app).await.unwrap().resource_version,
        inv.resource_version,
        "an unchanged apply rewrote the inventory"
    );
    assert_eq!(shards(&f, &app).await, sharded);

    for file in FILES / 2..FILES {
        f.repo.remove(&format!("app/part-{file:02}.yaml"));
    }
    let second = f.repo.commit("remove half");
    apply_big(
        &f,
        &app,
        &format!(
            "applied: 0 to create, 0 to update, {} to prune, {} unchanged",
            OBJECTS / 2,
            OBJECTS / 2
        ),
        &format!("pruning {} objects", OBJECTS / 2),
    )
    .await;
    let half: Vec<String> = (0..OBJECTS / 2).map(config_map_name).collect();
    let inv = f.inventory(&app).await.unwrap();
    assert_eq!(inv.revision, second);
    assert_eq!(inv.names(), half);
    assert_eq!(f.configmaps().await, half);
    let now = shards(&f, &app).await;
    assert!(
        now.iter().all(|s| !sharded.contains(s)),
        "the old generation's shards are deleted: {now:?} (were {sharded:?})"
    );

    f.cluster()
        .await
        .delete_inventory(&common::key(&app))
        .await
        .unwrap();
    assert!(f.inventory(&app).await.is_none());
    assert_eq!(shards(&f, &app).await, Vec::<String>::new());
    f.finish().await;
}

/// `app`'s inventory as ferry reads it (any format).
async fn read(cluster: &Cluster, app: &str) -> Option<Inventory> {
    cluster
        .read_inventory(&common::key(app))
        .await
        .unwrap_or_else(|e| panic!("reading the inventory of {app}: {e}"))
}

/// Writes `app`'s inventory as ferry writes it.
async fn write(cluster: &Cluster, app: &str, inventory: &Inventory) {
    cluster
        .write_inventory(&common::key(app), inventory)
        .await
        .unwrap_or_else(|e| panic!("writing the inventory of {app}: {e}"));
}

fn entry(name: &str) -> ObjectRef {
    ObjectRef::new("v1", "ConfigMap", Some("web"), name)
}

fn known(n: u8) -> Known {
    Known {
        manifest: Digest([n; 32]),
        live: Digest([n + 1; 32]),
    }
}

/// Creates ConfigMap `name` in `ferry-system` with labels and data as given.
async fn create(f: &Fixture, name: &str, labels: serde_json::Value, data: serde_json::Value) {
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": SYSTEM_NAMESPACE, "labels": labels},
        "data": data,
    }))
    .unwrap();
    Api::<ConfigMap>::namespaced(f.client.clone(), SYSTEM_NAMESPACE)
        .create(&PostParams::default(), &cm)
        .await
        .unwrap_or_else(|e| panic!("creating {name}: {e}"));
}

/// Inventories as ferry wrote them before format 3 are read, and the next write replaces
/// them.
#[tokio::test]
async fn inventories_of_formats_one_and_two_are_read_and_rewritten() {
    let f = Fixture::new("inv-old").await;
    let cluster = f.cluster().await;
    cluster.ensure_namespace(SYSTEM_NAMESPACE).await.unwrap();
    let entries = r#"[{"group":"","version":"v1","kind":"ConfigMap","namespace":"web","name":"a"},{"group":"apps","version":"v1","kind":"Deployment","namespace":"web","name":"d"}]"#;
    let deployment = ObjectRef::new("apps/v1", "Deployment", Some("web"), "d");

    let one = f.app("-one");
    create(
        &f,
        &format!("ferry-inventory-{one}"),
        json!({"app.kubernetes.io/managed-by": "ferry", "ferry.dev/app": one}),
        json!({"app": one, "revision": "r1", "entries": entries}),
    )
    .await;
    let inv = read(&cluster, &one).await.unwrap();
    assert_eq!(inv.revision, "r1");
    assert_eq!(inv.entries, [entry("a"), deployment.clone()]);
    assert!(inv.in_sync.is_empty());

    let two = f.app("-two");
    let memo = BTreeMap::from([(entry("a").key(), known(1))]);
    create(
        &f,
        &format!("ferry-inventory-{two}"),
        json!({"app.kubernetes.io/managed-by": "ferry", "ferry.dev/app": two}),
        json!({
            "app": two, "format": "2", "revision": "r2", "entries": entries,
            "inSync": serde_json::to_string(&memo).unwrap(),
        }),
    )
    .await;
    let inv = read(&cluster, &two).await.unwrap();
    assert_eq!(inv.revision, "r2");
    assert_eq!(inv.entries, [entry("a"), deployment]);
    assert_eq!(inv.in_sync, memo);

    let rewritten = Inventory {
        revision: "r3".into(),
        entries: vec![entry("b")],
        in_sync: BTreeMap::new(),
    };
    write(&cluster, &two, &rewritten).await;
    assert_eq!(read(&cluster, &two).await.unwrap(), rewritten);
    let heads = Api::<ConfigMap>::namespaced(f.client.clone(), SYSTEM_NAMESPACE);
    let head = heads
        .get(&common::inventory_name(&common::key(&two)))
        .await
        .unwrap();
    assert_eq!(head.data.unwrap()["format"], "3");
    assert!(
        heads
            .get_opt(&format!("ferry-inventory-{two}"))
            .await
            .unwrap()
            .is_none(),
        "the first write replaces the earlier version's head"
    );
    f.finish().await;
}

/// The states a crash between the steps of an inventory write leaves: shards of a write
/// whose head was never switched, and shards of a generation the head left, are not
/// read, and the next write deletes them; removing the inventory removes every shard.
#[tokio::test]
async fn shards_a_crashed_write_leaves_are_ignored_then_deleted() {
    let f = Fixture::new("inv-crash").await;
    let cluster = f.cluster().await;
    let app = f.app("");
    // Big enough to be sharded: a memo of pseudo-random digests (which, like real ones,
    // do not compress) for 20,000 entries.
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut digest = || {
        let mut bytes = [0; 32];
        for b in &mut bytes {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            *b = state as u8;
        }
        Digest(bytes)
    };
    let big = Inventory {
        revision: "r1".into(),
        entries: (0..OBJECTS).map(|i| entry(&config_map_name(i))).collect(),
        in_sync: (0..OBJECTS)
            .map(|i| {
                let k = Known {
                    manifest: digest(),
                    live: digest(),
                };
                (entry(&config_map_name(i)).key(), k)
            })
            .collect(),
    };
    write(&cluster, &app, &big).await;
    let first = shards(&f, &app).await;
    assert!(first.len() >= 2, "{first:?}");
    let mut sorted = big.clone();
    sorted.entries.sort();
    assert_eq!(read(&cluster, &app).await.unwrap(), sorted);

    // A write that crashed after its first shard, before the head switch, and a shard of
    // an old generation that a crash kept from being deleted.
    let labels = json!({"app.kubernetes.io/managed-by": "ferry", "ferry.dev/inventory": app,
                        "ferry.dev/app-namespace": SYSTEM_NAMESPACE});
    let unfinished = format!("ferry-inventory.{SYSTEM_NAMESPACE}.{app}.2.0");
    let stale = format!("ferry-inventory.{SYSTEM_NAMESPACE}.{app}.0.0");
    let id = common::key(&app).to_string();
    for (name, generation) in [(&unfinished, "2"), (&stale, "0")] {
        create(
            &f,
            name,
            labels.clone(),
            json!({"app": id, "generation": generation, "index": "0"}),
        )
        .await;
    }
    assert_eq!(read(&cluster, &app).await.unwrap(), sorted);

    let small = Inventory {
        revision: "r2".into(),
        entries: vec![entry("a")],
        in_sync: BTreeMap::new(),
    };
    write(&cluster, &app, &small).await;
    assert_eq!(read(&cluster, &app).await.unwrap(), small);
    assert_eq!(
        shards(&f, &app).await,
        Vec::<String>::new(),
        "an inline inventory leaves no shard"
    );

    write(&cluster, &app, &big).await;
    let third = shards(&f, &app).await;
    assert!(
        third.len() >= 2 && third.iter().all(|s| !first.contains(s)),
        "{third:?}"
    );
    cluster.delete_inventory(&common::key(&app)).await.unwrap();
    assert!(read(&cluster, &app).await.is_none());
    assert_eq!(shards(&f, &app).await, Vec::<String>::new());
    f.finish().await;
}

/// A write over an inventory read earlier (a sync's plan) needs no read of its own: when
/// another writer came first (409) or deleted the head meanwhile (404) it reads again
/// and redoes its update, so neither loses the other's entries; an update that changes
/// nothing in the writer's own last write writes nothing.
#[tokio::test]
async fn a_write_over_a_stale_read_reads_again_and_merges() {
    let f = Fixture::new("inv-stale").await;
    let cluster = f.cluster().await;
    let app = common::key(&f.app(""));
    let head_version = || async {
        Api::<ConfigMap>::namespaced(f.client.clone(), SYSTEM_NAMESPACE)
            .get(&common::inventory_name(&app))
            .await
            .expect("the head")
            .metadata
            .resource_version
    };
    let with = |names: &[&str]| Inventory {
        revision: "r1".into(),
        entries: names.iter().map(|n| entry(n)).collect(),
        in_sync: BTreeMap::new(),
    };
    cluster.write_inventory(&app, &with(&["a"])).await.unwrap();
    let add = |name: &'static str| {
        move |current: Option<&Inventory>| {
            let mut inv = current.cloned().unwrap_or_default();
            inv.entries.push(entry(name));
            inv.entries.sort();
            inv
        }
    };

    let stale = cluster.read_inventory_versioned(&app).await.unwrap();
    cluster.update_inventory(&app, add("b")).await.unwrap();
    let written = cluster
        .update_inventory_from(&app, stale, add("c"))
        .await
        .unwrap();
    assert_eq!(written.inventory, Some(with(&["a", "b", "c"])), "merged");
    let read = cluster.read_inventory(&app).await.unwrap();
    assert_eq!(read, Some(with(&["a", "b", "c"])));

    let before = head_version().await;
    let again = cluster
        .update_inventory_from(&app, written.clone(), |current| current.cloned().unwrap())
        .await
        .unwrap();
    assert_eq!(again.inventory, written.inventory);
    assert_eq!(
        head_version().await,
        before,
        "nothing to change: not written"
    );

    let stale = cluster.read_inventory_versioned(&app).await.unwrap();
    cluster.delete_inventory(&app).await.unwrap();
    let written = cluster
        .update_inventory_from(&app, stale, add("d"))
        .await
        .unwrap();
    assert_eq!(
        written.inventory,
        Some(Inventory {
            entries: vec![entry("d")],
            ..Default::default()
        }),
        "the head deleted meanwhile: created anew"
    );
    assert_eq!(
        cluster.read_inventory(&app).await.unwrap(),
        written.inventory
    );
    f.finish().await;
}
