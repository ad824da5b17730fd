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
