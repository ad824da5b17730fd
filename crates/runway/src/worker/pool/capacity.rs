//! The concurrency limit, changed at run time by remote control
//! (`pool_grow`, `pool_shrink`, `autoscale`).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{Broker, Pool};
use crate::results::backend::ResultStore;
use crate::worker::runner::StepRunner;

impl<S: StepRunner, R: ResultStore, B: Broker> Pool<S, R, B> {
    /// The concurrency limit now.
    pub fn concurrency(&self) -> usize {
        self.concurrency.load(Ordering::Relaxed)
    }

    /// Raises the concurrency limit by `n`.
    pub fn grow(&self, n: usize) {
        self.permits.add_permits(n);
        self.concurrency.fetch_add(n, Ordering::Relaxed);
    }

    /// Lowers the concurrency limit by `n` (never below 1). Permits held by
    /// running steps are retired as those steps end.
    pub fn shrink(self: &Arc<Self>, n: usize) -> usize {
        let n = n.min(self.concurrency().saturating_sub(1));
        if n == 0 {
            return 0;
        }
        self.concurrency.fetch_sub(n, Ordering::Relaxed);
        let idle = self.permits.forget_permits(n);
        if idle < n {
            let permits = self.permits.clone();
            let owed = u32::try_from(n - idle).unwrap_or(u32::MAX);
            tokio::spawn(async move {
                if let Ok(p) = permits.acquire_many_owned(owed).await {
                    p.forget();
                }
            });
        }
        n
    }

    /// Sets the concurrency limit to `to` (at least 1).
    pub fn resize(self: &Arc<Self>, to: usize) {
        let now = self.concurrency();
        let to = to.max(1);
        if to > now {
            self.grow(to - now);
        } else {
            self.shrink(now - to);
        }
    }
}
