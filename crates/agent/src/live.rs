//! The health of live objects, kept from the drift watches (kube-runtime's reflector
//! model, but only the health, not whole objects): a health check reads it and sends no
//! API request.
//!
//! Each watched kind is known once its watch has listed it ([`LiveHealth::listed`]); from
//! then on an object of that kind missing here does not exist. Before that, a health check
//! of the kind's objects has no answer here and asks the API server.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use ferry_engine::health::health;
use ferry_model::{Health, HealthStatus, ObjectRef};
use serde_json::Value;

/// The last seen health of each watched object.
#[derive(Default)]
pub struct LiveHealth(Mutex<Kept>);

/// (group, kind).
type Kind = (String, String);

#[derive(Default)]
struct Kept {
    /// Per kind, by [`ObjectRef::key`].
    objects: HashMap<Kind, HashMap<String, Health>>,
    /// The kinds whose watches finished their list.
    listed: HashSet<Kind>,
    /// Keys seen during a (re)list in progress, per kind.
    relisting: HashMap<Kind, HashSet<String>>,
}

impl LiveHealth {
    /// Records an object created, changed or listed.
    pub fn changed(&self, object: &Value) {
        let subject = ferry_kube::object_ref(object);
        let key = subject.key();
        let kind = kind_of(&subject);
        let mut kept = self.0.lock().expect("live health");
        if let Some(seen) = kept.relisting.get_mut(&kind) {
            seen.insert(key.clone());
        }
        kept.objects
            .entry(kind)
            .or_default()
            .insert(key, health(object));
    }

    /// Records an object deleted.
    pub fn deleted(&self, object: &Value) {
        let subject = ferry_kube::object_ref(object);
        let mut kept = self.0.lock().expect("live health");
        if let Some(objects) = kept.objects.get_mut(&kind_of(&subject)) {
            objects.remove(&subject.key());
        }
    }

    /// A watch of `(group, kind)` starts a (re)list: objects it does not list again were
    /// deleted meanwhile.
    pub fn relisting(&self, group: &str, kind: &str) {
        let mut kept = self.0.lock().expect("live health");
        kept.relisting
            .insert((group.to_string(), kind.to_string()), HashSet::new());
    }

    /// A watch of `(group, kind)` finished its (re)list: forgets that kind's objects the
    /// list did not name, and answers for the kind from now on.
    pub fn listed(&self, group: &str, kind: &str) {
        let key = (group.to_string(), kind.to_string());
        let mut kept = self.0.lock().expect("live health");
        if let Some(seen) = kept.relisting.remove(&key)
            && let Some(objects) = kept.objects.get_mut(&key)
        {
            objects.retain(|k, _| seen.contains(k));
        }
        kept.listed.insert(key);
    }

    /// The health of each subject, or `None` when the kind of one of them has not been
    /// listed yet (ask the API server then).
    pub fn health(&self, subjects: &[ObjectRef]) -> Option<Vec<(ObjectRef, Health)>> {
        let kept = self.0.lock().expect("live health");
        subjects
            .iter()
            .map(|s| {
                let kind = kind_of(s);
                if !kept.listed.contains(&kind) {
                    return None;
                }
                let health = kept
                    .objects
                    .get(&kind)
                    .and_then(|objects| objects.get(&s.key()))
                    .cloned()
                    .unwrap_or_else(|| Health::new(HealthStatus::NotFound, "object not found"));
                Some((s.clone(), health))
            })
            .collect()
    }
}

fn kind_of(subject: &ObjectRef) -> (String, String) {
    (subject.group.clone(), subject.kind.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config_map(name: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": name, "namespace": "ns"}})
    }

    fn deployment(name: &str, ready: bool) -> Value {
        let available = if ready { 1 } else { 0 };
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": name, "namespace": "ns", "generation": 1},
               "spec": {"replicas": 1},
               "status": {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1,
                          "readyReplicas": available, "availableReplicas": available,
                          "conditions": [{"type": "Progressing", "status": "True",
                                          "reason": "NewReplicaSetAvailable"},
                                         {"type": "Available", "status": "True"}]}})
    }

    fn subject(object: &Value) -> ObjectRef {
        ferry_kube::object_ref(object)
    }

    #[test]
    fn no_answer_until_the_kind_is_listed() {
        let live = LiveHealth::default();
        let cm = config_map("a");
        live.changed(&cm);
        assert!(live.health(&[subject(&cm)]).is_none());
        live.listed("", "ConfigMap");
        let health = live.health(&[subject(&cm)]).unwrap();
        assert_eq!(health[0].1.status, HealthStatus::Current);
    }

    #[test]
    fn health_follows_the_object_and_a_deletion() {
        let live = LiveHealth::default();
        live.listed("apps", "Deployment");
        let web = deployment("web", false);
        live.changed(&web);
        let status = |live: &LiveHealth| live.health(&[subject(&web)]).unwrap()[0].1.status;
        assert_eq!(status(&live), HealthStatus::InProgress);
        live.changed(&deployment("web", true));
        assert_eq!(status(&live), HealthStatus::Current);
        live.deleted(&web);
        assert_eq!(status(&live), HealthStatus::NotFound);
    }

    #[test]
    fn a_relist_forgets_objects_deleted_while_disconnected() {
        let live = LiveHealth::default();
        let (a, b) = (config_map("a"), config_map("b"));
        let other = deployment("a", true);
        live.changed(&a);
        live.changed(&b);
        live.changed(&other);
        live.listed("", "ConfigMap");
        live.listed("apps", "Deployment");
        live.relisting("", "ConfigMap");
        live.changed(&a);
        live.listed("", "ConfigMap");
        let health = live
            .health(&[subject(&a), subject(&b), subject(&other)])
            .unwrap();
        let statuses: Vec<HealthStatus> = health.iter().map(|(_, h)| h.status).collect();
        assert_eq!(
            statuses,
            [
                HealthStatus::Current,
                HealthStatus::NotFound,
                HealthStatus::Current
            ],
            "b was not listed again; another kind's object is kept"
        );
    }
}
