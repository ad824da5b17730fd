//! `runway serve` against the dev cluster (simulated kubelet), driven by a
//! generated tonic client exactly as `dagster-runway` drives it: launch,
//! idempotent relaunch, resume, terminate, health in both modes, debug info,
//! WatchRuns through dropped watches and 410 Gone, API fault injection, and
//! SIGTERM during a burst.

#![allow(clippy::unwrap_used, clippy::panic, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::Client;
use serde_json::{json, Value};
use tonic::transport::Channel;

use runway::app::{start_serve, ServeHandle};
use runway::serve::settings::ServeArgs;
use runway::serve::sha256_hex;
use runway_devcluster::faults::FaultSettings;
use runway_devcluster::kubelet::KubeletMode;
use runway_devcluster::{DevCluster, DevClusterConfig};
use runway_proto as proto;
use runway_proto::run_launcher_client::RunLauncherClient;
use runway_proto::WorkerStatus;

const WAIT: Duration = Duration::from_secs(60);
use runway_devcluster::seed::NS;

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    serve: ServeArgs,
}

struct Harness {
    dev: DevCluster,
    serve: Option<ServeHandle>,
    kube: Client,
    grpc: RunLauncherClient<Channel>,
    _dir: TempDir,
}

struct TempDir(std::path::PathBuf);
impl TempDir {
    fn new(tag: &str) -> TempDir {
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

fn dev_config(history: usize) -> DevClusterConfig {
    let mut c = DevClusterConfig::default();
    c.kubelet.mode = KubeletMode::Simulated;
    c.kubelet.images = vec!["*".into(), "!*.invalid/*".into()];
    c.kubelet.pull_backoff = Duration::from_millis(200);
    c.kubelet.default_duration_ms = 100;
    c.store.history = history;
    c
}

async fn kube_client(yaml: &str) -> Client {
    let kc = Kubeconfig::from_yaml(yaml).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

async fn create(kube: &Client, path: &str, body: Value) {
    let req = http::Request::post(path)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&body).unwrap())
        .unwrap();
    let _: Value = kube.request(req).await.unwrap();
}

/// The namespace with what the seed's Job refers to.
async fn prepare_namespace(kube: &Client) {
    for (path, body) in runway_devcluster::seed::seed_prerequisites() {
        create(kube, &path, body).await;
    }
}

async fn start(tag: &str, dev: DevClusterConfig, extra: &[&str]) -> Harness {
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
    async fn finish(mut self) {
        if let Some(s) = self.serve.take() {
            s.shutdown().await.unwrap();
        }
        self.dev.shutdown().await;
    }

    fn jobs(&self) -> Api<Job> {
        Api::namespaced(self.kube.clone(), NS)
    }
}

fn seed_case() -> Value {
    serde_json::from_str(include_str!(
        "../../../tests/fixtures/cases/seed_k8s_run.json"
    ))
    .unwrap()
}

fn launcher_config(launcher: &Value, class: &str) -> proto::LauncherConfig {
    let text = serde_json::to_string(launcher).unwrap();
    proto::LauncherConfig {
        launcher_class: class.into(),
        digest: sha256_hex(text.as_bytes()),
        config_json: text,
    }
}

/// A launch request for the seed case, for `run_id`, with extra tag config.
fn seed_request(run_id: &str, k8s_config: Option<Value>) -> proto::LaunchRunRequest {
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
    }
}

/// Scripts the simulated pod through the run's tags, the way a user would
/// annotate a run's pods.
fn scripted(annotations: Value) -> Option<Value> {
    Some(json!({"pod_template_spec_metadata": {"annotations": annotations}}))
}

fn run_id(n: u32) -> String {
    format!("5e5d2c4a-0000-4a6b-9f4e-{n:012}")
}

