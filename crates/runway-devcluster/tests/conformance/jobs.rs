//! Jobs through kube-rs: a Job run to completion seen through a watcher,
//! retries up to the backoff limit, 422 causes, a missing service account
//! and an image that cannot be pulled.

use std::time::Duration;

use futures::TryStreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, DeleteParams, ListParams, LogParams, PostParams, PropagationPolicy};
use kube::runtime::{watcher, WatchStreamExt};

use crate::support::{api_code, pod_spec, seed_job, target, wait_for_job, WAIT};

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

    let pod_name = the_completed_pod(&pods, name).await;
    let log = pods.logs(&pod_name, &LogParams::default()).await.unwrap();
    assert_eq!(
        log,
        format!("started {} pg-secret\n", job_name_env(&job.spec))
    );
    delete_in_background(&jobs, &pods, name).await;
    t.finish().await;
}

/// The Job's one pod, `<job>-<5 chars>`, terminated with Completed; its name.
async fn the_completed_pod(pods: &Api<Pod>, job: &str) -> String {
    let list = pods
        .list(&ListParams::default().labels(&format!("job-name={job}")))
        .await
        .unwrap();
    assert_eq!(list.items.len(), 1);
    let pod = &list.items[0];
    let pod_name = pod.metadata.name.clone().unwrap();
    assert!(pod_name.starts_with(&format!("{job}-")));
    assert_eq!(pod_name.len(), job.len() + 6);
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
    pod_name
}

/// Deletes the Job with Background propagation: its pods go, then it is 404.
async fn delete_in_background(jobs: &Api<Job>, pods: &Api<Pod>, name: &str) {
    let dp = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..DeleteParams::default()
    };
    jobs.delete(name, &dp).await.unwrap();
    let selector = ListParams::default().labels(&format!("job-name={name}"));
    let deadline = tokio::time::Instant::now() + WAIT;
    while !pods.list(&selector).await.unwrap().items.is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "pods left behind");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        api_code(&jobs.get(name).await.unwrap_err()),
        Some((404, "NotFound".into()))
    );
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
