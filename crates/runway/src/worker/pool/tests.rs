//! The pool's rules against in-memory fakes: a result store shared by
//! several workers' pools, an in-memory `JobApi` the scripted steps create
//! their Jobs in, deliveries that record how they were settled, and a
//! broker that records parked copies. Time is tokio's paused clock.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use super::*;
use crate::broker::amqp::PublishError;
use crate::cluster::memory::MemoryJobs;
use crate::cluster::JobApi;
use crate::results::memory::MemoryStore;
use crate::worker::revoke::RevokeWait;
use crate::worker::runner::Fence;
use crate::worker::task::Finish;
use runway_core::celery::control::shapes::DeliveryInfo;

mod eta;
mod held;

// === fakes ===

/// How each delivery was settled, by delivery number.
type Settled = Arc<Mutex<Vec<(u32, &'static str)>>>;

#[derive(Debug)]
struct TestAck {
    n: u32,
    log: Settled,
}

impl Ack for TestAck {
    async fn ack(self) {
        lock(&self.log).push((self.n, "ack"));
    }
    async fn requeue(self) {
        lock(&self.log).push((self.n, "requeue"));
    }
    async fn discard(self) {
        lock(&self.log).push((self.n, "discard"));
    }
}

#[derive(Debug, Default)]
struct TestBroker {
    parked: AtomicUsize,
    failing: AtomicBool,
    /// How long a park takes (its publish and confirm).
    park_ms: AtomicU64,
}

impl Broker for Arc<TestBroker> {
    type Ack = TestAck;
    fn scheduled(&self, _held: bool) {}
    async fn park(&self, _copy: &Parked) -> Result<(), PublishError> {
        tokio::time::sleep(Duration::from_millis(self.park_ms.load(Ordering::SeqCst))).await;
        if self.failing.load(Ordering::SeqCst) {
            return Err(PublishError::Nacked);
        }
        self.parked.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// A step that creates its Job (by its deterministic name, reusing it on a
/// 409), runs for `ms` of the task's kwargs, and reports what it did.
#[derive(Debug)]
struct ScriptedSteps {
    jobs: Arc<MemoryJobs>,
    runs: AtomicUsize,
}

impl StepRunner for Arc<ScriptedSteps> {
    async fn run(
        &self,
        kwargs: &Map<String, Value>,
        mut revoke: RevokeWait,
        job_done: &OnceLock<Instant>,
        fence: &Fence,
    ) -> Finish {
        self.runs.fetch_add(1, Ordering::SeqCst);
        let id = kwargs["id"].as_str().unwrap_or_default().to_owned();
        let job = json!({"apiVersion": "batch/v1", "kind": "Job",
                         "metadata": {"name": format!("dagster-step-{id}")}});
        match self.jobs.create_job("ns", &job).await {
            Ok(_) | Err(crate::cluster::Error::AlreadyExists { .. }) => {}
            Err(e) => return Finish::value_error(e.to_string()),
        }
        let ms = kwargs["ms"].as_u64().unwrap_or(10);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(ms)) => {}
            _ = revoke.rx.wait_for(|r| *r) => return Finish::Revoked,
        }
        // As the task body does: nothing learnt after the wait is reported
        // by a worker that lost the claim meanwhile.
        if !fence.held().await {
            return Finish::ClaimLost;
        }
        let _ = job_done.set(Instant::now());
        Finish::Events(vec![format!("ran {id}")])
    }
}

type TestPool = Pool<Arc<ScriptedSteps>, Arc<MemoryStore>, Arc<TestBroker>>;

struct Worker {
    pool: Arc<TestPool>,
    steps: Arc<ScriptedSteps>,
    broker: Arc<TestBroker>,
}

fn worker(name: &str, store: &Arc<MemoryStore>, jobs: &Arc<MemoryJobs>) -> Worker {
    let steps = Arc::new(ScriptedSteps {
        jobs: jobs.clone(),
        runs: AtomicUsize::new(0),
    });
    let broker = Arc::new(TestBroker::default());
    let pool = Pool::new(
        steps.clone(),
        store.clone(),
        broker.clone(),
        Events::disabled(name),
        Arc::new(Metrics::new()),
        PoolConfig {
            hostname: name.into(),
            concurrency: 4,
            shutdown_grace: Duration::from_secs(5),
            ack_deadline: Duration::from_secs(60),
            claim_ttl: Duration::from_secs(30),
        },
    );
    Worker {
        pool,
        steps,
        broker,
    }
}

fn task(id: &str, ms: u64) -> Accepted {
    let mut kwargs = Map::new();
    kwargs.insert("id".into(), id.into());
    kwargs.insert("ms".into(), ms.into());
    Accepted {
        id: id.into(),
        task: TASK.into(),
        kwargs: Arc::new(kwargs),
        reply_to: None,
        retries: 0,
        headers: Map::new(),
        delivery: DeliveryInfo {
            exchange: String::new(),
            routing_key: "dagster".into(),
            priority: None,
            redelivered: false,
        },
    }
}

fn copy() -> Option<Parked> {
    Some(Parked {
        queue: "dagster".into(),
        properties: lapin::BasicProperties::default(),
        body: b"{}".to_vec(),
    })
}

fn deliver(w: &Worker, msg: Accepted, n: u32, log: &Settled) -> tokio::task::JoinHandle<()> {
    let ack = TestAck {
        n,
        log: log.clone(),
    };
    tokio::spawn(w.pool.clone().accept(msg, ack, copy()))
}

fn settled(log: &Settled) -> Vec<(u32, &'static str)> {
    let mut v = lock(log).clone();
    v.sort();
    v
}

fn fixture() -> (Arc<MemoryStore>, Arc<MemoryJobs>, Settled) {
    (Arc::default(), Arc::default(), Settled::default())
}

// === tests ===

#[tokio::test(start_paused = true)]
async fn a_redelivery_joins_the_run_and_is_acknowledged_with_it() {
    let (store, jobs, log) = fixture();
    let w = worker("a", &store, &jobs);
    let first = deliver(&w, task("t1", 5_000), 1, &log);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let second = deliver(&w, task("t1", 5_000), 2, &log);
    second.await.unwrap();
    assert!(
        settled(&log).is_empty(),
        "nothing is acknowledged before the result"
    );
    first.await.unwrap();
    assert_eq!(settled(&log), vec![(1, "ack"), (2, "ack")]);
    assert_eq!(w.steps.runs.load(Ordering::SeqCst), 1);
    assert_eq!(store.results("t1").len(), 1);
    assert_eq!(w.pool.metrics.tasks_deduplicated.get(), 1);
    // A delivery after the result is answered from it.
    deliver(&w, task("t1", 5_000), 3, &log).await.unwrap();
    assert_eq!(settled(&log).last(), Some(&(3, "ack")));
    assert_eq!(w.steps.runs.load(Ordering::SeqCst), 1);
    assert_eq!(store.results("t1").len(), 1);
}

#[tokio::test(start_paused = true)]
async fn another_worker_holding_the_claim_is_followed_not_raced() {
    let (store, jobs, log) = fixture();
    let (a, b) = (worker("a", &store, &jobs), worker("b", &store, &jobs));
    let on_a = deliver(&a, task("t2", 20_000), 1, &log);
    tokio::time::sleep(Duration::from_millis(100)).await;
    // After a broker restart, b holds a delivery of the same task.
    let on_b = deliver(&b, task("t2", 20_000), 2, &log);
    on_a.await.unwrap();
    on_b.await.unwrap();
    assert_eq!(settled(&log), vec![(1, "ack"), (2, "ack")]);
    assert_eq!(a.steps.runs.load(Ordering::SeqCst), 1);
    assert_eq!(b.steps.runs.load(Ordering::SeqCst), 0);
    assert_eq!(store.results("t2").len(), 1);
    assert_eq!(jobs.created.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn a_lapsed_claim_is_taken_over_and_its_job_reused() {
    let (store, jobs, log) = fixture();
    // A worker claimed the task, created its Job and died.
    store
        .claim("t3", "dead", Duration::from_secs(30))
        .await
        .unwrap();
    jobs.create_job("ns", &json!({"metadata": {"name": "dagster-step-t3"}}))
        .await
        .unwrap();
    let w = worker("a", &store, &jobs);
    deliver(&w, task("t3", 10), 1, &log).await.unwrap();
    assert_eq!(settled(&log), vec![(1, "ack")]);
    assert_eq!(
        w.steps.runs.load(Ordering::SeqCst),
        1,
        "taken over once the claim lapsed"
    );
    assert_eq!(
        jobs.created.load(Ordering::SeqCst),
        1,
        "the dead worker's Job is reused"
    );
    assert_eq!(jobs.creates.load(Ordering::SeqCst), 2);
    assert_eq!(store.results("t3").len(), 1);
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_store_is_never_read_as_no_result() {
    let (store, jobs, log) = fixture();
    let w = worker("a", &store, &jobs);
    store.down.store(true, Ordering::SeqCst);
    let run = deliver(&w, task("t4", 10), 1, &log);
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(
        w.steps.runs.load(Ordering::SeqCst),
        0,
        "no run without a claim"
    );
    assert!(store.refused.load(Ordering::SeqCst) > 3, "it kept asking");
    store.down.store(false, Ordering::SeqCst);
    run.await.unwrap();
    assert_eq!(w.steps.runs.load(Ordering::SeqCst), 1);
    assert_eq!(settled(&log), vec![(1, "ack")]);
}

#[tokio::test(start_paused = true)]
async fn a_result_that_cannot_be_stored_goes_back_to_the_queue() {
    let (store, jobs, log) = fixture();
    let w = worker("a", &store, &jobs);
    let run = deliver(&w, task("t5", 1_000), 1, &log);
    tokio::time::sleep(Duration::from_millis(500)).await;
    store.down.store(true, Ordering::SeqCst);
    run.await.unwrap();
    assert_eq!(settled(&log), vec![(1, "requeue")]);
    assert!(store.results("t5").is_empty());
    // Twelve attempts: the first and eleven retries.
    assert_eq!(w.pool.metrics.result_store_retries.get(), 11);
    // The requeued delivery runs again once the store is back.
    store.down.store(false, Ordering::SeqCst);
    deliver(&w, task("t5", 10), 2, &log).await.unwrap();
    assert_eq!(store.results("t5").len(), 1);
}

#[tokio::test(start_paused = true)]
async fn held_deliveries_are_parked_before_the_ack_deadline() {
    let (store, jobs, log) = fixture();
    let w = worker("a", &store, &jobs);
    // A 150 s step under a 60 s ack deadline.
    let run = deliver(&w, task("t6", 150_000), 1, &log);
    tokio::time::sleep(Duration::from_secs(61)).await;
    assert_eq!(w.broker.parked.load(Ordering::SeqCst), 1);
    assert_eq!(
        settled(&log),
        vec![(1, "ack")],
        "acknowledged once the copy is parked"
    );
    // The parked copy comes back after the deadline and joins the run.
    let copy = deliver(&w, task("t6", 150_000), 2, &log);
    copy.await.unwrap();
    // A failing park keeps the delivery held.
    w.broker.failing.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(settled(&log), vec![(1, "ack")]);
    run.await.unwrap();
    assert_eq!(settled(&log), vec![(1, "ack"), (2, "ack")]);
    assert_eq!(w.steps.runs.load(Ordering::SeqCst), 1);
    assert_eq!(store.results("t6").len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_park_under_way_when_the_run_ends_still_settles_its_deliveries() {
    let (store, jobs, log) = fixture();
    let w = worker("a", &store, &jobs);
    w.broker.park_ms.store(5_000, Ordering::SeqCst);
    // The park starts at the 60 s ack deadline; the step ends 1 s into it.
    deliver(&w, task("t9", 61_000), 1, &log).await.unwrap();
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(w.broker.parked.load(Ordering::SeqCst), 1);
    assert_eq!(settled(&log), vec![(1, "ack")], "never left unsettled");
    assert_eq!(store.results("t9").len(), 1);
}

#[tokio::test(start_paused = true)]
async fn revoked_and_unregistered_tasks_get_their_celery_states() {
    let (store, jobs, log) = fixture();
    let w = worker("a", &store, &jobs);
    let run = deliver(&w, task("t7", 60_000), 1, &log);
    tokio::time::sleep(Duration::from_secs(1)).await;
    w.pool.revocations.revoke("t7", false);
    run.await.unwrap();
    let meta = store.results("t7").pop().unwrap_or_default();
    assert!(meta.starts_with(r#"{"status": "REVOKED""#), "{meta}");
    let mut other = task("t8", 10);
    other.task = "tasks.add".into();
    deliver(&w, other, 2, &log).await.unwrap();
    let meta = store.results("t8").pop().unwrap_or_default();
    assert!(meta.contains(r#""exc_type": "NotRegistered""#), "{meta}");
    assert_eq!(settled(&log), vec![(1, "ack"), (2, "ack")]);
    assert_eq!(w.steps.runs.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn after_the_grace_period_held_deliveries_return_to_the_queue() {
    let (store, jobs, log) = fixture();
    let w = worker("a", &store, &jobs);
    let run = deliver(&w, task("t9", 600_000), 1, &log);
    tokio::time::sleep(Duration::from_secs(1)).await;
    w.pool.requeue_everything().await;
    run.abort();
    assert_eq!(settled(&log), vec![(1, "requeue")]);
    assert!(store.results("t9").is_empty());
}

#[tokio::test(start_paused = true)]
async fn inspect_shows_a_held_task_without_copying_its_kwargs() {
    let (store, jobs, log) = fixture();
    let w = worker("a", &store, &jobs);
    let msg = task("t10", 5_000);
    let kwargs = Arc::clone(&msg.kwargs);
    let run = deliver(&w, msg, 1, &log);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let active = w.pool.registry.active();
    assert_eq!(active.len(), 1, "the running step is listed");
    assert!(
        Arc::ptr_eq(&active[0].kwargs, &kwargs),
        "the listing shares the task's kwargs"
    );
    assert_eq!(active[0].to_value(false)["kwargs"]["id"], "t10");
    // No kwargsrepr header: the repr is the kwargs' JSON.
    assert_eq!(active[0].kwargsrepr, r#"{"id":"t10","ms":5000}"#);
    run.await.unwrap();
    assert!(w.pool.registry.active().is_empty(), "gone once settled");
}
