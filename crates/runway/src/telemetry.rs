//! Logs (JSON or text, to stderr) and, when an OTLP endpoint is given,
//! traces exported over OTLP/gRPC. Spans carry the run id.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::SdkTracerProvider;
use std::io::IsTerminal as _;

use thiserror::Error;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::settings::LogFormat;

#[derive(Debug, Error)]
pub enum Error {
    #[error("OTLP exporter for {endpoint}: {message}")]
    Otlp { endpoint: String, message: String },
    #[error("logging was already set up: {0}")]
    Init(String),
}

/// Keeps the trace pipeline alive; flushes on drop.
#[derive(Debug)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take() {
            let _ = p.shutdown();
        }
    }
}

/// Sets up logging and tracing for a long-running command. Must be called
/// inside the Tokio runtime when `otlp_endpoint` is given.
pub fn init(
    format: LogFormat,
    otlp_endpoint: Option<&str>,
    service: &'static str,
) -> Result<Telemetry, Error> {
    let filter = || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = if format == LogFormat::Json {
        tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_writer(std::io::stderr)
            .with_filter(filter())
            .boxed()
    } else {
        // Colours only for a person at a terminal, never into a log file.
        tracing_subscriber::fmt::layer()
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr)
            .with_filter(filter())
            .boxed()
    };
    let mut provider = None;
    let otel = match otlp_endpoint.filter(|e| !e.is_empty()) {
        Some(endpoint) => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint)
                .build()
                .map_err(|e| Error::Otlp {
                    endpoint: endpoint.to_owned(),
                    message: e.to_string(),
                })?;
            let p = SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(
                    opentelemetry_sdk::Resource::builder()
                        .with_service_name(service)
                        .build(),
                )
                .build();
            let tracer = p.tracer(service);
            provider = Some(p);
            Some(
                tracing_opentelemetry::layer()
                    .with_tracer(tracer)
                    .with_filter(filter()),
            )
        }
        None => None,
    };
    tracing_subscriber::registry()
        .with(fmt)
        .with(otel)
        .try_init()
        .map_err(|e| Error::Init(e.to_string()))?;
    Ok(Telemetry { provider })
}

/// A URL with its password hidden, for logs.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            redact_url("amqp://guest:secret@rabbit:5672//"),
            "amqp://guest:***@rabbit:5672//"
        );
        assert_eq!(redact_url("redis://r:6379/0"), "redis://r:6379/0");
    }
}
