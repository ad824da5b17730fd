//! Operating the service: the token, metrics and probes, SIGTERM during a burst, mTLS.

use crate::harness::*;

#[tokio::test]
async fn token_and_metrics_and_probes() {
    let dir = TempDir::new("token-file");
    let token = dir.0.join("token");
    std::fs::write(&token, "s3cret\n").unwrap();
    let flag = format!("--token-file={}", token.display());
    let mut h = start("token", dev_config(100_000), &[flag.as_str()]).await;
    let err = h
        .grpc
        .check_run_worker_health(proto::CheckRunWorkerHealthRequest {
            run_id: run_id(1),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    let mut req = tonic::Request::new(proto::CheckRunWorkerHealthRequest {
        run_id: run_id(1),
        ..Default::default()
    });
    req.metadata_mut()
        .insert("authorization", "Bearer s3cret".parse().unwrap());
    let ok = h
        .grpc
        .check_run_worker_health(req)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ok.status, WorkerStatus::NotFound as i32);

    let http_addr = h.serve.as_ref().unwrap().http_addr;
    let get = |path: &'static str| async move {
        let mut s = tokio::net::TcpStream::connect(http_addr).await.unwrap();
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    };
    assert!(get("/ready").await.starts_with("HTTP/1.1 200"));
    assert!(get("/live").await.starts_with("HTTP/1.1 200"));
    let metrics = get("/metrics").await;
    let build = format!(
        "runway_build_info{{version=\"{}\",revision=\"{}\"}} 1",
        runway::metrics::VERSION,
        runway::metrics::REVISION
    );
    assert!(metrics.contains(&build), "{metrics}");
    assert_ne!(runway::metrics::REVISION, "", "the build stamps a revision");
    assert!(
        metrics.contains("runway_health_checks_total{status=\"NOT_FOUND\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics
            .contains("runway_grpc_requests_total{method=\"CheckRunWorkerHealth\",code=\"OK\"} 1"),
        "{metrics}"
    );
    h.finish().await;
}

#[test]
fn sigterm_during_a_burst_loses_no_accepted_launch() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let dir = TempDir::new("sigterm");
        let dev = DevCluster::start("127.0.0.1:0".parse().unwrap(), dev_config(100_000))
            .await
            .unwrap();
        let kubeconfig = dir.0.join("kubeconfig");
        dev.write_kubeconfig(&kubeconfig).unwrap();
        let kube = kube_client(&dev.kubeconfig()).await;
        prepare_namespace(&kube).await;
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_runway"))
            .args([
                "serve",
                &format!("--listen=127.0.0.1:{port}"),
                "--http-listen=127.0.0.1:0",
                &format!("--kubeconfig={}", kubeconfig.display()),
                &format!("--namespace={NS}"),
                "--kube-qps=0",
                "--log-format=text",
            ])
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // The first stdout line says it listens.
        let stdout = child.stdout.take().unwrap();
        let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
        let line = tokio::time::timeout(WAIT, lines.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(line.starts_with("runway serve listening"), "{line}");
        let grpc = RunLauncherClient::connect(format!("http://127.0.0.1:{port}"))
            .await
            .unwrap();
        // Slow the API down so the burst is in flight when the signal lands.
        dev.faults().apply(&FaultSettings {
            latency_ms: Some(100),
            ..FaultSettings::default()
        });
        let mut calls = Vec::new();
        for n in 0..300 {
            let mut grpc = grpc.clone();
            let run = run_id(9000 + n);
            let req = seed_request(&run, None);
            calls.push(tokio::spawn(
                async move { (run, grpc.launch_run(req).await) },
            ));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let pid = child.id().unwrap();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let mut accepted = Vec::new();
        let mut refused = 0;
        for c in calls {
            let (run, r) = c.await.unwrap();
            match r {
                Ok(resp) => accepted.push((run, resp.into_inner())),
                Err(s) => {
                    // Refused, never half-done: the client knows to retry.
                    assert!(
                        matches!(
                            s.code(),
                            tonic::Code::Unavailable
                                | tonic::Code::Unknown
                                | tonic::Code::Cancelled
                        ),
                        "{s:?}"
                    );
                    refused += 1;
                }
            }
        }
        let exit = tokio::time::timeout(WAIT, child.wait())
            .await
            .unwrap()
            .unwrap();
        assert!(exit.success(), "runway serve exited with {exit:?}");
        assert!(
            !accepted.is_empty(),
            "nothing was accepted before the signal"
        );
        dev.faults().apply(&FaultSettings {
            latency_ms: Some(0),
            ..FaultSettings::default()
        });
        let jobs: Api<Job> = Api::namespaced(kube.clone(), NS);
        for (run, resp) in &accepted {
            let job = jobs.get(&format!("dagster-run-{run}")).await.unwrap();
            assert_eq!(job.metadata.uid.as_deref(), Some(resp.uid.as_str()));
        }
        eprintln!(
            "accepted {} launches, {refused} refused after SIGTERM",
            accepted.len()
        );
        let _ = PostParams::default();
        dev.shutdown().await;
    });
}

fn pki(dir: &std::path::Path) -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf = |name: &str| {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec![name.to_owned()])
            .unwrap()
            .signed_by(&key, &ca, &ca_key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (server_cert, server_key) = leaf("localhost");
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("server.pem"), server_cert).unwrap();
    std::fs::write(dir.join("server.key"), server_key).unwrap();
    let (client_cert, client_key) = leaf("dagster-daemon");
    (ca.pem(), client_cert, client_key)
}

#[tokio::test]
async fn mtls_rejects_clients_without_a_certificate_and_health_reports_serving() {
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
    let dir = TempDir::new("pki");
    let (ca, client_cert, client_key) = pki(&dir.0);
    let flags = [
        format!("--tls-cert={}", dir.0.join("server.pem").display()),
        format!("--tls-key={}", dir.0.join("server.key").display()),
        format!("--tls-client-ca={}", dir.0.join("ca.pem").display()),
    ];
    let flag_refs: Vec<&str> = flags.iter().map(String::as_str).collect();
    let h = start("mtls", dev_config(100_000), &flag_refs).await;
    let url = format!(
        "https://localhost:{}",
        h.serve.as_ref().unwrap().grpc_addr.port()
    );

    let anonymous = Endpoint::from_shared(url.clone())
        .unwrap()
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(&ca))
                .domain_name("localhost"),
        )
        .unwrap();
    let refused = match anonymous.connect().await {
        Err(_) => true,
        Ok(ch) => RunLauncherClient::new(ch)
            .check_run_worker_health(proto::CheckRunWorkerHealthRequest {
                run_id: run_id(1),
                ..Default::default()
            })
            .await
            .is_err(),
    };
    assert!(refused, "a client without a certificate got through");

    let ch = Endpoint::from_shared(url)
        .unwrap()
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(&ca))
                .identity(Identity::from_pem(client_cert, client_key))
                .domain_name("localhost"),
        )
        .unwrap()
        .connect()
        .await
        .unwrap();
    let r = RunLauncherClient::new(ch.clone())
        .check_run_worker_health(proto::CheckRunWorkerHealthRequest {
            run_id: run_id(1),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.status, WorkerStatus::NotFound as i32);
    let mut health = tonic_health::pb::health_client::HealthClient::new(ch);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let s = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: "runway.v1.RunLauncher".into(),
            })
            .await
            .unwrap()
            .into_inner();
        if s.status == tonic_health::pb::health_check_response::ServingStatus::Serving as i32 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never SERVING: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    h.finish().await;
}
