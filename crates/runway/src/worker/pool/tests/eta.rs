//! `eta` and `expires`, on the paused clock (the headers are wall-clock
//! times, read once when the task arrives).

use super::*;

fn at(offset_secs: i64) -> Value {
    let when = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(offset_secs);
    Value::String(when.to_string())
}

#[tokio::test(start_paused = true)]
async fn a_task_runs_at_its_eta_without_holding_a_slot_while_it_waits() {
    let (store, jobs, log) = fixture();
    let mut w = worker("a", &store, &jobs);
    w.pool = {
        let mut config = w.pool.config.clone();
        config.concurrency = 1;
        Pool::new(
            w.steps.clone(),
            store.clone(),
            w.broker.clone(),
            Events::disabled("a"),
            Arc::new(Metrics::new()),
            config,
        )
    };
    let mut later = task("later", 10);
    later.headers.insert("eta".into(), at(120));
    let waiting = deliver(&w, later, 1, &log);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let scheduled = w.pool.registry.scheduled();
    assert_eq!(scheduled.len(), 1);
    assert_eq!(scheduled[0].1.id, "later");
    assert!(w.pool.registry.reserved().is_empty());
    // The only slot is free: a task without an ETA runs meanwhile.
    deliver(&w, task("now", 10), 2, &log).await.unwrap();
    assert_eq!(store.results("now").len(), 1);
    assert!(store.results("later").is_empty());
    assert_eq!(w.steps.runs.load(Ordering::SeqCst), 1);
    waiting.await.unwrap();
    assert!(store.results("later")[0].contains(r#""status": "SUCCESS""#));
    assert!(w.pool.registry.scheduled().is_empty());
    assert_eq!(settled(&log), vec![(1, "ack"), (2, "ack")]);
}

#[tokio::test(start_paused = true)]
async fn an_expired_task_is_revoked_as_expired_and_never_runs() {
    let (store, jobs, log) = fixture();
    let w = worker("a", &store, &jobs);
    let mut stale = task("stale", 10);
    stale.headers.insert(
        "expires".into(),
        Value::String("2000-01-01T00:00:00+00:00".into()),
    );
    deliver(&w, stale, 1, &log).await.unwrap();
    let meta = store.results("stale").pop().unwrap_or_default();
    assert!(meta.starts_with(r#"{"status": "REVOKED""#), "{meta}");
    assert!(meta.contains(r#""exc_message": ["expired"]"#), "{meta}");
    // Due at its ETA, it expires before then: it never runs either.
    let mut late = task("late", 10);
    late.headers.insert("eta".into(), at(60));
    late.headers.insert("expires".into(), at(30));
    deliver(&w, late, 2, &log).await.unwrap();
    assert!(store.results("late")[0].contains(r#""exc_message": ["expired"]"#));
    assert_eq!(w.steps.runs.load(Ordering::SeqCst), 0);
    assert_eq!(settled(&log), vec![(1, "ack"), (2, "ack")]);
}
