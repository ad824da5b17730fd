//! How a step's wait ends: above all, a cancel's grace for the run worker.

use super::*;

const GRACE: Duration = Duration::from_secs(10);
const TIMEOUT: Duration = Duration::from_secs(3600);

struct Senders {
    job: watch::Sender<Option<Transition>>,
    run: watch::Sender<Option<String>>,
    revoke: watch::Sender<bool>,
}

/// Starts a wait over fresh channels; the test drives the senders.
fn start() -> (
    Senders,
    tokio::task::JoinHandle<(Waited, tokio::time::Instant)>,
) {
    let (job, mut job_rx) = watch::channel(None);
    let (run, mut run_rx) = watch::channel(None);
    let (revoke, mut revoke_rx) = watch::channel(false);
    let handle = tokio::spawn(async move {
        let w = Waits {
            job: &mut job_rx,
            run: &mut run_rx,
            revoke: &mut revoke_rx,
        };
        let waited = wait_on(w, TIMEOUT, GRACE).await;
        (waited, tokio::time::Instant::now())
    });
    (Senders { job, run, revoke }, handle)
}

fn ended(status: WorkerStatus, deleted: bool) -> Option<Transition> {
    Some(Transition {
        run_id: "r".into(),
        job_name: "dagster-step-x".into(),
        namespace: "default".into(),
        step_key: Some("s".into()),
        status,
        reason: String::new(),
        message: String::new(),
        resource_version: "2".into(),
        deleted,
    })
}

async fn settle() {
    tokio::time::sleep(Duration::from_millis(1)).await;
}

/// Marks the run CANCELING, lets `after` pass, does `then` (nothing when
/// `None`), and returns how the wait ended and how long after the cancel.
async fn cancel_then(after: Duration, then: Option<fn(&Senders)>) -> (Waited, Duration) {
    let (s, handle) = start();
    let began = tokio::time::Instant::now();
    s.run.send_replace(Some("CANCELING".into()));
    tokio::time::sleep(after).await;
    if let Some(then) = then {
        then(&s);
    }
    let (waited, at) = handle.await.unwrap();
    (waited, at - began)
}

#[tokio::test(start_paused = true)]
async fn a_canceling_run_leaves_the_step_job_to_the_run_worker_until_it_revokes() {
    let revoke: fn(&Senders) = |s| {
        s.revoke.send_replace(true);
    };
    let (waited, took) = cancel_then(Duration::from_secs(2), Some(revoke)).await;
    assert!(matches!(waited, Waited::Revoked), "{waited:?}");
    assert_eq!(took, Duration::from_secs(2));
}

#[tokio::test(start_paused = true)]
async fn a_canceling_run_ends_the_wait_once_it_is_canceled() {
    let canceled: fn(&Senders) = |s| {
        s.run.send_replace(Some("CANCELED".into()));
    };
    let (waited, took) = cancel_then(Duration::from_secs(3), Some(canceled)).await;
    assert!(matches!(waited, Waited::RunNotStarted), "{waited:?}");
    assert_eq!(took, Duration::from_secs(3));
}

#[tokio::test(start_paused = true)]
async fn a_run_stuck_canceling_gets_its_step_job_deleted_after_the_grace() {
    let (waited, took) = cancel_then(Duration::ZERO, None).await;
    assert!(matches!(waited, Waited::RunNotStarted), "{waited:?}");
    assert_eq!(took, GRACE);
}

#[tokio::test(start_paused = true)]
async fn a_step_job_that_ends_or_goes_during_the_grace_still_waits_for_the_revoke() {
    let (s, handle) = start();
    s.run.send_replace(Some("CANCELING".into()));
    settle().await;
    s.job.send_replace(ended(WorkerStatus::Success, false));
    settle().await;
    s.job.send_replace(ended(WorkerStatus::Failed, true));
    settle().await;
    assert!(
        !handle.is_finished(),
        "the Job's end must not answer the run worker first"
    );
    s.revoke.send_replace(true);
    let (waited, _) = handle.await.unwrap();
    assert!(matches!(waited, Waited::Revoked), "{waited:?}");
}

#[tokio::test(start_paused = true)]
async fn a_step_job_that_ends_before_the_cancel_reports_its_end() {
    let (s, handle) = start();
    s.job.send_replace(ended(WorkerStatus::Success, false));
    settle().await;
    s.run.send_replace(Some("CANCELING".into()));
    let (waited, _) = handle.await.unwrap();
    assert!(matches!(waited, Waited::Succeeded), "{waited:?}");
}

#[tokio::test(start_paused = true)]
async fn a_run_gone_or_finished_without_canceling_ends_the_wait_at_once() {
    for status in ["NOT_FOUND", "FAILURE", "CANCELED"] {
        let (s, handle) = start();
        let began = tokio::time::Instant::now();
        s.run.send_replace(Some(status.into()));
        let (waited, at) = handle.await.unwrap();
        assert!(
            matches!(waited, Waited::RunNotStarted),
            "{status}: {waited:?}"
        );
        assert_eq!(at, began, "{status}");
    }
}

#[tokio::test(start_paused = true)]
async fn the_job_timeout_still_applies() {
    let (s, handle) = start();
    let began = tokio::time::Instant::now();
    let (waited, at) = handle.await.unwrap();
    assert!(matches!(waited, Waited::Timeout), "{waited:?}");
    assert_eq!(at - began, TIMEOUT);
    drop(s);
}
