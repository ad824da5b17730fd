//! LaunchRun and ResumeRun: the parity Job created once, bad requests refused by field, and
//! idempotence under 429, 500 and a saturated rate limit.

use crate::harness::*;

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
        "../../../../tests/fixtures/jobs/seed_k8s_run.json"
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

    // A Dagster no profile covers is refused with the supported range.
    let mut ancient = seed_request(&run_id(5), None);
    ancient.dagster_version = "0.15.8".into();
    let err = h.grpc.launch_run(ancient).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        err.message()
            .starts_with("dagster_version: Dagster 0.15.8 is not supported"),
        "{}",
        err.message()
    );

    let jobs = h.jobs().list(&ListParams::default()).await.unwrap();
    assert!(jobs.items.is_empty(), "{:?}", jobs.items.len());
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
