//! Shutdown: the process's stop signals, and the `watch` channel of `bool`
//! (true once) that carries them to the long-running tasks.

use tokio::sync::watch;

/// Resolves once `rx` turns true (or its sender is gone).
pub async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// Resolves at SIGTERM or Ctrl-C: the one place the process's stop signals
/// are read.
pub async fn signalled() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
