//! What a running step waits on, fed by one subscription each: its Job's
//! transitions from the shared tracker, its run's status from PostgreSQL's
//! `run_events` notifications, and revocations from `celery.pidbox`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, watch};

use super::pg::{self, Notified, Pg};
use crate::cluster::tracker::now_secs;
use crate::cluster::Tracker;
use runway_core::dagster::instance::{status_after, PgTarget};
use runway_core::track::index::{ObjKey, Transition};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

// === impl Jobs ===

/// Routes the tracker's transitions to the steps waiting on those Jobs.
#[derive(Debug)]
pub struct Jobs {
    tracker: Arc<Tracker>,
    waiting: Mutex<HashMap<ObjKey, watch::Sender<Option<Transition>>>>,
}

/// A step's interest in one Job; dropping it unregisters.
#[derive(Debug)]
pub struct JobWait {
    jobs: Arc<Jobs>,
    key: ObjKey,
    pub rx: watch::Receiver<Option<Transition>>,
}

impl Drop for JobWait {
    fn drop(&mut self) {
        lock(&self.jobs.waiting).remove(&self.key);
    }
}

impl Jobs {
    pub fn new(tracker: Arc<Tracker>) -> Arc<Jobs> {
        Arc::new(Jobs {
            tracker,
            waiting: Mutex::default(),
        })
    }

    /// Registers before the Job is created, so no transition is missed, and
    /// starts from what the index already knows (a reused Job may be done).
    pub fn wait(self: &Arc<Self>, namespace: &str, name: &str) -> JobWait {
        let key = ObjKey::new(namespace, name);
        let current = self.tracker.read().current(&key, now_secs());
        let (tx, rx) = watch::channel(current);
        lock(&self.waiting).insert(key.clone(), tx);
        JobWait {
            jobs: self.clone(),
            key,
            rx,
        }
    }

    /// The Job's pods as the watch index knows them, sorted by name (the
    /// order the API lists them in).
    pub fn pods(&self, namespace: &str, name: &str) -> Vec<String> {
        let index = self.tracker.read();
        index
            .pods_of(&ObjKey::new(namespace, name))
            .into_iter()
            .map(|(k, _)| k.name.to_string())
            .collect()
    }

    /// Re-reads the index for one waiter (after the Job was created, in case
    /// the watch delivered it before the waiter looked).
    pub fn refresh(&self, w: &JobWait) {
        if let Some(t) = self.tracker.read().current(&w.key, now_secs()) {
            if let Some(tx) = lock(&self.waiting).get(&w.key) {
                tx.send_replace(Some(t));
            }
        }
    }

