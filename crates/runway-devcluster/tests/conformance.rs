//! The dev cluster driven by the unmodified kube-rs client: typed APIs,
//! errors, `watcher` with `default_backoff` (plain and streaming lists),
//! `reflector` through dropped watches and 410 Gone, pod logs and deletion
//! propagation.
//!
//! The scenarios run against an in-process dev cluster. With
//! `RUNWAY_CONFORMANCE_KUBECONFIG=<path>` the scenarios that need no dev
//! cluster internals run against that cluster instead (a real one), each in
//! a namespace of its own; the fault scenarios always use the dev cluster.

// Helpers outside #[test] fns are test code too: a failed step is a failed test.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, Namespace, Pod, Secret};
use kube::api::{Api, DeleteParams, ListParams, LogParams, PostParams, PropagationPolicy};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube::{Client, Config};
use serde_json::{json, Value};

use runway_devcluster::{DevCluster, DevClusterConfig};

const WAIT: Duration = Duration::from_secs(60);

struct Target {
    client: Client,
    ns: String,
    dev: Option<DevCluster>,
}

fn test_config() -> DevClusterConfig {
    let mut config = DevClusterConfig::default();
    config.controller.pod_failure_backoff = Duration::from_millis(50);
    config.kubelet.images = vec!["*".into(), "!*.invalid/*".into()];
    config
}

