//! WatchRuns: no transition lost or repeated through dropped watches and 410s; a slow
//! watcher is cut off without slowing the index.

use crate::harness::*;

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
