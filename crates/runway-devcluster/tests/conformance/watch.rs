//! Watches through kube-rs: streaming lists, a reflector that recovers from
//! dropped watches and 410 Gone, and reads from a resourceVersion the
//! cluster has not reached.

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, DeleteParams, ListParams, PostParams, VersionMatch, WatchParams};
use kube::runtime::{reflector, watcher, WatchStreamExt};
use serde_json::Value;

use crate::support::{dev_target, seed_job, target, test_config, WAIT};

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
        .watch(&WatchParams::default(), "1")
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

/// A read from a resourceVersion the cluster has not reached is answered
/// as kube-apiserver answers it: a list with 504 Timeout ("Too large
/// resource version", cause ResourceVersionTooLarge, retry after 1 s); a
/// watch asking for initial events with 200 and one ERROR event carrying
/// that Status; a plain watch by waiting for that revision, sending only
/// later changes.
#[tokio::test]
async fn too_large_resource_versions_are_answered_as_the_api_server_does() {
    let t = target("conf-too-large").await;
    let client = t.client_without_retries().await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), &t.ns);
    let current: u64 = jobs
        .list_metadata(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap()
        .parse()
        .unwrap();
    let future = (current + 1_000_000).to_string();
    let mut matches = vec![VersionMatch::NotOlderThan];
    if t.dev.is_some() {
        // A real server serves Exact lists from etcd or its cache depending
        // on its version and feature gates; only the dev cluster is pinned.
        matches.push(VersionMatch::Exact);
    }
    for version_match in matches {
        let lp = ListParams::default().at(&future).matching(version_match);
        let err = tokio::time::timeout(WAIT, jobs.list(&lp))
            .await
            .unwrap()
            .unwrap_err();
        let kube::Error::Api(status) = &err else {
            panic!("{err:?}")
        };
        assert_too_large(status, &future);
    }

    let path = format!(
        "/apis/batch/v1/namespaces/{}/jobs?watch=true&resourceVersion={future}\
         &sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true\
         &timeoutSeconds=10",
        t.ns
    );
    let request = http::Request::get(path).body(Vec::new()).unwrap();
    let text = tokio::time::timeout(WAIT, client.request_text(request))
        .await
        .unwrap()
        .unwrap();
    let event: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(event["type"], "ERROR", "{text}");
    let status: kube::core::Status = serde_json::from_value(event["object"].clone()).unwrap();
    assert_too_large(&status, &future);

    let plain = WatchParams::default().timeout(2);
    let stream = jobs.watch(&plain, &future).await.unwrap();
    jobs.create(&PostParams::default(), &seed_job("before-it", "sleep 30"))
        .await
        .unwrap();
    let events: Vec<_> = tokio::time::timeout(WAIT, stream.collect::<Vec<_>>())
        .await
        .unwrap();
    assert!(events.is_empty(), "{events:?}");
    t.finish().await;
}

fn assert_too_large(status: &kube::core::Status, requested: &str) {
    assert_eq!((status.code, status.reason.as_str()), (504, "Timeout"));
    assert!(
        status.message.starts_with(&format!(
            "Timeout: Too large resource version: {requested}, current: "
        )),
        "{}",
        status.message
    );
    let details = status.details.as_ref().unwrap();
    assert_eq!(details.causes[0].reason, "ResourceVersionTooLarge");
    assert_eq!(details.retry_after_seconds, 1);
}
