//! Fault injection: answer a fraction of requests with 429 or 500, store a
//! write and still answer 500 ("commit then fail"), add latency, drop every
//! open watch, and pause the controllers. Settable from the library API and
//! from `POST /runway/v1/faults`.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// The knobs, all off by default.
#[derive(Debug)]
pub struct Faults {
    /// Parts per million of API requests answered 429 with `Retry-After`.
    pub rate_429_ppm: AtomicU32,
    /// Parts per million of API requests answered 500.
    pub rate_500_ppm: AtomicU32,
    /// Parts per million of writes that are committed but answered 500.
    pub commit_then_fail_ppm: AtomicU32,
    /// Added to every API request, in milliseconds.
    pub latency_ms: AtomicU64,
    pub retry_after_seconds: AtomicU32,
    pub pause_controller: AtomicBool,
    pub pause_kubelet: AtomicBool,
    /// Bumped to end every open watch stream.
    watch_epoch: watch::Sender<u64>,
}

/// The knobs as JSON, for the control endpoint and the CLI.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FaultSettings {
    pub rate_429: Option<f64>,
    pub rate_500: Option<f64>,
    pub commit_then_fail: Option<f64>,
    pub latency_ms: Option<u64>,
    pub retry_after_seconds: Option<u32>,
    pub pause_controller: Option<bool>,
    pub pause_kubelet: Option<bool>,
    /// One-shot actions.
    pub drop_watches: Option<bool>,
    pub compact: Option<bool>,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            rate_429_ppm: AtomicU32::new(0),
            rate_500_ppm: AtomicU32::new(0),
            commit_then_fail_ppm: AtomicU32::new(0),
            latency_ms: AtomicU64::new(0),
            retry_after_seconds: AtomicU32::new(1),
            pause_controller: AtomicBool::new(false),
            pause_kubelet: AtomicBool::new(false),
            watch_epoch: watch::channel(0).0,
        }
    }
}

fn ppm(fraction: f64) -> u32 {
    (fraction.clamp(0.0, 1.0) * 1_000_000.0).round() as u32
}

impl Faults {
    /// Applies the settings given (absent ones stay as they are). Returns
    /// whether a compaction was asked for (the caller owns the store).
    pub fn apply(&self, s: &FaultSettings) -> bool {
        if let Some(r) = s.rate_429 {
            self.rate_429_ppm.store(ppm(r), Ordering::Relaxed);
        }
        if let Some(r) = s.rate_500 {
            self.rate_500_ppm.store(ppm(r), Ordering::Relaxed);
        }
        if let Some(r) = s.commit_then_fail {
            self.commit_then_fail_ppm.store(ppm(r), Ordering::Relaxed);
        }
        if let Some(ms) = s.latency_ms {
            self.latency_ms.store(ms, Ordering::Relaxed);
        }
        if let Some(secs) = s.retry_after_seconds {
            self.retry_after_seconds.store(secs, Ordering::Relaxed);
        }
        if let Some(p) = s.pause_controller {
            self.pause_controller.store(p, Ordering::Relaxed);
        }
        if let Some(p) = s.pause_kubelet {
            self.pause_kubelet.store(p, Ordering::Relaxed);
        }
        if s.drop_watches == Some(true) {
            self.drop_watches();
        }
        s.compact == Some(true)
    }

    pub fn current(&self) -> FaultSettings {
        let frac = |a: &AtomicU32| f64::from(a.load(Ordering::Relaxed)) / 1_000_000.0;
        FaultSettings {
            rate_429: Some(frac(&self.rate_429_ppm)),
            rate_500: Some(frac(&self.rate_500_ppm)),
            commit_then_fail: Some(frac(&self.commit_then_fail_ppm)),
            latency_ms: Some(self.latency_ms.load(Ordering::Relaxed)),
            retry_after_seconds: Some(self.retry_after_seconds.load(Ordering::Relaxed)),
            pause_controller: Some(self.pause_controller.load(Ordering::Relaxed)),
            pause_kubelet: Some(self.pause_kubelet.load(Ordering::Relaxed)),
            drop_watches: None,
            compact: None,
        }
    }

    /// Ends every open watch stream (clients see EOF and re-watch).
    pub fn drop_watches(&self) {
        self.watch_epoch.send_modify(|e| *e += 1);
    }

    pub fn watch_epoch(&self) -> watch::Receiver<u64> {
        self.watch_epoch.subscribe()
    }

    pub fn controller_paused(&self) -> bool {
        self.pause_controller.load(Ordering::Relaxed)
    }

    pub fn kubelet_paused(&self) -> bool {
        self.pause_kubelet.load(Ordering::Relaxed)
    }
}
