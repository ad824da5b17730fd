//! The harness of the service's tests: a dev cluster, `runway serve` in process on it, and
//! the seed's launch request.

#![allow(dead_code)]

pub use std::collections::{BTreeMap, HashMap, HashSet};
pub use std::sync::Arc;
pub use std::time::Duration;

pub use clap::Parser;
pub use futures::StreamExt;
pub use k8s_openapi::api::batch::v1::Job;
pub use k8s_openapi::api::core::v1::Pod;
pub use kube::api::{Api, ListParams, PostParams};
pub use kube::config::{KubeConfigOptions, Kubeconfig};
pub use kube::Client;
pub use serde_json::{json, Value};
pub use tonic::transport::Channel;

pub use runway::app::{start_serve, ServeHandle};
pub use runway::serve::settings::ServeArgs;
pub use runway::serve::sha256_hex;
pub use runway_devcluster::faults::FaultSettings;
pub use runway_devcluster::kubelet::KubeletMode;
pub use runway_devcluster::{DevCluster, DevClusterConfig};
pub use runway_proto as proto;
pub use runway_proto::run_launcher_client::RunLauncherClient;
pub use runway_proto::WorkerStatus;

pub const WAIT: Duration = Duration::from_secs(60);
pub use runway_devcluster::seed::NS;

#[derive(Parser)]
pub struct Args {
    #[command(flatten)]
    pub serve: ServeArgs,
}

pub struct Harness {
    pub dev: DevCluster,
    pub serve: Option<ServeHandle>,
    pub kube: Client,
    pub grpc: RunLauncherClient<Channel>,
    pub _dir: TempDir,
}

pub struct TempDir(pub std::path::PathBuf);
impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "runway-serve-{tag}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn dev_config(history: usize) -> DevClusterConfig {
    let mut c = DevClusterConfig::default();
    c.kubelet.mode = KubeletMode::Simulated;
    c.kubelet.images = vec!["*".into(), "!*.invalid/*".into()];
    c.kubelet.pull_backoff = Duration::from_millis(200);
    c.kubelet.default_duration_ms = 100;
    c.store.history = history;
    c
}

pub async fn kube_client(yaml: &str) -> Client {
    let kc = Kubeconfig::from_yaml(yaml).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

pub async fn create(kube: &Client, path: &str, body: Value) {
    let req = http::Request::post(path)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&body).unwrap())
        .unwrap();
    let _: Value = kube.request(req).await.unwrap();
}

/// The namespace with what the seed's Job refers to.
pub async fn prepare_namespace(kube: &Client) {
    for (path, body) in runway_devcluster::seed::seed_prerequisites() {
        create(kube, &path, body).await;
    }
}

pub async fn start(tag: &str, dev: DevClusterConfig, extra: &[&str]) -> Harness {
    let dir = TempDir::new(tag);
    let dev = DevCluster::start("127.0.0.1:0".parse().unwrap(), dev)
        .await
        .unwrap();
    let kubeconfig = dir.0.join("kubeconfig");
    dev.write_kubeconfig(&kubeconfig).unwrap();
    let kube = kube_client(&dev.kubeconfig()).await;
    prepare_namespace(&kube).await;
    let mut argv = vec![
        "serve".to_owned(),
        "--listen=127.0.0.1:0".into(),
        "--http-listen=127.0.0.1:0".into(),
        format!("--kubeconfig={}", kubeconfig.display()),
        format!("--namespace={NS}"),
        "--kube-qps=0".into(),
        "--kube-backoff-ms=20".into(),
        "--kube-backoff-max-ms=500".into(),
        "--kube-attempts=10".into(),
        "--unschedulable-grace-secs=2".into(),
    ];
    // A flag given by the test replaces the harness's own.
    let name = |a: &str| a.split('=').next().unwrap_or_default().to_owned();
    argv.retain(|a| !extra.iter().any(|e| name(e) == name(a)));
    argv.extend(extra.iter().map(|s| (*s).to_owned()));
    let args = Args::try_parse_from(argv).unwrap();
    let serve = start_serve(&args.serve).await.unwrap();
    assert!(
        serve.tracker.wait_synced(WAIT).await,
        "watches never synced"
    );
    let grpc = RunLauncherClient::connect(format!("http://{}", serve.grpc_addr))
        .await
        .unwrap();
    Harness {
        dev,
        serve: Some(serve),
        kube,
        grpc,
        _dir: dir,
    }
}

