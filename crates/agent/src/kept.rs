//! Suspensions and rollback pins kept in the cluster, in ConfigMap
//! `ferry-system/ferry-agent-kept` (one JSON value per app, under the key
//! `<namespace>.<name>`), so that they survive a restart and follow the lease: an agent
//! loads them each time it becomes the leader, before it reconciles anything. A key
//! without a dot, written by an earlier version, is an app of `ferry.yaml`'s namespace.

use std::collections::BTreeMap;

use ferry_kube::KubeError;
use ferry_model::AppKey;
use tracing::warn;

use crate::controller::Ctx;
use crate::state::{AppStatus, Kept};

/// The ConfigMap's name (in `ferry-system`).
pub const CONFIG_MAP: &str = "ferry-agent-kept";

/// Reads the kept settings into the store. An entry that does not decode is skipped
/// with a warning naming it (its app is then neither suspended nor pinned).
pub async fn load(ctx: &Ctx) -> Result<(), KubeError> {
    let data = ctx.engine.cluster.read_system_data(CONFIG_MAP).await?;
    let mut kept = BTreeMap::new();
    for (app, text) in data {
        match serde_json::from_str::<Kept>(&text) {
            Ok(entry) => {
                let key = match app.split_once('.') {
                    Some((namespace, name)) => AppKey::new(namespace, name),
                    None => AppKey::new(&ctx.apps_namespace, &app),
                };
                kept.insert(key, entry);
            }
            Err(e) => warn!("ConfigMap ferry-system/{CONFIG_MAP}: key {app:?}: {e}; ignored"),
        }
    }
    ctx.store.load_kept(kept).await;
    Ok(())
}

/// Changes an app's status with `change`, writing what must be kept to the cluster
/// first: when that write fails nothing changes. False when the app is unknown.
pub async fn change(
    ctx: &Ctx,
    name: &AppKey,
    change: impl Fn(&mut AppStatus),
) -> Result<bool, KubeError> {
    let Some(mut status) = ctx.store.get(name).await else {
        return Ok(false);
    };
    change(&mut status);
    let kept = Kept::of(&status);
    write(ctx, name, &kept).await?;
    ctx.store.set_kept(name, kept);
    Ok(ctx.store.update(name, change).await)
}

/// Forgets the kept settings of an app that was removed (on the leader; the standby
/// writes nothing); a failure is logged.
pub async fn forget(ctx: &Ctx, name: &AppKey) {
    if !*ctx.leader.borrow() {
        return;
    }
    if let Err(e) = write(ctx, name, &Kept::default()).await {
        warn!(app = %name, "cannot forget the app's suspension or pin: {e}");
    }
}

async fn write(ctx: &Ctx, name: &AppKey, kept: &Kept) -> Result<(), KubeError> {
    let value =
        (*kept != Kept::default()).then(|| serde_json::to_string(kept).expect("Kept serializes"));
    ctx.engine
        .cluster
        .set_system_key(CONFIG_MAP, &name.dotted(), value.as_deref())
        .await?;
    if name.namespace == ctx.apps_namespace {
        // An earlier version's key of the same app goes.
        ctx.engine
            .cluster
            .set_system_key(CONFIG_MAP, &name.name, None)
            .await?;
    }
    Ok(())
}
