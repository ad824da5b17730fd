//! What the pool tells remote control: the tasks it holds, STARTED in the
//! backend, and a concurrency limit that moves at run time.

use super::*;

#[tokio::test(start_paused = true)]
async fn held_tasks_are_reserved_then_active_and_started_in_the_backend() {
    let (store, jobs, log) = fixture();
    let w = worker("a", &store, &jobs);
    w.pool.shrink(3);
    assert_eq!(w.pool.concurrency(), 1);
    let first = deliver(&w, task("h1", 10_000), 1, &log);
    let second = deliver(&w, task("h2", 10_000), 2, &log);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let active: Vec<String> = w.pool.registry.active().into_iter().map(|t| t.id).collect();
    let reserved: Vec<String> = w
        .pool
        .registry
        .reserved()
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(active.len(), 1, "one permit: {active:?} {reserved:?}");
    assert_eq!(reserved.len(), 1);
    let running = &active[0];
    assert_eq!(store.started_by(running).as_deref(), Some("a"));
    assert_eq!(
        w.pool.registry.active()[0].worker_pid,
        Some(std::process::id())
    );
    // Growing lets the reserved one start.
    w.pool.grow(1);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(w.pool.registry.active().len(), 2);
    assert!(w.pool.registry.reserved().is_empty());
    first.await.unwrap();
    second.await.unwrap();
    assert!(
        w.pool.registry.active().is_empty(),
        "settled tasks leave the registry"
    );
    assert_eq!(w.pool.processed.load(Ordering::Relaxed), 2);
}

#[tokio::test(start_paused = true)]
async fn shrinking_below_the_running_steps_waits_for_them() {
    let (store, jobs, log) = fixture();
    let w = worker("a", &store, &jobs);
    let runs: Vec<_> = (0..4)
        .map(|i| deliver(&w, task(&format!("s{i}"), 5_000), i, &log))
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(w.pool.registry.active().len(), 4);
    // Four permits are held; the limit drops at once, the permits as steps end.
    assert_eq!(w.pool.shrink(2), 2);
    assert_eq!(w.pool.concurrency(), 2);
    for r in runs {
        r.await.unwrap();
    }
    let more: Vec<_> = (0..3)
        .map(|i| deliver(&w, task(&format!("m{i}"), 5_000), 10 + i, &log))
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(w.pool.registry.active().len(), 2, "the new limit holds");
    for r in more {
        r.await.unwrap();
    }
    assert_eq!(w.pool.shrink(5), 1, "never below one");
}

#[tokio::test(start_paused = true)]
async fn a_worker_that_lost_its_claim_reports_nothing_and_answers_from_the_new_holder() {
    let (store, jobs, log) = fixture();
    let (a, b) = (worker("a", &store, &jobs), worker("b", &store, &jobs));
    let on_a = deliver(&a, task("p1", 20_000), 1, &log);
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Worker a froze past its claim (a long SIGSTOP): the claim lapsed, and
    // the redelivered task went to b, which takes it over.
    store.expire_claim("p1");
    let on_b = deliver(&b, task("p1", 2_000), 2, &log);
    on_b.await.unwrap();
    on_a.await.unwrap();
    assert_eq!(a.pool.metrics.claims_lost.get(), 1);
    let results = store.results("p1");
    assert_eq!(
        results.len(),
        1,
        "only the new holder's result: {results:?}"
    );
    assert!(results[0].contains("SUCCESS"), "{results:?}");
    assert_eq!(store.started_by("p1").as_deref(), Some("b"));
    assert_eq!(
        (
            a.steps.runs.load(Ordering::SeqCst),
            b.steps.runs.load(Ordering::SeqCst)
        ),
        (1, 1)
    );
    assert_eq!(
        jobs.created.load(Ordering::SeqCst),
        1,
        "b reused a's step Job"
    );
    // a's delivery is answered from b's result.
    assert_eq!(settled(&log), vec![(1, "ack"), (2, "ack")]);
}

#[tokio::test(start_paused = true)]
async fn a_result_is_never_replaced_and_a_revoked_task_never_starts() {
    let (store, jobs, log) = fixture();
    let w = worker("a", &store, &jobs);
    // A Python worker's revoke wrote REVOKED before this worker took the task.
    let revoked = r#"{"status": "REVOKED", "result": {"exc_type": "TaskRevokedError"}}"#;
    store.store("r1", revoked, None, None).await.unwrap();
    deliver(&w, task("r1", 10), 1, &log).await.unwrap();
    assert_eq!(w.steps.runs.load(Ordering::SeqCst), 0, "it never starts");
    assert_eq!(store.results("r1"), vec![revoked.to_owned()]);
    assert_eq!(settled(&log), vec![(1, "ack")]);
}