    /// The dispatcher: one subscription for every waiting step. After a lag
    /// every waiter is refreshed from the index, so nothing is lost.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut rx = self.tracker.subscribe();
        loop {
            tokio::select! {
                _ = crate::stop::stopped(&mut stop) => return,
                msg = rx.recv() => match msg {
                    Ok(stamped) => {
                        let t = &stamped.transition;
                        let key = ObjKey::new(&t.namespace, &t.job_name);
                        if let Some(tx) = lock(&self.waiting).get(&key) {
                            tx.send_replace(Some(t.clone()));
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        let index = self.tracker.read();
                        let now = now_secs();
                        for (key, tx) in lock(&self.waiting).iter() {
                            if let Some(t) = index.current(key, now) {
                                tx.send_replace(Some(t));
                            }
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            }
        }
    }
}

// === impl Runs ===

#[derive(Debug)]
struct Watched {
    target: PgTarget,
    tx: watch::Sender<Option<String>>,
    count: usize,
}

/// A notification (or a reconnection, `None`) from one database's LISTEN.
type FromDb = (PgTarget, Option<Notified>);

/// Tells waiting steps when their run leaves STARTED, from the `run_events`
/// notifications dagster-postgres sends for every stored event (one LISTEN
/// per database), with a slow sweep as the safety net.
#[derive(Debug)]
pub struct Runs {
    pg: Arc<Pg>,
    watched: Mutex<HashMap<String, Watched>>,
    listening: Mutex<HashSet<PgTarget>>,
    notify_tx: mpsc::Sender<FromDb>,
    notify_rx: Mutex<Option<mpsc::Receiver<FromDb>>>,
    sweep_every: Duration,
}

/// A step's interest in its run's status; dropping it unregisters.
#[derive(Debug)]
pub struct RunWait {
    runs: Arc<Runs>,
    run_id: String,
    /// `Some(status)` once the run is seen in a status other than STARTED.
    pub rx: watch::Receiver<Option<String>>,
}

impl Drop for RunWait {
    fn drop(&mut self) {
        let mut w = lock(&self.runs.watched);
        if let Some(e) = w.get_mut(&self.run_id) {
            e.count -= 1;
            if e.count == 0 {
                w.remove(&self.run_id);
            }
        }
    }
}

impl Runs {
    pub fn new(pg: Arc<Pg>, sweep_every: Duration) -> Arc<Runs> {
        let (notify_tx, notify_rx) = mpsc::channel(4096);
        Arc::new(Runs {
            pg,
            watched: Mutex::default(),
            listening: Mutex::default(),
            notify_tx,
            notify_rx: Mutex::new(Some(notify_rx)),
            sweep_every,
        })
    }

    pub fn wait(self: &Arc<Self>, target: &PgTarget, run_id: &str) -> RunWait {
        if lock(&self.listening).insert(target.clone()) {
            let (tx, mut rx) = mpsc::channel(1024);
            tokio::spawn(pg::listen(self.pg.clone(), target.clone(), tx));
            let fwd = self.notify_tx.clone();
            let t = target.clone();
            tokio::spawn(async move {
                while let Some(n) = rx.recv().await {
                    if fwd.send((t.clone(), n)).await.is_err() {
                        return;
                    }
                }
            });
        }
        let mut w = lock(&self.watched);
        let e = w.entry(run_id.to_owned()).or_insert_with(|| Watched {
            target: target.clone(),
            tx: watch::Sender::new(None),
            count: 0,
        });
        e.count += 1;
        RunWait {
            runs: self.clone(),
            run_id: run_id.to_owned(),
            rx: e.tx.subscribe(),
        }
    }

    fn report(&self, run_id: &str, status: &str) {
        if status == "STARTED" {
            return;
        }
        if let Some(e) = lock(&self.watched).get(run_id) {
            e.tx.send_replace(Some(status.to_owned()));
        }
    }

    async fn sweep(&self, only: Option<&PgTarget>) {
        let mut by_target: HashMap<PgTarget, Vec<String>> = HashMap::new();
        for (run, e) in lock(&self.watched).iter() {
            if only.is_none_or(|t| *t == e.target) {
                by_target
                    .entry(e.target.clone())
                    .or_default()
                    .push(run.clone());
            }
        }
        for (t, runs) in by_target {
            match self.pg.statuses(&t, &runs).await {
                Ok(found) => {
                    for run in &runs {
                        // A run deleted from storage is no longer STARTED either.
                        let status = found.get(run).map_or("NOT_FOUND", String::as_str);
                        self.report(run, status);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "run status sweep failed"),
            }
        }
    }

    /// Consumes notifications until `stop`.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let Some(mut rx) = lock(&self.notify_rx).take() else {
            return;
        };
        let mut sweep = tokio::time::interval(self.sweep_every);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Recently seen event ids of watched runs, to look each up once.
        let mut seen: VecDeque<i64> = VecDeque::new();
        loop {
            tokio::select! {
                _ = crate::stop::stopped(&mut stop) => return,
                _ = sweep.tick() => self.sweep(None).await,
                msg = rx.recv() => match msg {
                    None => return,
                    // (Re)connected: whatever happened meanwhile is read now.
                    Some((t, None)) => self.sweep(Some(&t)).await,
                    Some((t, Some(n))) => {
                        if !lock(&self.watched).contains_key(&n.run_id) || seen.contains(&n.event_id) {
                            continue;
                        }
                        seen.push_back(n.event_id);
                        if seen.len() > 4096 {
                            seen.pop_front();
                        }
                        match self.pg.event_type(&t, n.event_id).await {
                            Ok(Some(ty)) => {
                                if let Some(status) = status_after(&ty) {
                                    self.report(&n.run_id, status);
                                }
                            }
                            Ok(None) => {}
                            Err(e) => tracing::warn!(error = %e, "reading a notified event failed"),
                        }
                    }
                },
            }
        }
    }
}