async fn client_for(yaml: &str) -> Client {
    let kubeconfig = Kubeconfig::from_yaml(yaml).unwrap();
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

async fn dev_target(config: DevClusterConfig, ns: &str) -> Target {
    let dev = DevCluster::start("127.0.0.1:0".parse().unwrap(), config)
        .await
        .unwrap();
    let client = client_for(&dev.kubeconfig()).await;
    let t = Target {
        client,
        ns: ns.to_owned(),
        dev: Some(dev),
    };
    create_namespace(&t).await;
    t
}

/// The cluster named by `RUNWAY_CONFORMANCE_KUBECONFIG`, or a fresh dev cluster.
async fn target(ns: &str) -> Target {
    match std::env::var("RUNWAY_CONFORMANCE_KUBECONFIG") {
        Ok(path) if !path.is_empty() => {
            let yaml = std::fs::read_to_string(&path).unwrap();
            let unique = format!("{ns}-{}", std::process::id());
            let t = Target {
                client: client_for(&yaml).await,
                ns: unique,
                dev: None,
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
    async fn finish(self) {
        let nss: Api<Namespace> = Api::all(self.client.clone());
        let _ = nss.delete(&self.ns, &DeleteParams::default()).await;
        if let Some(dev) = self.dev {
            dev.shutdown().await;
        }
    }
}

/// The Job dagster-k8s builds for the seed deployment (the parity-tested
/// fixture), with a command that runs on any machine and no service account.
fn seed_job(name: &str, script: &str) -> Job {
    let text = include_str!("../../../tests/fixtures/jobs/seed_k8s_run.json");
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

fn pod_spec(job: &mut Job) -> &mut k8s_openapi::api::core::v1::PodSpec {
    job.spec.as_mut().unwrap().template.spec.as_mut().unwrap()
}

fn api_code(err: &kube::Error) -> Option<(u16, String)> {
    match err {
        kube::Error::Api(s) => Some((s.code, s.reason.clone())),
        _ => None,
    }
}

async fn wait_for_job(jobs: &Api<Job>, name: &str, cond: &str) -> Job {
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

#[tokio::test]
async fn job_runs_to_completion_seen_through_a_watcher() {
    let t = target("conf-lifecycle").await;
    let jobs: Api<Job> = Api::namespaced(t.client.clone(), &t.ns);
    let pods: Api<Pod> = Api::namespaced(t.client.clone(), &t.ns);
    let name = "dagster-run-5e5d2c4a-0000-4a6b-9f4e-000000000001";

    let selector = format!("job-name={name}");
    let phases = watcher(pods.clone(), watcher::Config::default().labels(&selector))
        .default_backoff()
        .applied_objects()
        .map_ok(|p: Pod| p.status.and_then(|s| s.phase).unwrap_or_default())
        .try_take_while(|phase| std::future::ready(Ok(phase != "Succeeded")))
        .try_collect::<Vec<String>>();
    let phases = tokio::spawn(phases);

    let created = jobs
        .create(
            &PostParams::default(),
            &seed_job(
                name,
                "echo started $DAGSTER_RUN_JOB_NAME $DAGSTER_PG_PASSWORD; sleep 0.2",
            ),
        )
        .await
        .unwrap();
    let uid = created.metadata.uid.clone().unwrap();
    let spec = created.spec.clone().unwrap();
    assert_eq!(spec.backoff_limit, Some(0));
    let tl = spec.template.metadata.unwrap().labels.unwrap();
    assert_eq!(tl["batch.kubernetes.io/controller-uid"], uid);
    assert_eq!(tl["job-name"], name);

    // A second create of the same Job is 409 AlreadyExists, as Dagster's retry sees it.
    let again = jobs
        .create(&PostParams::default(), &seed_job(name, "true"))
        .await
        .unwrap_err();
    assert_eq!(api_code(&again), Some((409, "AlreadyExists".into())));

    let phases = tokio::time::timeout(WAIT, phases)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        phases.iter().all(|p| p == "Pending" || p == "Running"),
        "{phases:?}"
    );

    let job = wait_for_job(&jobs, name, "Complete").await;
    let status = job.status.unwrap();
    assert_eq!(status.succeeded, Some(1));
    assert!(status.completion_time.is_some());

    let list = pods
        .list(&ListParams::default().labels(&selector))
        .await
        .unwrap();
    assert_eq!(list.items.len(), 1);
    let pod = &list.items[0];
    let pod_name = pod.metadata.name.clone().unwrap();
    assert!(pod_name.starts_with(&format!("{name}-")));
    assert_eq!(pod_name.len(), name.len() + 6);
    let cs = &pod
        .status
        .as_ref()
        .unwrap()
        .container_statuses
        .as_ref()
        .unwrap()[0];
    let term = cs.state.as_ref().unwrap().terminated.as_ref().unwrap();
    assert_eq!(
        (term.exit_code, term.reason.as_deref()),
        (0, Some("Completed"))
    );

    let log = pods.logs(&pod_name, &LogParams::default()).await.unwrap();
    assert_eq!(
        log,
        format!("started {} pg-secret\n", job_name_env(&job.spec))
    );

    let dp = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..DeleteParams::default()
    };
    jobs.delete(name, &dp).await.unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while !pods
        .list(&ListParams::default().labels(&selector))
        .await
        .unwrap()
        .items
        .is_empty()
    {
        assert!(tokio::time::Instant::now() < deadline, "pods left behind");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        api_code(&jobs.get(name).await.unwrap_err()),
        Some((404, "NotFound".into()))
    );
    t.finish().await;
}

fn job_name_env(spec: &Option<k8s_openapi::api::batch::v1::JobSpec>) -> String {
    spec.as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|s| s.containers[0].env.as_ref())
        .and_then(|env| env.iter().find(|e| e.name == "DAGSTER_RUN_JOB_NAME"))
        .and_then(|e| e.value.clone())
        .unwrap_or_default()
}

#[tokio::test]
async fn failing_pods_are_retried_up_to_the_backoff_limit() {
    let t = target("conf-backoff").await;
    let jobs: Api<Job> = Api::namespaced(t.client.clone(), &t.ns);
    let mut job = seed_job("fails", "echo boom >&2; exit 3");
    job.spec.as_mut().unwrap().backoff_limit = Some(1);
    jobs.create(&PostParams::default(), &job).await.unwrap();
    let job = wait_for_job(&jobs, "fails", "Failed").await;
    let status = job.status.unwrap();
    assert_eq!(status.failed, Some(2));
    let failed = status
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Failed")
        .unwrap();
    assert_eq!(failed.reason.as_deref(), Some("BackoffLimitExceeded"));
    let pods: Api<Pod> = Api::namespaced(t.client.clone(), &t.ns);
    let list = pods
        .list(&ListParams::default().labels("job-name=fails"))
        .await
        .unwrap();
    assert_eq!(list.items.len(), 2);
    for p in &list.items {
        let s = p.status.as_ref().unwrap();
        assert_eq!(s.phase.as_deref(), Some("Failed"));
        let term = s.container_statuses.as_ref().unwrap()[0]
            .state
            .as_ref()
            .unwrap()
            .terminated
            .clone()
            .unwrap();
        assert_eq!((term.exit_code, term.reason.as_deref()), (3, Some("Error")));
    }
    t.finish().await;
}

#[tokio::test]
async fn invalid_jobs_are_422_with_field_causes() {
    let t = target("conf-invalid").await;
    let jobs: Api<Job> = Api::namespaced(t.client.clone(), &t.ns);
    let mut job = seed_job("Not_A_Name", "true");
    pod_spec(&mut job).restart_policy = Some("Always".into());
    let err = jobs.create(&PostParams::default(), &job).await.unwrap_err();
    let kube::Error::Api(status) = &err else {
        panic!("{err:?}")
    };
    assert_eq!((status.code, status.reason.as_str()), (422, "Invalid"));
    assert!(
        status
            .message
            .contains("metadata.name: Invalid value: \"Not_A_Name\""),
        "{}",
        status.message
    );
    assert!(
        status.message.contains("spec.template.spec.restartPolicy"),
        "{}",
        status.message
    );
    assert_eq!(
        api_code(&jobs.get("missing").await.unwrap_err()),
        Some((404, "NotFound".into()))
    );
    t.finish().await;
}

#[tokio::test]
async fn missing_service_account_is_failed_create_and_no_pod() {
    let t = target("conf-sa").await;
    let jobs: Api<Job> = Api::namespaced(t.client.clone(), &t.ns);
    let mut job = seed_job("no-sa", "true");
    pod_spec(&mut job).service_account_name = Some("nobody".into());
    jobs.create(&PostParams::default(), &job).await.unwrap();
    let events: Api<Event> = Api::namespaced(t.client.clone(), &t.ns);
    let deadline = tokio::time::Instant::now() + WAIT;
    let event = loop {
        let list = events
            .list(&ListParams::default().fields("involvedObject.name=no-sa"))
            .await
            .unwrap();
        if let Some(e) = list
            .items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("FailedCreate"))
        {
            break e;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no FailedCreate event"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    assert!(event
        .message
        .unwrap_or_default()
        .contains("serviceaccount \"nobody\" not found"));
    let pods: Api<Pod> = Api::namespaced(t.client.clone(), &t.ns);
    assert!(pods
        .list(&ListParams::default().labels("job-name=no-sa"))
        .await
        .unwrap()
        .items
        .is_empty());
    t.finish().await;
}

#[tokio::test]
async fn unknown_image_is_err_image_pull_then_back_off() {
    let t = target("conf-image").await;
    let jobs: Api<Job> = Api::namespaced(t.client.clone(), &t.ns);
    let mut job = seed_job("bad-image", "true");
    pod_spec(&mut job).containers[0].image = Some("registry.invalid/nope:1".into());
    jobs.create(&PostParams::default(), &job).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(t.client.clone(), &t.ns);
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while !seen.contains(&"ImagePullBackOff".to_owned()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "reasons seen: {seen:?}"
        );
        let list = pods
            .list(&ListParams::default().labels("job-name=bad-image"))
            .await
            .unwrap();
        for p in list.items {
            let s = p.status.unwrap_or_default();
            assert_eq!(s.phase.as_deref(), Some("Pending"));
            for cs in s.container_statuses.unwrap_or_default() {
                if let Some(w) = cs.state.and_then(|s| s.waiting) {
                    let r = w.reason.unwrap_or_default();
                    if !seen.contains(&r) {
                        seen.push(r);
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(seen.contains(&"ErrImagePull".to_owned()), "{seen:?}");
    t.finish().await;
}

#[tokio::test]
async fn streaming_list_watcher_sees_existing_and_new_jobs() {
    let t = target("conf-streaming").await;
    let jobs: Api<Job> = Api::namespaced(t.client.clone(), &t.ns);
    for i in 0..3 {
        jobs.create(
            &PostParams::default(),
            &seed_job(&format!("pre-{i}"), "sleep 30"),
        )
        .await
        .unwrap();
    }
    let mut stream = watcher(jobs.clone(), watcher::Config::default().streaming_lists())
        .default_backoff()
        .boxed();
    let mut initial = Vec::new();
    loop {
        match tokio::time::timeout(WAIT, stream.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
        {
            watcher::Event::Init => {}
            watcher::Event::InitApply(j) => initial.push(j.metadata.name.unwrap()),
            watcher::Event::InitDone => break,
            other => panic!("before InitDone: {other:?}"),
        }
    }
    initial.sort();
    assert_eq!(initial, ["pre-0", "pre-1", "pre-2"]);
    jobs.create(&PostParams::default(), &seed_job("post", "sleep 30"))
        .await
        .unwrap();
    loop {
        if let watcher::Event::Apply(j) = tokio::time::timeout(WAIT, stream.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
        {
            if j.metadata.name.as_deref() == Some("post") {
                break;
            }
        }
    }
    t.finish().await;
}

#[tokio::test]
async fn reflector_recovers_from_dropped_watches_and_410() {
    let mut config = test_config();
    config.store.history = 8;
    let t = dev_target(config, "conf-reflector").await;
    let dev = t.dev.as_ref().unwrap();
    let jobs: Api<Job> = Api::namespaced(t.client.clone(), &t.ns);

    // A raw watch from a compacted version is answered 410 Expired.
    for i in 0..3 {
        jobs.create(
            &PostParams::default(),
            &seed_job(&format!("old-{i}"), "sleep 30"),
        )
        .await
        .unwrap();
    }
    dev.cluster().compact();
    let mut raw = jobs
        .watch(&kube::api::WatchParams::default(), "1")
        .await
        .unwrap()
        .boxed();
    match tokio::time::timeout(WAIT, raw.next()).await.unwrap() {
        Some(Ok(kube::core::WatchEvent::Error(e))) => {
            assert_eq!((e.code, e.reason.as_str()), (410, "Expired"))
        }
        Some(Err(kube::Error::Api(e))) => assert_eq!(e.code, 410),
        other => panic!("expected 410, got {other:?}"),
    }

    let (reader, writer) = reflector::store::<Job>();
    let stream = reflector(writer, watcher(jobs.clone(), watcher::Config::default()))
        .default_backoff()
        .touched_objects()
        .for_each(|_| std::future::ready(()));
    let task = tokio::spawn(stream);
    reader.wait_until_ready().await.unwrap();

    // Cut every watch and compact while more Jobs arrive: the watcher must
    // re-list (after 410) and end with every Job.
    for round in 0..3 {
        for i in 0..5 {
            jobs.create(
                &PostParams::default(),
                &seed_job(&format!("r{round}-{i}"), "sleep 30"),
            )
            .await
            .unwrap();
        }
        dev.cluster().compact();
        dev.faults().drop_watches();
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    while reader.state().len() != 18 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "reflector has {}",
            reader.state().len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    jobs.delete("old-0", &DeleteParams::background())
        .await
        .unwrap();
    while reader.state().len() != 17 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "delete not reflected"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    task.abort();
    t.finish().await;
}

#[tokio::test]
async fn tls_and_token_are_enforced() {
    let mut config = test_config();
    config.tls = true;
    config.server.token = Some("s3cret".into());
    let dev = DevCluster::start("127.0.0.1:0".parse().unwrap(), config)
        .await
        .unwrap();
    assert!(dev.url().starts_with("https://127.0.0.1:"));
    assert!(dev.ca_pem().unwrap().contains("BEGIN CERTIFICATE"));

    // The kubeconfig (CA data + token) is all kube-rs needs.
    let client = client_for(&dev.kubeconfig()).await;
    let jobs: Api<Job> = Api::namespaced(client, "default");
    jobs.create(&PostParams::default(), &seed_job("over-tls", "true"))
        .await
        .unwrap();
    assert_eq!(
        jobs.list(&ListParams::default()).await.unwrap().items.len(),
        1
    );

    // The same server without the token is 401 Unauthorized.
    let anonymous = dev
        .kubeconfig()
        .replace("  user:\n    token: s3cret\n", "  user: {}\n");
    assert_ne!(anonymous, dev.kubeconfig());
    let jobs: Api<Job> = Api::namespaced(client_for(&anonymous).await, "default");
    let err = jobs.list(&ListParams::default()).await.unwrap_err();
    assert_eq!(api_code(&err), Some((401, "Unauthorized".into())));
    dev.shutdown().await;
}

/// Simulated kubelet on a virtual clock: durations, exit codes, scripted
/// failures and the TTL controller move only when the test advances time.
#[tokio::test]
async fn simulated_kubelet_and_ttl_on_a_virtual_clock() {
    use runway_devcluster::clock::Clock;
    use runway_devcluster::kubelet::KubeletMode;

    let mut config = test_config();
    config.kubelet.mode = KubeletMode::Simulated;
    let clock = Clock::virtual_at(1_800_000_000_000);
    config.clock = clock.clone();
    let t = dev_target(config, "conf-sim").await;
    let jobs: Api<Job> = Api::namespaced(t.client.clone(), &t.ns);
    let pods: Api<Pod> = Api::namespaced(t.client.clone(), &t.ns);
    let scripted = |name: &str, anns: Value| {
        let mut job = serde_json::to_value(seed_job(name, "unused")).unwrap();
        job["spec"]["template"]["metadata"]["annotations"] = anns;
        job["spec"]["ttlSecondsAfterFinished"] = json!(7200);
        serde_json::from_value::<Job>(job).unwrap()
    };
    let ok = scripted(
        "sim-ok",
        json!({"runway.dev/duration-ms": "60000", "runway.dev/log": "a\nb"}),
    );
    let fail = scripted(
        "sim-fail",
        json!({"runway.dev/duration-ms": "1000", "runway.dev/exit-code": "3"}),
    );
    let oom = scripted(
        "sim-oom",
        json!({"runway.dev/scenario": "OOMKilled", "runway.dev/duration-ms": "1000"}),
    );
    for j in [&ok, &fail, &oom] {
        jobs.create(&PostParams::default(), j).await.unwrap();
    }
    let terminated = |name: &'static str| {
        let pods = pods.clone();
        async move {
            let list = pods
                .list(&ListParams::default().labels(&format!("job-name={name}")))
                .await
                .unwrap();
            list.items.first().and_then(|p| {
                p.status.as_ref()?.container_statuses.as_ref()?[0]
                    .state
                    .as_ref()?
                    .terminated
                    .clone()
            })
        }
    };
    // Time stands still: nothing finishes.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(terminated("sim-fail").await.is_none());

    clock.advance(2_000);
    let fail_job = wait_for_job(&jobs, "sim-fail", "Failed").await;
    assert_eq!(fail_job.status.unwrap().failed, Some(1));
    let term = terminated("sim-fail").await.unwrap();
    assert_eq!((term.exit_code, term.reason.as_deref()), (3, Some("Error")));
    let term = terminated("sim-oom").await.unwrap();
    assert_eq!(
        (term.exit_code, term.reason.as_deref()),
        (137, Some("OOMKilled"))
    );
    assert!(
        terminated("sim-ok").await.is_none(),
        "60 s have not passed yet"
    );

    clock.advance(60_000);
    wait_for_job(&jobs, "sim-ok", "Complete").await;
    let list = pods
        .list(&ListParams::default().labels("job-name=sim-ok"))
        .await
        .unwrap();
    let pod_name = list.items[0].metadata.name.clone().unwrap();
    assert_eq!(
        pods.logs(&pod_name, &LogParams::default()).await.unwrap(),
        "a\nb\n"
    );

    // ttlSecondsAfterFinished: gone once 7200 s have passed since completion.
    clock.advance(7_100_000);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(jobs.get("sim-ok").await.is_ok(), "deleted before its TTL");
    clock.advance(200_000);
    let deadline = tokio::time::Instant::now() + WAIT;
    while jobs.get("sim-ok").await.is_ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "TTL controller never deleted the Job"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    t.finish().await;
}

#[tokio::test]
async fn orphaned_pods_lose_their_owner_and_tracking_finalizer() {
    let t = target("conf-orphan").await;
    let jobs: Api<Job> = Api::namespaced(t.client.clone(), &t.ns);
    jobs.create(&PostParams::default(), &seed_job("orphaner", "sleep 30"))
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(t.client.clone(), &t.ns);
    let by_job = ListParams::default().labels("job-name=orphaner");
    let deadline = tokio::time::Instant::now() + WAIT;
    let pod = loop {
        let list = pods.list(&by_job).await.unwrap();
        if let Some(p) = list.items.into_iter().next() {
            break p;
        }
        assert!(tokio::time::Instant::now() < deadline, "no pod was created");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let name = pod.metadata.name.clone().unwrap();
    let finalizers = pod.metadata.finalizers.clone().unwrap_or_default();
    assert!(
        finalizers
            .iter()
            .any(|f| f == "batch.kubernetes.io/job-tracking"),
        "{finalizers:?}"
    );

    // What dagster-k8s's delete_job does: the pod outlives its Job.
    let orphan = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Orphan),
        ..DeleteParams::default()
    };
    jobs.delete("orphaner", &orphan).await.unwrap();
    let released = loop {
        let p = pods.get(&name).await.unwrap();
        let owned = p
            .metadata
            .owner_references
            .as_ref()
            .is_some_and(|r| !r.is_empty());
        let tracked = p
            .metadata
            .finalizers
            .as_ref()
            .is_some_and(|f| !f.is_empty());
        if !owned && !tracked {
            break p;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the orphan kept its owner or finalizer: {:?}",
            p.metadata
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(released.metadata.deletion_timestamp.is_none());
    assert!(jobs.get_opt("orphaner").await.unwrap().is_none());

    // Without the finalizer the orphan can now go for good.
    pods.delete(&name, &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    loop {
        if pods.get_opt(&name).await.unwrap().is_none() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} was never removed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    t.finish().await;
}
