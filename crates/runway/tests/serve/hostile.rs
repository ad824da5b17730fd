//! Careless and hostile callers: oversized and malformed requests, jobs the
//! server does not own, one caller's environment against another's, and
//! more WatchRuns streams than the server takes.

use crate::harness::*;

use bytes::{Buf, BufMut};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

fn message(e: &tonic::Status) -> &str {
    e.message()
}

#[tokio::test]
async fn oversized_input_is_refused_without_being_echoed() {
    let mut h = start(
        "hostile-size",
        dev_config(100_000),
        &["--max-config-bytes=65536"],
    )
    .await;
    // A 1 MB run id.
    let huge = "r".repeat(1 << 20);
    let err = h
        .grpc
        .launch_run(seed_request(&huge, None))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        message(&err).starts_with("run.run_id: 1048576 bytes is not a Dagster run id"),
        "{}",
        &message(&err)[..200.min(message(&err).len())]
    );
    assert!(message(&err).len() < 300);
    // A 100 kB label value in a tag: named, clipped, and its length said.
    let label = "v".repeat(100_000);
    let err = h
        .grpc
        .launch_run(seed_request(
            &run_id(1),
            Some(json!({"job_metadata": {"labels": {"team": label}}})),
        ))
        .await
        .unwrap_err();
    assert!(message(&err).len() <= 2200, "{} bytes", message(&err).len());
    // A launcher config over the limit.
    let mut big = seed_request(&run_id(2), None);
    let mut launcher = seed_case()["launcher"].clone();
    launcher["labels"] = json!({"padding": "p".repeat(100_000)});
    big.launcher = Some(launcher_config(&launcher, "K8sRunLauncher"));
    let err = h.grpc.launch_run(big).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        message(&err).contains("--max-config-bytes"),
        "{}",
        message(&err)
    );
    assert!(h
        .jobs()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .is_empty());
    h.finish().await;
}

/// Sends raw bytes as a method's request, as a broken client would.
#[derive(Debug, Clone, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }
    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(&mut self, item: Vec<u8>, buf: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        buf.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        let mut out = vec![0; buf.remaining()];
        buf.copy_to_slice(&mut out);
        Ok(Some(out))
    }
}

#[tokio::test]
async fn malformed_protobuf_and_invalid_utf8_are_invalid_arguments() {
    let h = start("hostile-proto", dev_config(100_000), &[]).await;
    let addr = format!("http://{}", h.serve.as_ref().unwrap().grpc_addr);
    let channel = Channel::from_shared(addr).unwrap().connect().await.unwrap();
    let path = "/runway.v1.RunLauncher/CheckRunWorkerHealth";
    for body in [
        vec![0x0a, 0xff, 0x01],             // a truncated string field
        vec![0x0a, 0x02, 0xff, 0xfe],       // run_id that is not UTF-8
        vec![0xff, 0xff, 0xff, 0xff, 0x0f], // a garbage tag
    ] {
        let mut client = tonic::client::Grpc::new(channel.clone());
        client.ready().await.unwrap();
        let err = client
            .unary(tonic::Request::new(body), path.parse().unwrap(), RawCodec)
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    }
    h.finish().await;
}

#[tokio::test]
async fn terminate_touches_only_runway_jobs_of_the_run_in_watched_namespaces() {
    let mut h = start("hostile-scope", dev_config(100_000), &[]).await;
    // A hand-made Job with the run's name but none of Runway's labels.
    let victim = run_id(7);
    let name = format!("dagster-run-{victim}");
    create(
        &h.kube,
        &format!("/apis/batch/v1/namespaces/{NS}/jobs"),
        json!({
            "metadata": {"name": name},
            "spec": {"template": {"spec": {"restartPolicy": "Never",
                "containers": [{"name": "c", "image": "busybox:1"}]}}}
        }),
    )
    .await;
    let req = |ns: &str| proto::TerminateRunRequest {
        run_id: victim.clone(),
        namespace: ns.into(),
        include_step_jobs: true,
        ..Default::default()
    };
    let err = h.grpc.terminate_run(req(NS)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    assert!(
        message(&err).contains("not created by Runway"),
        "{}",
        message(&err)
    );
    let err = h.grpc.terminate_run(req("default")).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    assert!(
        message(&err).contains("does not watch"),
        "{}",
        message(&err)
    );
    assert!(
        h.jobs().get_opt(&name).await.unwrap().is_some(),
        "the foreign Job is left alone"
    );
    // The run's own Job is terminated as before.
    let own = run_id(8);
    h.grpc.launch_run(seed_request(&own, None)).await.unwrap();
    let done = h
        .grpc
        .terminate_run(proto::TerminateRunRequest {
            run_id: own.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(done.terminated && done.deleted_jobs == [format!("dagster-run-{own}")]);
    h.finish().await;
}

#[tokio::test]
async fn one_callers_environment_never_reaches_anothers_job() {
    let mut h = start("hostile-env", dev_config(100_000), &[]).await;
    let mut launcher = seed_case()["launcher"].clone();
    launcher["job_image"] = json!({"env": "MY_IMAGE"});
    let request = |run: &str, image: Option<&str>| {
        let mut r = seed_request(run, None);
        r.run.as_mut().unwrap().image = None;
        r.launcher = Some(launcher_config(&launcher, "K8sRunLauncher"));
        if let Some(i) = image {
            r.env.insert("MY_IMAGE".into(), i.into());
        }
        r
    };
    let a = h
        .grpc
        .launch_run(request(&run_id(20), Some("tenant-a/img:1")))
        .await
        .unwrap();
    let b = h
        .grpc
        .launch_run(request(&run_id(21), Some("tenant-b/img:1")))
        .await
        .unwrap();
    assert_eq!(a.into_inner().image, "tenant-a/img:1");
    assert_eq!(b.into_inner().image, "tenant-b/img:1");
    let err = h
        .grpc
        .launch_run(request(&run_id(22), None))
        .await
        .unwrap_err();
    assert!(message(&err).contains("MY_IMAGE"), "{}", message(&err));
    h.finish().await;
}

#[tokio::test]
async fn watch_streams_are_capped_and_a_closed_one_frees_its_place() {
    let mut h = start(
        "hostile-streams",
        dev_config(100_000),
        &["--max-watch-streams=2"],
    )
    .await;
    let open = |mut c: RunLauncherClient<Channel>| async move {
        c.watch_runs(proto::WatchRunsRequest {
            include_current: true,
            ..Default::default()
        })
        .await
    };
    let first = open(h.grpc.clone()).await.unwrap();
    let _second = open(h.grpc.clone()).await.unwrap();
    let err = open(h.grpc.clone()).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted);
    assert!(
        message(&err).contains("--max-watch-streams"),
        "{}",
        message(&err)
    );
    drop(first);
    let mut reopened = None;
    for _ in 0..50 {
        if let Ok(s) = open(h.grpc.clone()).await {
            reopened = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(reopened.is_some(), "a closed stream gives its place back");
    let _ = &mut h;
    h.finish().await;
}
