//! What the watches decode of a Job or a pod: only the fields the index
//! reads. A watch event carries the whole object (a run Job's pod template
//! with its env, args and volumes, a pod's defaulted spec, managed fields),
//! and building all of it into k8s-openapi's types on every event was most
//! of what `serve` and `worker` spent per launch or step. serde skips the
//! rest without allocating; the index still receives k8s-openapi objects,
//! holding just these fields.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobSpec, JobStatus};
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, PodStatus, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use serde::{Deserialize, Deserializer};

/// A Job as the watch decodes it.
#[derive(Debug, Clone, Deserialize)]
pub struct SlimJob {
    #[serde(deserialize_with = "slim_meta")]
    pub metadata: ObjectMeta,
    #[serde(default)]
    spec: Option<SlimJobSpec>,
    #[serde(default)]
    status: Option<JobStatus>,
}

/// A pod as the watch decodes it.
#[derive(Debug, Clone, Deserialize)]
pub struct SlimPod {
    #[serde(deserialize_with = "slim_meta")]
    pub metadata: ObjectMeta,
    #[serde(default)]
    spec: Option<SlimPodSpec>,
    #[serde(default)]
    status: Option<PodStatus>,
}

#[derive(Debug, Clone, Deserialize)]
struct SlimJobSpec {
    #[serde(default)]
    template: Option<SlimTemplate>,
}

#[derive(Debug, Clone, Deserialize)]
struct SlimTemplate {
    #[serde(default)]
    spec: Option<SlimPodSpec>,
}

#[derive(Debug, Clone, Deserialize)]
struct SlimPodSpec {
    #[serde(default)]
    containers: Vec<SlimContainer>,
}

#[derive(Debug, Clone, Deserialize)]
struct SlimContainer {
    #[serde(default)]
    name: String,
    #[serde(default)]
    image: Option<String>,
}

/// The metadata the index and the watch bookkeeping read.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SlimMeta {
    name: Option<String>,
    namespace: Option<String>,
    uid: Option<String>,
    resource_version: Option<String>,
    labels: Option<BTreeMap<String, String>>,
    deletion_timestamp: Option<Time>,
}

fn slim_meta<'de, D: Deserializer<'de>>(d: D) -> Result<ObjectMeta, D::Error> {
    let m = SlimMeta::deserialize(d)?;
    Ok(ObjectMeta {
        name: m.name,
        namespace: m.namespace,
        uid: m.uid,
        resource_version: m.resource_version,
        labels: m.labels,
        deletion_timestamp: m.deletion_timestamp,
        ..ObjectMeta::default()
    })
}

impl SlimPodSpec {
    fn to_spec(&self) -> PodSpec {
        PodSpec {
            containers: self
                .containers
                .iter()
                .map(|c| Container {
                    name: c.name.clone(),
                    image: c.image.clone(),
                    ..Container::default()
                })
                .collect(),
            ..PodSpec::default()
        }
    }
}

impl SlimJob {
    /// The Job the index reads, with only the decoded fields set.
    pub fn to_job(&self) -> Job {
        let template_spec = self
            .spec
            .as_ref()
            .and_then(|s| s.template.as_ref())
            .and_then(|t| t.spec.as_ref());
        Job {
            metadata: self.metadata.clone(),
            spec: self.spec.as_ref().map(|_| JobSpec {
                template: PodTemplateSpec {
                    metadata: None,
                    spec: template_spec.map(SlimPodSpec::to_spec),
                },
                ..JobSpec::default()
            }),
            status: self.status.clone(),
        }
    }
}

impl SlimPod {
    /// The pod the index reads, with only the decoded fields set.
    pub fn to_pod(&self) -> Pod {
        Pod {
            metadata: self.metadata.clone(),
            spec: self.spec.as_ref().map(SlimPodSpec::to_spec),
            status: self.status.clone(),
        }
    }
}

impl k8s_openapi::Resource for SlimJob {
    const API_VERSION: &'static str = <Job as k8s_openapi::Resource>::API_VERSION;
    const GROUP: &'static str = <Job as k8s_openapi::Resource>::GROUP;
    const KIND: &'static str = <Job as k8s_openapi::Resource>::KIND;
    const VERSION: &'static str = <Job as k8s_openapi::Resource>::VERSION;
    const URL_PATH_SEGMENT: &'static str = <Job as k8s_openapi::Resource>::URL_PATH_SEGMENT;
    type Scope = <Job as k8s_openapi::Resource>::Scope;
}

