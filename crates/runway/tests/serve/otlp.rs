//! Traces exported over OTLP to a stand-in collector.

use crate::harness::*;

use std::sync::Mutex;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};

#[derive(Default)]
struct Collector(Arc<Mutex<Vec<ExportTraceServiceRequest>>>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        req: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.lock().unwrap().push(req.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

fn attr(span: &opentelemetry_proto::tonic::trace::v1::Span, key: &str) -> Option<String> {
    span.attributes.iter().find(|a| a.key == key).and_then(|a| {
        a.value.as_ref().and_then(|v| match &v.value {
            Some(opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(s)) => {
                Some(s.clone())
            }
            _ => None,
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launches_are_traced_over_otlp_with_the_run_id() {
    let seen: Arc<Mutex<Vec<ExportTraceServiceRequest>>> = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(Collector(seen.clone())))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    let telemetry = runway::telemetry::init(
        runway::settings::LogFormat::Text,
        Some(&format!("http://{addr}")),
        "runway-serve",
    )
    .unwrap();
    let mut h = start("otlp", dev_config(100_000), &[]).await;
    let run = run_id(4242);
    h.grpc.launch_run(seed_request(&run, None)).await.unwrap();
    h.finish().await;
    // Shutting the pipeline down flushes the batch.
    tokio::task::spawn_blocking(move || drop(telemetry))
        .await
        .unwrap();
    let requests = seen.lock().unwrap();
    let spans: Vec<_> = requests
        .iter()
        .flat_map(|r| &r.resource_spans)
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .collect();
    let launch = spans
        .iter()
        .find(|s| s.name == "launch")
        .unwrap_or_else(|| {
            panic!(
                "no launch span among {:?}",
                spans.iter().map(|s| &s.name).collect::<Vec<_>>()
            )
        });
    assert_eq!(attr(launch, "run_id").as_deref(), Some(run.as_str()));
    let service = requests[0].resource_spans[0]
        .resource
        .as_ref()
        .and_then(|r| r.attributes.iter().find(|a| a.key == "service.name"))
        .and_then(|a| a.value.clone());
    assert!(
        format!("{service:?}").contains("runway-serve"),
        "{service:?}"
    );
}