impl Harness {
    pub async fn finish(mut self) {
        if let Some(s) = self.serve.take() {
            s.shutdown().await.unwrap();
        }
        self.dev.shutdown().await;
    }

    pub fn jobs(&self) -> Api<Job> {
        Api::namespaced(self.kube.clone(), NS)
    }
}

pub fn seed_case() -> Value {
    serde_json::from_str(include_str!(
        "../../../../tests/fixtures/cases/seed_k8s_run.json"
    ))
    .unwrap()
}

pub fn launcher_config(launcher: &Value, class: &str) -> proto::LauncherConfig {
    let text = serde_json::to_string(launcher).unwrap();
    proto::LauncherConfig {
        launcher_class: class.into(),
        digest: sha256_hex(text.as_bytes()),
        config_json: text,
    }
}

/// A launch request for the seed case, for `run_id`, with extra tag config.
pub fn seed_request(run_id: &str, k8s_config: Option<Value>) -> proto::LaunchRunRequest {
    let case = seed_case();
    let run = &case["run"];
    let mut tags: HashMap<String, String> = run["tags"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect();
    if let Some(c) = k8s_config {
        tags.insert("dagster-k8s/config".into(), c.to_string());
    }
    proto::LaunchRunRequest {
        run: Some(proto::Run {
            run_id: run_id.into(),
            job_name: run["job_name"].as_str().unwrap().into(),
            location_name: run["location_name"].as_str().unwrap().into(),
            image: run["image"].as_str().map(str::to_owned),
            container_context_json: run["container_context"].to_string(),
            tags,
            args: run["args"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap().to_owned())
                .collect(),
            resume_attempt: 0,
            run_config_json: String::new(),
        }),
        launcher: Some(launcher_config(&case["launcher"], "K8sRunLauncher")),
        env: HashMap::new(),
        dagster_version: String::new(),
    }
}

/// Scripts the simulated pod through the run's tags, the way a user would
/// annotate a run's pods.
pub fn scripted(annotations: Value) -> Option<Value> {
    Some(json!({"pod_template_spec_metadata": {"annotations": annotations}}))
}

pub fn run_id(n: u32) -> String {
    format!("5e5d2c4a-0000-4a6b-9f4e-{n:012}")
}

pub async fn health(
    h: &mut Harness,
    run: &str,
    run_status: &str,
    mode: proto::HealthMode,
) -> proto::CheckRunWorkerHealthResponse {
    h.grpc
        .check_run_worker_health(proto::CheckRunWorkerHealthRequest {
            run_id: run.into(),
            resume_attempt: 0,
            run_status: run_status.into(),
            mode: mode as i32,
            launcher_class: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
}

/// Polls the in-memory health answer (no API call behind it) until `pred`.
pub async fn health_until(
    h: &mut Harness,
    run: &str,
    pred: impl Fn(&proto::CheckRunWorkerHealthResponse) -> bool,
) -> proto::CheckRunWorkerHealthResponse {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let r = health(h, run, "STARTING", proto::HealthMode::Diagnose).await;
        if pred(&r) {
            return r;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "health never matched: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every leaf of `want` is in `got` with the same value.
pub fn assert_subset(want: &Value, got: &Value, at: &str) {
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => {
            for (k, v) in w {
                let next = format!("{at}.{k}");
                let Some(gv) = g.get(k) else {
                    panic!("{next} missing from the created Job");
                };
                assert_subset(v, gv, &next);
            }
        }
        (Value::Array(w), Value::Array(g)) => {
            assert_eq!(w.len(), g.len(), "{at}: list length");
            for (i, (wv, gv)) in w.iter().zip(g).enumerate() {
                assert_subset(wv, gv, &format!("{at}[{i}]"));
            }
        }
        _ => assert_eq!(want, got, "{at}"),
    }
}
