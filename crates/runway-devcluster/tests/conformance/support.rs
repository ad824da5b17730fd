//! What every scenario uses: the target cluster (a fresh dev cluster or the
//! one `RUNWAY_CONFORMANCE_KUBECONFIG` names), its namespace, the seed Job,
//! and waiting for a Job's condition.

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, DeleteParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::{json, Value};

use runway_devcluster::{DevCluster, DevClusterConfig};

pub const WAIT: Duration = Duration::from_secs(60);

pub struct Target {
    pub client: Client,
    pub ns: String,
    pub dev: Option<DevCluster>,
    /// The kubeconfig YAML the client was made from.
    pub kubeconfig: String,
}

pub fn test_config() -> DevClusterConfig {
    let mut config = DevClusterConfig::default();
    config.controller.pod_failure_backoff = Duration::from_millis(50);
    config.kubelet.images = vec!["*".into(), "!*.invalid/*".into()];
    config
}

pub async fn client_for(yaml: &str) -> Client {
    Client::try_from(config_for(yaml).await).unwrap()
}

async fn config_for(yaml: &str) -> Config {
    let kubeconfig = Kubeconfig::from_yaml(yaml).unwrap();
    Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap()
}

pub async fn dev_target(config: DevClusterConfig, ns: &str) -> Target {
    let dev = DevCluster::start("127.0.0.1:0".parse().unwrap(), config)
        .await
        .unwrap();
    let kubeconfig = dev.kubeconfig();
    let t = Target {
        client: client_for(&kubeconfig).await,
        ns: ns.to_owned(),
        dev: Some(dev),
        kubeconfig,
    };
    create_namespace(&t).await;
    t
}

/// The cluster named by `RUNWAY_CONFORMANCE_KUBECONFIG`, or a fresh dev cluster.
pub async fn target(ns: &str) -> Target {
    match std::env::var("RUNWAY_CONFORMANCE_KUBECONFIG") {
        Ok(path) if !path.is_empty() => {
            let yaml = std::fs::read_to_string(&path).unwrap();
            let unique = format!("{ns}-{}", std::process::id());
            let t = Target {
                client: client_for(&yaml).await,
                ns: unique,
                dev: None,
                kubeconfig: yaml,
            };
            create_namespace(&t).await;
            t
        }
        _ => dev_target(test_config(), ns).await,
    }
}

/// The namespace, with the Secret the seed Job's `DAGSTER_PG_PASSWORD` reads.
async fn create_namespace(t: &Target) {
    let nss: Api<Namespace> = Api::all(t.client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": t.ns}})).unwrap();
    nss.create(&PostParams::default(), &ns).await.unwrap();
    let secrets: Api<Secret> = Api::namespaced(t.client.clone(), &t.ns);
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "dagster-postgresql-secret"},
        "stringData": {"postgresql-password": "pg-secret"}
    }))
    .unwrap();
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
}

impl Target {
    /// A client that does not retry 429, 503 and 504 answers (kube-rs's
    /// default does, for minutes), for scenarios that assert on them.
    pub async fn client_without_retries(&self) -> Client {
        let mut config = config_for(&self.kubeconfig).await;
        config.default_retry = false;
        Client::try_from(config).unwrap()
    }

    pub async fn finish(self) {
        let nss: Api<Namespace> = Api::all(self.client.clone());
        let _ = nss.delete(&self.ns, &DeleteParams::default()).await;
        if let Some(dev) = self.dev {
            dev.shutdown().await;
        }
    }
}

/// The Job dagster-k8s builds for the seed deployment (the parity-tested
/// fixture), with a command that runs on any machine and no service account.
pub fn seed_job(name: &str, script: &str) -> Job {
    let text = include_str!("../../../../tests/fixtures/jobs/seed_k8s_run.json");
    let mut job: Value = serde_json::from_str(text).unwrap();
    job["metadata"]["name"] = json!(name);
    job["metadata"].as_object_mut().unwrap().remove("namespace");
    let spec = &mut job["spec"]["template"]["spec"];
    spec.as_object_mut().unwrap().remove("serviceAccountName");
    spec.as_object_mut().unwrap().remove("affinity");
    spec["imagePullSecrets"] = json!([]);
    let c = &mut spec["containers"][0];
    c["command"] = json!(["sh", "-c", script]);
    c["args"] = json!([]);
    c["envFrom"] = json!([]);
    c["image"] = json!("busybox:1.36");
    serde_json::from_value(job).unwrap()
}

pub fn pod_spec(job: &mut Job) -> &mut k8s_openapi::api::core::v1::PodSpec {
    job.spec.as_mut().unwrap().template.spec.as_mut().unwrap()
}

pub fn api_code(err: &kube::Error) -> Option<(u16, String)> {
    match err {
        kube::Error::Api(s) => Some((s.code, s.reason.clone())),
        _ => None,
    }
}

pub async fn wait_for_job(jobs: &Api<Job>, name: &str, cond: &str) -> Job {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let job = jobs.get(name).await.unwrap();
        let done = job
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == cond && c.status == "True"));
        if done {
            return job;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} never reached {cond}: {job:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