impl k8s_openapi::Metadata for SlimJob {
    type Ty = ObjectMeta;
    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

impl k8s_openapi::Resource for SlimPod {
    const API_VERSION: &'static str = <Pod as k8s_openapi::Resource>::API_VERSION;
    const GROUP: &'static str = <Pod as k8s_openapi::Resource>::GROUP;
    const KIND: &'static str = <Pod as k8s_openapi::Resource>::KIND;
    const VERSION: &'static str = <Pod as k8s_openapi::Resource>::VERSION;
    const URL_PATH_SEGMENT: &'static str = <Pod as k8s_openapi::Resource>::URL_PATH_SEGMENT;
    type Scope = <Pod as k8s_openapi::Resource>::Scope;
}

impl k8s_openapi::Metadata for SlimPod {
    type Ty = ObjectMeta;
    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod_json() -> serde_json::Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1", "resourceVersion": "7",
                "labels": {"job-name": "j"}, "managedFields": [{"manager": "x", "fieldsV1": {"f:a": {}}}],
                "deletionTimestamp": "2026-01-02T03:04:05Z"},
            "spec": {"containers": [{"name": "dagster", "image": "img",
                "env": [{"name": "A", "value": "b"}], "args": ["x"]}],
                "restartPolicy": "Never", "volumes": [{"name": "v", "emptyDir": {}}]},
            "status": {"phase": "Failed", "message": "m",
                "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                    "lastTransitionTime": "2026-01-02T03:04:05Z", "message": "no nodes"}],
                "containerStatuses": [{"name": "dagster", "ready": false, "restartCount": 1,
                    "image": "img", "imageID": "",
                    "state": {"terminated": {"exitCode": 3, "reason": "Error", "message": "boom"}},
                    "lastState": {"terminated": {"exitCode": 1}}}]}
        })
    }

    #[test]
    fn a_pod_keeps_every_field_the_index_reads() {
        let full: Pod = serde_json::from_value(pod_json()).unwrap();
        let slim: SlimPod = serde_json::from_value(pod_json()).unwrap();
        let pod = slim.to_pod();
        assert_eq!(pod.status, full.status);
        let meta = &pod.metadata;
        assert_eq!(meta.name, full.metadata.name);
        assert_eq!(meta.namespace, full.metadata.namespace);
        assert_eq!(meta.uid, full.metadata.uid);
        assert_eq!(meta.resource_version, full.metadata.resource_version);
        assert_eq!(meta.labels, full.metadata.labels);
        assert_eq!(meta.deletion_timestamp, full.metadata.deletion_timestamp);
        assert!(meta.managed_fields.is_none(), "managed fields are skipped");
        let names = |p: &Pod| -> Vec<String> {
            p.spec
                .as_ref()
                .unwrap()
                .containers
                .iter()
                .map(|c| c.name.clone())
                .collect()
        };
        assert_eq!(names(&pod), names(&full));
        // The index's own reading of both is the same.
        assert_eq!(
            runway_core::track::index::PodEntry::from_pod(&pod),
            runway_core::track::index::PodEntry::from_pod(&full)
        );
    }

    #[test]
    fn a_job_keeps_every_field_the_index_reads() {
        let doc = json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "j", "namespace": "ns", "uid": "u", "resourceVersion": "9",
                "labels": {"dagster/run-id": "r", "dagster/op": "s"}},
            "spec": {"backoffLimit": 0, "template": {"metadata": {"labels": {"a": "b"}},
                "spec": {"restartPolicy": "Never",
                    "containers": [{"name": "dagster", "image": "img:1", "args": ["a"]}]}}},
            "status": {"active": 1, "ready": 1, "succeeded": 0, "failed": 0,
                "startTime": "2026-01-02T03:04:05Z",
                "conditions": [{"type": "Complete", "status": "True", "reason": "Done", "message": "ok"}]}
        });
        let full: Job = serde_json::from_value(doc.clone()).unwrap();
        let slim: SlimJob = serde_json::from_value(doc).unwrap();
        let job = slim.to_job();
        assert_eq!(job.status, full.status);
        assert_eq!(
            runway_core::track::index::JobEntry::from_job(&job),
            runway_core::track::index::JobEntry::from_job(&full)
        );
    }
}
