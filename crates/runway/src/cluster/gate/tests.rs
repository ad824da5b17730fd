use super::classify::classify;
use super::*;

use http::Request;
use kube::client::Body;

fn req(method: http::Method, uri: &str) -> Request<Body> {
    let mut r = Request::new(Body::empty());
    *r.method_mut() = method;
    *r.uri_mut() = uri.parse().unwrap();
    r
}

#[test]
fn requests_are_classified_by_verb_and_resource() {
    use http::Method;
    let cases = [
        (
            Method::POST,
            "/apis/batch/v1/namespaces/ns/jobs",
            ("create", "jobs"),
        ),
        (
            Method::GET,
            "/apis/batch/v1/namespaces/ns/jobs/j",
            ("get", "jobs"),
        ),
        (
            Method::GET,
            "/apis/batch/v1/namespaces/ns/jobs?watch=true&labelSelector=a",
            ("watch", "jobs"),
        ),
        (
            Method::GET,
            "/api/v1/namespaces/ns/pods?labelSelector=job-name%3Dj",
            ("list", "pods"),
        ),
        (
            Method::GET,
            "/api/v1/namespaces/ns/pods/p/log?tailLines=25",
            ("get", "pods/log"),
        ),
        (
            Method::DELETE,
            "/api/v1/namespaces/ns/pods/p",
            ("delete", "pods"),
        ),
    ];
    for (m, uri, (verb, resource)) in cases {
        let got = classify(&req(m, uri));
        assert_eq!((got.0, got.1.as_str()), (verb, resource), "{uri}");
    }
}

#[tokio::test(start_paused = true)]
async fn the_bucket_paces_and_then_refuses() {
    let gate = Gate::new(
        GateConfig {
            qps: 10.0,
            burst: 2,
            max_queue: 3,
            ..GateConfig::default()
        },
        Arc::new(Metrics::new()),
    );
    let start = tokio::time::Instant::now();
    let mut waiters = Vec::new();
    for _ in 0..5 {
        let g = gate.clone();
        waiters.push(tokio::spawn(async move {
            g.acquire().await.map(|()| tokio::time::Instant::now())
        }));
    }
    tokio::task::yield_now().await;
    // Burst 2 at once, three in line; the sixth finds the line full.
    let refused = gate.acquire().await.unwrap_err();
    assert_eq!(refused.queued, 3);
    assert!(refused.retry_after > Duration::ZERO);
    let mut times = Vec::new();
    for w in waiters {
        times.push(w.await.unwrap().unwrap().duration_since(start));
    }
    times.sort();
    assert_eq!(times[1], Duration::ZERO);
    assert!(times[4] >= Duration::from_millis(299), "{times:?}");
    assert!(times[4] <= Duration::from_millis(301), "{times:?}");
}

#[tokio::test(start_paused = true)]
async fn cancelled_waiters_leave_the_line() {
    let gate = Gate::new(
        GateConfig {
            qps: 1.0,
            burst: 1,
            max_queue: 1,
            ..GateConfig::default()
        },
        Arc::new(Metrics::new()),
    );
    gate.acquire().await.unwrap();
    // Waits in line, then gives up.
    let waiting = tokio::time::timeout(Duration::from_millis(10), gate.acquire()).await;
    assert!(waiting.is_err());
    // The line is free again: this one waits its turn rather than being
    // refused as if the one that gave up were still in line.
    assert!(gate.acquire().await.is_ok());
}
