//! A cluster that loses its state: the API server goes away and comes back
//! empty on the same address (its etcd wiped), so resourceVersions start
//! over and no 410 ever arrives.

use crate::harness::*;

async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        return String::new();
    };
    let req = format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out).await;
    out
}

async fn until(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `/ready` says the API is unreachable while it is down; once it is back
/// empty, the index drops the Jobs it no longer has (health: NOT_FOUND, and
/// WatchRuns reports them deleted) and new launches are tracked again.
#[tokio::test]
async fn an_api_server_back_empty_is_noticed_and_relisted() {
    let mut config = dev_config(100_000);
    config.kubelet.default_duration_ms = 600_000;
    let mut h = start("reset", config.clone(), &[]).await;
    let http = h.serve.as_ref().unwrap().http_addr;
    let old = run_id(1);
    h.grpc.launch_run(seed_request(&old, None)).await.unwrap();
    health_until(&mut h, &old, |r| r.status == WorkerStatus::Running as i32).await;
    // Enough writes that the old cluster's resourceVersion is ahead of where
    // a fresh one starts.
    for n in 2..6 {
        h.grpc
            .launch_run(seed_request(&run_id(n), None))
            .await
            .unwrap();
    }
    let mut updates = h
        .grpc
        .watch_runs(proto::WatchRunsRequest::default())
        .await
        .unwrap()
        .into_inner();

    let addr = h.dev.addr();
    let dev = std::mem::replace(
        &mut h.dev,
        DevCluster::start("127.0.0.1:0".parse().unwrap(), dev_config(10))
            .await
            .unwrap(),
    );
    dev.shutdown().await;
    until("/ready reports the API unreachable", async || {
        http_get(http, "/ready")
            .await
            .contains("Kubernetes API unreachable")
    })
    .await;

    let scratch = std::mem::replace(&mut h.dev, DevCluster::start(addr, config).await.unwrap());
    scratch.shutdown().await;
    prepare_namespace(&h.kube).await;
    until("/ready is 200 again", async || {
        http_get(http, "/ready").await.starts_with("HTTP/1.1 200")
    })
    .await;
    health_until(&mut h, &old, |r| r.status == WorkerStatus::NotFound as i32).await;
    let deleted = tokio::time::timeout(WAIT, async {
        while let Some(Ok(u)) = updates.next().await {
            if u.run_id == old && u.deleted {
                return u;
            }
        }
        panic!("the stream ended without the old run's deletion");
    })
    .await
    .expect("no deletion streamed for the vanished Job");
    assert!(
        deleted.message.contains("no longer in the cluster"),
        "{deleted:?}"
    );
    let metrics = http_get(http, "/metrics").await;
    assert!(metrics.contains("runway_cluster_resets_total"), "{metrics}");

    let fresh = run_id(9);
    h.grpc.launch_run(seed_request(&fresh, None)).await.unwrap();
    health_until(&mut h, &fresh, |r| r.status == WorkerStatus::Running as i32).await;
    h.finish().await;
}
