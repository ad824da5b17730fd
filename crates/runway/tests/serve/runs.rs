//! Health and terminate, answered from the watch index.

use crate::harness::*;

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
    // Nothing of the run is left to terminate: NOT_FOUND (dagster-runway
    // reports it to Dagster as the stock launcher reports a missing Job).
    let again = h
        .grpc
        .terminate_run(proto::TerminateRunRequest {
            run_id: run.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), tonic::Code::NotFound, "{again:?}");
    let r = health_until(&mut h, &run, |r| r.status == WorkerStatus::NotFound as i32).await;
    assert_eq!(r.reason, "NotFound");
    h.finish().await;
}