async fn health(
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
async fn health_until(
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
fn assert_subset(want: &Value, got: &Value, at: &str) {
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

#[tokio::test]
async fn launch_creates_the_parity_job_once_and_resume_makes_the_next() {
    let mut h = start("launch", dev_config(100_000), &[]).await;
    let case = seed_case();
    let run = case["run"]["run_id"].as_str().unwrap().to_owned();
    let first = h
        .grpc
        .launch_run(seed_request(&run, None))
        .await
        .unwrap()
        .into_inner();
    assert!(first.created);
    assert_eq!(first.job_name, format!("dagster-run-{run}"));
    assert_eq!(first.namespace, NS);
    assert_eq!(first.image, "docker.io/dagster/user-code-example:1.1.9");

    // The stored Job carries everything of the parity-tested fixture, plus
    // the label the watches select on.
    let stored = h.jobs().get(&first.job_name).await.unwrap();
    assert_eq!(stored.metadata.uid.as_deref(), Some(first.uid.as_str()));
    let mut want: Value = serde_json::from_str(include_str!(
        "../../../tests/fixtures/jobs/seed_k8s_run.json"
    ))
    .unwrap();
    for labels in ["/metadata/labels", "/spec/template/metadata/labels"] {
        want.pointer_mut(labels)
            .unwrap()
            .as_object_mut()
            .unwrap()
            .insert("app.kubernetes.io/managed-by".into(), json!("runway"));
    }
    assert_subset(&want, &serde_json::to_value(&stored).unwrap(), "job");

    // The same launch again, and a retry with the digest only: the one Job.
    let again = h
        .grpc
        .launch_run(seed_request(&run, None))
        .await
        .unwrap()
        .into_inner();
    assert!(!again.created);
    assert_eq!(again.uid, first.uid);
    let mut digest_only = seed_request(&run, None);
    digest_only.launcher.as_mut().unwrap().config_json.clear();
    let third = h.grpc.launch_run(digest_only).await.unwrap().into_inner();
    assert_eq!(third.uid, first.uid);
    let all = h
        .jobs()
        .list(&ListParams::default().labels(&format!("dagster/run-id={run}")))
        .await
        .unwrap();
    assert_eq!(all.items.len(), 1);

    // A digest the server never saw asks for the body.
    let mut unknown = seed_request(&run_id(99), None);
    unknown.launcher.as_mut().unwrap().config_json.clear();
    unknown.launcher.as_mut().unwrap().digest = "ab".repeat(32);
    let err = h.grpc.launch_run(unknown).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    assert_eq!(
        err.metadata().get("runway-reason").unwrap(),
        "UNKNOWN_CONFIG_DIGEST"
    );

    let mut resume = seed_request(&run, None);
    resume.run.as_mut().unwrap().resume_attempt = 1;
    let resumed = h.grpc.resume_run(resume).await.unwrap().into_inner();
    assert_eq!(resumed.job_name, format!("dagster-run-{run}-1"));
    assert!(resumed.created);
    h.finish().await;
}

#[tokio::test]
async fn bad_requests_name_the_field_and_create_nothing() {
    let mut h = start("invalid", dev_config(100_000), &[]).await;
    let mut no_args = seed_request(&run_id(1), None);
    no_args.run.as_mut().unwrap().args.clear();
    let err = h.grpc.launch_run(no_args).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().starts_with("run.args:"), "{}", err.message());

    // The seed's own invalid resources, given in a tag.
    let bad = seed_request(
        &run_id(2),
        Some(json!({"container_config": {"resources": {"cpu": "1", "memory": "1Gi"}}})),
    );
    let err = h.grpc.launch_run(bad).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("resources"), "{}", err.message());

    let mut other_ns = seed_request(&run_id(3), None);
    let mut cc: Value =
        serde_json::from_str(&other_ns.run.as_ref().unwrap().container_context_json).unwrap();
    cc["k8s"]["namespace"] = json!("elsewhere");
    other_ns.run.as_mut().unwrap().container_context_json = cc.to_string();
    let err = h.grpc.launch_run(other_ns).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    assert!(err.message().contains("--namespace"), "{}", err.message());

    let mut wrong_digest = seed_request(&run_id(4), None);
    wrong_digest.launcher.as_mut().unwrap().digest = "00".repeat(32);
    let err = h.grpc.launch_run(wrong_digest).await.unwrap_err();
    assert!(
        err.message().starts_with("launcher.digest:"),
        "{}",
        err.message()
    );

    let jobs = h.jobs().list(&ListParams::default()).await.unwrap();
    assert!(jobs.items.is_empty(), "{:?}", jobs.items.len());
    h.finish().await;
}

#[tokio::test]
async fn health_answers_from_the_index_for_every_outcome() {
    let mut h = start("health", dev_config(100_000), &[]).await;

    // Success, then dagster-k8s's rule for a finished Job of a STARTED run.
    let ok = run_id(10);
    h.grpc
        .launch_run(seed_request(
            &ok,
            scripted(json!({"runway.dev/duration-ms": "200"})),
        ))
        .await
        .unwrap();
    let r = health_until(&mut h, &ok, |r| r.status == WorkerStatus::Success as i32).await;
    assert_eq!(r.job_name, format!("dagster-run-{ok}"));
    let started = health(&mut h, &ok, "STARTED", proto::HealthMode::DagsterCompat).await;
    assert_eq!(started.status, WorkerStatus::Failed as i32);
    assert_eq!(
        started.message,
        "Run has not completed but K8s job has no active pods"
    );

    // Failure.
    let bad = run_id(11);
    h.grpc
        .launch_run(seed_request(
            &bad,
            scripted(
                json!({"runway.dev/duration-ms": "100", "runway.dev/exit-code": "3",
                            "runway.dev/log": "step failed: boom"}),
            ),
        ))
        .await
        .unwrap();
    let r = health_until(&mut h, &bad, |r| r.status == WorkerStatus::Failed as i32).await;
    assert!(r.message.starts_with("K8s job failed"), "{r:?}");
    let compat = health(&mut h, &bad, "FAILURE", proto::HealthMode::DagsterCompat).await;
    assert_eq!(
        (compat.status, compat.message.as_str()),
        (WorkerStatus::Failed as i32, "K8s job failed")
    );

    // An image that cannot be pulled: FAILED within seconds, with the reason,
    // where dagster-k8s keeps saying RUNNING.
    let pull = run_id(12);
    let mut req = seed_request(&pull, None);
    req.run.as_mut().unwrap().image = Some("registry.invalid/nope:1".into());
    let started_at = tokio::time::Instant::now();
    h.grpc.launch_run(req).await.unwrap();
    let r = health_until(&mut h, &pull, |r| r.status == WorkerStatus::Failed as i32).await;
    assert!(started_at.elapsed() < Duration::from_secs(10));
    assert!(
        r.reason == "ErrImagePull" || r.reason == "ImagePullBackOff",
        "{r:?}"
    );
    assert!(r.message.contains("registry.invalid/nope:1"), "{r:?}");
    let compat = health(&mut h, &pull, "STARTING", proto::HealthMode::DagsterCompat).await;
    assert_eq!(compat.status, WorkerStatus::Running as i32);

    // A service account that does not exist: the Job never gets a pod.
    let sa = run_id(13);
    h.grpc
        .launch_run(seed_request(
            &sa,
            Some(json!({"pod_spec_config": {"service_account_name": "missing"}})),
        ))
        .await
        .unwrap();
    let r = health_until(&mut h, &sa, |r| r.status == WorkerStatus::Failed as i32).await;
    assert_eq!(r.reason, "FailedCreate", "{r:?}");
    assert!(r.message.contains("missing"), "{r:?}");

    // Unschedulable past the grace (2 s in this harness).
    let big = run_id(14);
    h.grpc
        .launch_run(seed_request(
            &big,
            Some(json!({"container_config": {"resources": {"requests": {"cpu": "100000"}}}})),
        ))
        .await
        .unwrap();
    let early = health(&mut h, &big, "STARTING", proto::HealthMode::Diagnose).await;
    assert_eq!(early.status, WorkerStatus::Running as i32, "{early:?}");
    let r = health_until(&mut h, &big, |r| r.status == WorkerStatus::Failed as i32).await;
    assert_eq!(r.reason, "Unschedulable", "{r:?}");

    // A Job that does not exist.
    let none = health(&mut h, &run_id(15), "STARTED", proto::HealthMode::Diagnose).await;
    assert_eq!(none.status, WorkerStatus::NotFound as i32);
    let none = health(
        &mut h,
        &run_id(15),
        "STARTED",
        proto::HealthMode::DagsterCompat,
    )
    .await;
    assert_eq!(none.status, WorkerStatus::Unknown as i32);
    assert_eq!(
        none.message,
        format!("Job dagster-run-{} could not be found", run_id(15))
    );

    // Debug info for the failed run: its pod, container state, log and events.
    let text = h
        .grpc
        .get_run_worker_debug_info(proto::GetRunWorkerDebugInfoRequest {
            run_id: bad.clone(),
            resume_attempt: 0,
            include_container_logs: true,
            log_lines: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .text;
    assert!(
        text.starts_with(&format!("Debug information for pod dagster-run-{bad}-")),
        "{text}"
    );
    assert!(text.contains("\n\nPod status: Failed"), "{text}");
    assert!(
        text.contains("Container 'dagster' status: Terminated with exit code 3: Error"),
        "{text}"
    );
    assert!(
        text.contains("Last 25 log lines for container 'dagster':\n"),
        "{text}"
    );
    assert!(text.contains("step failed: boom"), "{text}");
    assert!(
        text.contains(&format!("`kubectl describe job dagster-run-{bad}`")),
        "{text}"
    );
    let text = h
        .grpc
        .get_run_worker_debug_info(proto::GetRunWorkerDebugInfoRequest {
            run_id: sa.clone(),
            resume_attempt: 0,
            include_container_logs: false,
            log_lines: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .text;
    assert!(
        text.contains(&format!("Debug information for job dagster-run-{sa}:")),
        "{text}"
    );
    assert!(text.contains("FailedCreate: "), "{text}");
    h.finish().await;
}

#[tokio::test]
async fn terminate_deletes_the_job_and_its_pods() {
    let mut h = start("terminate", dev_config(100_000), &[]).await;
    let run = run_id(20);
    h.grpc
        .launch_run(seed_request(
            &run,
            scripted(json!({"runway.dev/scenario": "Never"})),
        ))
        .await
        .unwrap();
    health_until(&mut h, &run, |r| r.status == WorkerStatus::Running as i32).await;
    let pods: Api<Pod> = Api::namespaced(h.kube.clone(), NS);
    let selector = ListParams::default().labels(&format!("job-name=dagster-run-{run}"));
    let deadline = tokio::time::Instant::now() + WAIT;
    while pods.list(&selector).await.unwrap().items.is_empty() {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let t = h
        .grpc
        .terminate_run(proto::TerminateRunRequest {
            run_id: run.clone(),
            resume_attempt: 0,
            namespace: String::new(),
            include_step_jobs: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(t.terminated);
    assert_eq!(t.deleted_jobs, vec![format!("dagster-run-{run}")]);
    // The pod is deleted explicitly, unless the Job's Background deletion
    // got to it first.
    assert!(t.deleted_pods.len() <= 1, "{t:?}");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let gone_job = h
            .jobs()
            .get_opt(&format!("dagster-run-{run}"))
            .await
            .unwrap()
            .is_none();
        let gone_pods = pods.list(&selector).await.unwrap().items.is_empty();
        if gone_job && gone_pods {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            let left = pods.list(&selector).await.unwrap();
            panic!(
                "stayed: job {} pods {:?}",
                !gone_job,
                left.items
                    .iter()
                    .map(|p| (
                        &p.metadata.name,
                        &p.metadata.deletion_timestamp,
                        p.status.as_ref().map(|s| &s.phase)
                    ))
                    .collect::<Vec<_>>()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let again = h
        .grpc
        .terminate_run(proto::TerminateRunRequest {
            run_id: run.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!again.terminated);
    let r = health_until(&mut h, &run, |r| r.status == WorkerStatus::NotFound as i32).await;
    assert_eq!(r.reason, "NotFound");
    h.finish().await;
}

/// Collects WatchRuns transitions until every run has reached a final status.
async fn collect_until_final(
    mut stream: tonic::Streaming<proto::RunTransition>,
    runs: HashSet<String>,
) -> Vec<proto::RunTransition> {
    let mut finals = HashSet::new();
    let mut seen = Vec::new();
    while finals.len() < runs.len() {
        let t = tokio::time::timeout(WAIT, stream.next())
            .await
            .expect("no transition for a minute")
            .expect("stream ended")
            .expect("stream failed");
        if t.status == WorkerStatus::Success as i32 && runs.contains(&t.run_id) {
            finals.insert(t.run_id.clone());
        }
        seen.push(t);
    }
    seen
}

#[tokio::test]
async fn no_transition_is_lost_or_repeated_through_dropped_watches_and_410() {
    // A history small enough that every reconnection has to relist.
    let mut h = start("watch", dev_config(200), &["--watch-buffer=100000"]).await;
    let runs: Vec<String> = (0..1000).map(|n| run_id(1000 + n)).collect();
    let stream = h
        .grpc
        .watch_runs(proto::WatchRunsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let collector = tokio::spawn(collect_until_final(stream, runs.iter().cloned().collect()));
    let faults = h.dev.faults().clone();
    let cluster = h.dev.cluster().clone();
    let chaos = tokio::spawn(async move {
        for i in 0..20 {
            tokio::time::sleep(Duration::from_millis(150)).await;
            if i % 2 == 0 {
                faults.drop_watches();
            } else {
                cluster.compact();
                faults.drop_watches();
            }
        }
    });
    let sem = Arc::new(tokio::sync::Semaphore::new(64));
    let mut launches = Vec::new();
    for (i, run) in runs.iter().enumerate() {
        let mut grpc = h.grpc.clone();
        let req = seed_request(
            run,
            scripted(json!({"runway.dev/duration-ms": format!("{}", 200 + (i % 7) * 150)})),
        );
        let permit = sem.clone().acquire_owned().await.unwrap();
        launches.push(tokio::spawn(async move {
            let r = grpc.launch_run(req).await;
            drop(permit);
            r.unwrap().into_inner()
        }));
    }
    for l in launches {
        assert!(l.await.unwrap().created);
    }
    chaos.await.unwrap();
    let seen = collector.await.unwrap();
    let relists = h.serve.as_ref().unwrap().metrics.render();
    assert!(
        relists.contains("runway_watch_relists_total{kind=\"jobs\"}"),
        "{relists}"
    );

    // Per run: the statuses in order, no status twice in a row, exactly one
    // SUCCESS and nothing after it.
    let mut by_run: BTreeMap<&str, Vec<(i32, &str)>> = BTreeMap::new();
    for t in &seen {
        by_run
            .entry(&t.run_id)
            .or_default()
            .push((t.status, &t.reason));
    }
    assert_eq!(by_run.len(), runs.len());
    for (run, statuses) in &by_run {
        for pair in statuses.windows(2) {
            assert_ne!(
                pair[0], pair[1],
                "{run}: repeated transition in {statuses:?}"
            );
        }
        let successes = statuses
            .iter()
            .filter(|s| s.0 == WorkerStatus::Success as i32)
            .count();
        assert_eq!(successes, 1, "{run}: {statuses:?}");
        assert_eq!(
            statuses.last().unwrap().0,
            WorkerStatus::Success as i32,
            "{run}: {statuses:?}"
        );
    }
    h.finish().await;
}

#[tokio::test]
async fn every_launch_is_created_exactly_once_under_429_and_500() {
    let h = start("faults", dev_config(100_000), &[]).await;
    h.dev.faults().apply(&FaultSettings {
        rate_429: Some(0.2),
        rate_500: Some(0.1),
        commit_then_fail: Some(0.1),
        retry_after_seconds: Some(0),
        ..FaultSettings::default()
    });
    let runs: Vec<String> = (0..200).map(|n| run_id(5000 + n)).collect();
    let mut calls = Vec::new();
    for run in &runs {
        let mut grpc = h.grpc.clone();
        let req = seed_request(run, None);
        calls.push(tokio::spawn(async move { grpc.launch_run(req).await }));
    }
    let mut uids = HashSet::new();
    for c in calls {
        let r = c
            .await
            .unwrap()
            .expect("a launch failed under injected faults")
            .into_inner();
        uids.insert(r.uid);
    }
    h.dev.faults().apply(&FaultSettings {
        rate_429: Some(0.0),
        rate_500: Some(0.0),
        commit_then_fail: Some(0.0),
        ..FaultSettings::default()
    });
    let all = h.jobs().list(&ListParams::default()).await.unwrap();
    assert_eq!(all.items.len(), runs.len());
    let stored: HashSet<String> = all
        .items
        .iter()
        .filter_map(|j| j.metadata.uid.clone())
        .collect();
    assert_eq!(
        stored, uids,
        "a launch answered with a Job that is not the stored one"
    );
    let metrics = h.serve.as_ref().unwrap().metrics.render();
    assert!(
        metrics.contains("code=\"429\""),
        "no 429 was injected: {metrics}"
    );
    assert!(metrics.contains("runway_kube_retries_total"), "{metrics}");
    h.finish().await;
}

#[tokio::test]
async fn a_slow_watcher_is_cut_off_without_slowing_the_index() {
    let mut h = start("slow", dev_config(100_000), &["--watch-buffer=16"]).await;
    // A consumer that reads nothing, with a tiny HTTP/2 window so the
    // transport cannot absorb the backlog for it.
    let channel = tonic::transport::Endpoint::from_shared(format!(
        "http://{}",
        h.serve.as_ref().unwrap().grpc_addr
    ))
    .unwrap()
    .initial_stream_window_size(Some(1024))
    .initial_connection_window_size(Some(1024))
    .connect()
    .await
    .unwrap();
    let mut slow = RunLauncherClient::new(channel)
        .watch_runs(proto::WatchRunsRequest::default())
        .await
        .unwrap()
        .into_inner();
    for n in 0..60 {
        h.grpc
            .launch_run(seed_request(&run_id(7000 + n), None))
            .await
            .unwrap();
    }
    // The index kept up with every launch though nobody read the stream.
    let last = run_id(7059);
    health_until(&mut h, &last, |r| r.status == WorkerStatus::Success as i32).await;
    let mut ended = None;
    while let Some(item) = tokio::time::timeout(WAIT, slow.next())
        .await
        .expect("the slow stream stayed open")
    {
        if let Err(status) = item {
            ended = Some(status);
            break;
        }
    }
    let status = ended.expect("the slow stream was never cut off");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted);
    assert!(status.message().contains("fell"), "{}", status.message());
    h.finish().await;
}

#[tokio::test]
async fn token_and_metrics_and_probes() {
    let dir = TempDir::new("token-file");
    let token = dir.0.join("token");
    std::fs::write(&token, "s3cret\n").unwrap();
    let flag = format!("--token-file={}", token.display());
    let mut h = start("token", dev_config(100_000), &[flag.as_str()]).await;
    let err = h
        .grpc
        .check_run_worker_health(proto::CheckRunWorkerHealthRequest {
            run_id: run_id(1),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    let mut req = tonic::Request::new(proto::CheckRunWorkerHealthRequest {
        run_id: run_id(1),
        ..Default::default()
    });
    req.metadata_mut()
        .insert("authorization", "Bearer s3cret".parse().unwrap());
    let ok = h
        .grpc
        .check_run_worker_health(req)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ok.status, WorkerStatus::NotFound as i32);

    let http_addr = h.serve.as_ref().unwrap().http_addr;
    let get = |path: &'static str| async move {
        let mut s = tokio::net::TcpStream::connect(http_addr).await.unwrap();
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    };
    assert!(get("/ready").await.starts_with("HTTP/1.1 200"));
    assert!(get("/live").await.starts_with("HTTP/1.1 200"));
    let metrics = get("/metrics").await;
    assert!(
        metrics.contains("runway_health_checks_total{status=\"NOT_FOUND\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics
            .contains("runway_grpc_requests_total{method=\"CheckRunWorkerHealth\",code=\"OK\"} 1"),
        "{metrics}"
    );
    h.finish().await;
}

#[test]
fn sigterm_during_a_burst_loses_no_accepted_launch() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let dir = TempDir::new("sigterm");
        let dev = DevCluster::start("127.0.0.1:0".parse().unwrap(), dev_config(100_000))
            .await
            .unwrap();
        let kubeconfig = dir.0.join("kubeconfig");
        dev.write_kubeconfig(&kubeconfig).unwrap();
        let kube = kube_client(&dev.kubeconfig()).await;
        prepare_namespace(&kube).await;
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_runway"))
            .args([
                "serve",
                &format!("--listen=127.0.0.1:{port}"),
                "--http-listen=127.0.0.1:0",
                &format!("--kubeconfig={}", kubeconfig.display()),
                &format!("--namespace={NS}"),
                "--kube-qps=0",
                "--log-format=text",
            ])
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // The first stdout line says it listens.
        let stdout = child.stdout.take().unwrap();
        let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
        let line = tokio::time::timeout(WAIT, lines.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(line.starts_with("runway serve listening"), "{line}");
        let grpc = RunLauncherClient::connect(format!("http://127.0.0.1:{port}"))
            .await
            .unwrap();
        // Slow the API down so the burst is in flight when the signal lands.
        dev.faults().apply(&FaultSettings {
            latency_ms: Some(100),
            ..FaultSettings::default()
        });
        let mut calls = Vec::new();
        for n in 0..300 {
            let mut grpc = grpc.clone();
            let run = run_id(9000 + n);
            let req = seed_request(&run, None);
            calls.push(tokio::spawn(
                async move { (run, grpc.launch_run(req).await) },
            ));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let pid = child.id().unwrap();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let mut accepted = Vec::new();
        let mut refused = 0;
        for c in calls {
            let (run, r) = c.await.unwrap();
            match r {
                Ok(resp) => accepted.push((run, resp.into_inner())),
                Err(s) => {
                    // Refused, never half-done: the client knows to retry.
                    assert!(
                        matches!(
                            s.code(),
                            tonic::Code::Unavailable
                                | tonic::Code::Unknown
                                | tonic::Code::Cancelled
                        ),
                        "{s:?}"
                    );
                    refused += 1;
                }
            }
        }
        let exit = tokio::time::timeout(WAIT, child.wait())
            .await
            .unwrap()
            .unwrap();
        assert!(exit.success(), "runway serve exited with {exit:?}");
        assert!(
            !accepted.is_empty(),
            "nothing was accepted before the signal"
        );
        dev.faults().apply(&FaultSettings {
            latency_ms: Some(0),
            ..FaultSettings::default()
        });
        let jobs: Api<Job> = Api::namespaced(kube.clone(), NS);
        for (run, resp) in &accepted {
            let job = jobs.get(&format!("dagster-run-{run}")).await.unwrap();
            assert_eq!(job.metadata.uid.as_deref(), Some(resp.uid.as_str()));
        }
        eprintln!(
            "accepted {} launches, {refused} refused after SIGTERM",
            accepted.len()
        );
        let _ = PostParams::default();
        dev.shutdown().await;
    });
}

fn pki(dir: &std::path::Path) -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf = |name: &str| {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec![name.to_owned()])
            .unwrap()
            .signed_by(&key, &ca, &ca_key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (server_cert, server_key) = leaf("localhost");
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("server.pem"), server_cert).unwrap();
    std::fs::write(dir.join("server.key"), server_key).unwrap();
    let (client_cert, client_key) = leaf("dagster-daemon");
    (ca.pem(), client_cert, client_key)
}

#[tokio::test]
async fn mtls_rejects_clients_without_a_certificate_and_health_reports_serving() {
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
    let dir = TempDir::new("pki");
    let (ca, client_cert, client_key) = pki(&dir.0);
    let flags = [
        format!("--tls-cert={}", dir.0.join("server.pem").display()),
        format!("--tls-key={}", dir.0.join("server.key").display()),
        format!("--tls-client-ca={}", dir.0.join("ca.pem").display()),
    ];
    let flag_refs: Vec<&str> = flags.iter().map(String::as_str).collect();
    let h = start("mtls", dev_config(100_000), &flag_refs).await;
    let url = format!(
        "https://localhost:{}",
        h.serve.as_ref().unwrap().grpc_addr.port()
    );

    let anonymous = Endpoint::from_shared(url.clone())
        .unwrap()
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(&ca))
                .domain_name("localhost"),
        )
        .unwrap();
    let refused = match anonymous.connect().await {
        Err(_) => true,
        Ok(ch) => RunLauncherClient::new(ch)
            .check_run_worker_health(proto::CheckRunWorkerHealthRequest {
                run_id: run_id(1),
                ..Default::default()
            })
            .await
            .is_err(),
    };
    assert!(refused, "a client without a certificate got through");

    let ch = Endpoint::from_shared(url)
        .unwrap()
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(&ca))
                .identity(Identity::from_pem(client_cert, client_key))
                .domain_name("localhost"),
        )
        .unwrap()
        .connect()
        .await
        .unwrap();
    let r = RunLauncherClient::new(ch.clone())
        .check_run_worker_health(proto::CheckRunWorkerHealthRequest {
            run_id: run_id(1),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.status, WorkerStatus::NotFound as i32);
    let mut health = tonic_health::pb::health_client::HealthClient::new(ch);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let s = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: "runway.v1.RunLauncher".into(),
            })
            .await
            .unwrap()
            .into_inner();
        if s.status == tonic_health::pb::health_check_response::ServingStatus::Serving as i32 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never SERVING: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    h.finish().await;
}

mod otlp {
    use std::sync::Mutex;

    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
        TraceService, TraceServiceServer,
    };
    use opentelemetry_proto::tonic::collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
    };

    use super::*;

    #[derive(Default)]
    struct Collector(Arc<Mutex<Vec<ExportTraceServiceRequest>>>);

    #[tonic::async_trait]
    impl TraceService for Collector {
        async fn export(
            &self,
            req: tonic::Request<ExportTraceServiceRequest>,
        ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
            self.0.lock().unwrap().push(req.into_inner());
            Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
        }
    }

    fn attr(span: &opentelemetry_proto::tonic::trace::v1::Span, key: &str) -> Option<String> {
        span.attributes.iter().find(|a| a.key == key).and_then(|a| {
            a.value.as_ref().and_then(|v| match &v.value {
                Some(opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(s)) => {
                    Some(s.clone())
                }
                _ => None,
            })
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn launches_are_traced_over_otlp_with_the_run_id() {
        let seen: Arc<Mutex<Vec<ExportTraceServiceRequest>>> = Arc::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(Collector(seen.clone())))
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
        );
        let telemetry = runway::telemetry::init(
            runway::settings::LogFormat::Text,
            Some(&format!("http://{addr}")),
            "runway-serve",
        )
        .unwrap();
        let mut h = start("otlp", dev_config(100_000), &[]).await;
        let run = run_id(4242);
        h.grpc.launch_run(seed_request(&run, None)).await.unwrap();
        h.finish().await;
        // Shutting the pipeline down flushes the batch.
        tokio::task::spawn_blocking(move || drop(telemetry))
            .await
            .unwrap();
        let requests = seen.lock().unwrap();
        let spans: Vec<_> = requests
            .iter()
            .flat_map(|r| &r.resource_spans)
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
            .collect();
        let launch = spans
            .iter()
            .find(|s| s.name == "launch")
            .unwrap_or_else(|| {
                panic!(
                    "no launch span among {:?}",
                    spans.iter().map(|s| &s.name).collect::<Vec<_>>()
                )
            });
        assert_eq!(attr(launch, "run_id").as_deref(), Some(run.as_str()));
        let service = requests[0].resource_spans[0]
            .resource
            .as_ref()
            .and_then(|r| r.attributes.iter().find(|a| a.key == "service.name"))
            .and_then(|a| a.value.clone());
        assert!(
            format!("{service:?}").contains("runway-serve"),
            "{service:?}"
        );
    }
}

#[tokio::test]
async fn a_saturated_rate_limit_refuses_with_a_retry_hint_and_drops_nothing() {
    // The watches take tokens too; a queue of two makes launches overflow it.
    let h = start(
        "throttle",
        dev_config(100_000),
        &["--kube-qps=2", "--kube-burst=1", "--kube-queue=2"],
    )
    .await;
    // The three watch requests pass the same bucket: let them through first.
    let deadline = tokio::time::Instant::now() + WAIT;
    while !h
        .serve
        .as_ref()
        .unwrap()
        .metrics
        .render()
        .contains("verb=\"watch\",resource=\"pods\"")
        || !h
            .serve
            .as_ref()
            .unwrap()
            .metrics
            .render()
            .contains("verb=\"watch\",resource=\"jobs\"")
        || !h
            .serve
            .as_ref()
            .unwrap()
            .metrics
            .render()
            .contains("verb=\"watch\",resource=\"events\"")
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the watches never started"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut calls = Vec::new();
    for n in 0..12 {
        let mut grpc = h.grpc.clone();
        let run = run_id(8000 + n);
        let req = seed_request(&run, None);
        calls.push(tokio::spawn(
            async move { (run, grpc.launch_run(req).await) },
        ));
    }
    let mut created = Vec::new();
    let mut refused = Vec::new();
    for c in calls {
        let (run, r) = c.await.unwrap();
        match r {
            Ok(resp) => created.push((run, resp.into_inner())),
            Err(s) => {
                assert_eq!(s.code(), tonic::Code::ResourceExhausted, "{s:?}");
                assert!(s.message().contains("rate limit"), "{}", s.message());
                let hint: u64 = s
                    .metadata()
                    .get("retry-after-ms")
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!(hint > 0);
                refused.push(run);
            }
        }
    }
    assert!(!refused.is_empty(), "nothing was refused");
    assert!(
        !created.is_empty(),
        "nothing was created; {} refused; {}",
        refused.len(),
        h.serve.as_ref().unwrap().metrics.render()
    );
    // What was refused was not created; what was answered exists.
    let jobs = h.jobs();
    for run in &refused {
        assert!(jobs
            .get_opt(&format!("dagster-run-{run}"))
            .await
            .unwrap()
            .is_none());
    }
    for (run, resp) in &created {
        let job = jobs.get(&format!("dagster-run-{run}")).await.unwrap();
        assert_eq!(job.metadata.uid.as_deref(), Some(resp.uid.as_str()));
    }
    h.finish().await;
}
