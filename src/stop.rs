//! Shutdown signalling shared by the long-running tasks: a `watch` channel
//! of `bool` that turns true once.

use tokio::sync::watch;

/// Resolves once `rx` turns true (or its sender is gone).
pub async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}
