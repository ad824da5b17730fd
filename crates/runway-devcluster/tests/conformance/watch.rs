//! Watches through kube-rs: streaming lists, and a reflector that recovers
//! from dropped watches and 410 Gone.

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::{reflector, watcher, WatchStreamExt};

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
