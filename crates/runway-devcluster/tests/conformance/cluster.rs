//! The dev cluster itself: TLS and a bearer token, the simulated kubelet and
//! the TTL controller on a virtual clock, and orphaned pods.

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ContainerStateTerminated, Pod};
use kube::api::{Api, DeleteParams, ListParams, LogParams, PostParams, PropagationPolicy};
use serde_json::{json, Value};

use runway_devcluster::DevCluster;

use crate::support::{
    api_code, client_for, dev_target, seed_job, target, test_config, wait_for_job, WAIT,
};

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
    let terminated = |name: &'static str| terminated(&pods, name);
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

/// The seed Job with scripting annotations on its pod template and a TTL.
fn scripted(name: &str, anns: Value) -> Job {
    let mut job = serde_json::to_value(seed_job(name, "unused")).unwrap();
    job["spec"]["template"]["metadata"]["annotations"] = anns;
    job["spec"]["ttlSecondsAfterFinished"] = json!(7200);
    serde_json::from_value::<Job>(job).unwrap()
}

/// The terminated state of the first container of the Job's first pod, if any.
async fn terminated(pods: &Api<Pod>, job: &str) -> Option<ContainerStateTerminated> {
    let list = pods
        .list(&ListParams::default().labels(&format!("job-name={job}")))
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
