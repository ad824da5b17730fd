//! Kubernetes access for the service and the worker: the client (behind the
//! rate-limiting [`gate`]), the few calls Runway makes, and the [`tracker`]
//! that keeps the watch index.

pub mod gate;
#[cfg(test)]
pub mod memory;
pub mod slim;
pub mod tracker;

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::Client;
use thiserror::Error;

pub use gate::{Gate, GateConfig, GateLayer, Throttled};
pub use tracker::Tracker;

/// A Kubernetes call that did not succeed.
#[derive(Debug, Error)]
pub enum Error {
    #[error("{kind} {name} already exists")]
    AlreadyExists { kind: &'static str, name: String },
    #[error("the Kubernetes API answered {code} {reason}: {message}")]
    Api {
        code: u16,
        reason: String,
        message: String,
    },
    #[error(transparent)]
    Throttled(#[from] Throttled),
    #[error("could not reach the Kubernetes API: {0}")]
    Transport(String),
    #[error("the Kubernetes API call timed out after {0:?}")]
    Timeout(Duration),
    #[error("Kubernetes client configuration: {0}")]
    Config(String),
}

impl Error {
    fn from_kube(e: kube::Error, kind: &'static str, name: &str) -> Error {
        match e {
            kube::Error::Api(status) if status.code == 409 && status.reason == "AlreadyExists" => {
                Error::AlreadyExists {
                    kind,
                    name: name.to_owned(),
                }
            }
            kube::Error::Api(status) => Error::Api {
                code: status.code,
                reason: status.reason.clone(),
                message: status.message.clone(),
            },
            kube::Error::Service(inner) => match inner.downcast::<Throttled>() {
                Ok(t) => Error::Throttled(*t),
                Err(other) => Error::Transport(other.to_string()),
            },
            other => Error::Transport(other.to_string()),
        }
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Api { code: 404, .. })
    }
}

/// The calls the launcher makes, behind a trait so tests can count them.
pub trait JobApi: Send + Sync + 'static {
    /// POST the Job (a JSON object) into `namespace`.
    fn create_job(
        &self,
        namespace: &str,
        job: &serde_json::Value,
    ) -> impl Future<Output = Result<Job, Error>> + Send;
    fn get_job(
        &self,
        namespace: &str,
        name: &str,
    ) -> impl Future<Output = Result<Option<Job>, Error>> + Send;
    /// Deletes with propagation Background; `false` when it did not exist.
    fn delete_job(
        &self,
        namespace: &str,
        name: &str,
    ) -> impl Future<Output = Result<bool, Error>> + Send;
    /// Names of the pods with `job-name=<job>`.
    fn job_pod_names(
        &self,
        namespace: &str,
        job: &str,
    ) -> impl Future<Output = Result<Vec<String>, Error>> + Send;
    fn delete_pod(
        &self,
        namespace: &str,
        name: &str,
    ) -> impl Future<Output = Result<bool, Error>> + Send;
    fn pod_log_tail(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        lines: u32,
    ) -> impl Future<Output = Result<String, Error>> + Send;
    /// The whole log of the pod's (only or first) container.
    fn pod_log(
        &self,
        namespace: &str,
        pod: &str,
    ) -> impl Future<Output = Result<String, Error>> + Send;
}

/// Where the Kubernetes client's configuration comes from.
#[derive(Debug, Clone, Default)]
pub struct ClientSource {
    /// A kubeconfig file; otherwise `KUBECONFIG`, `~/.kube/config`, then the
    /// in-cluster service account.
    pub kubeconfig: Option<std::path::PathBuf>,
    pub context: Option<String>,
}

/// Builds kube's client with the gate in front of it.
pub async fn client(source: &ClientSource, gate: GateLayer) -> Result<Client, Error> {
    let options = KubeConfigOptions {
        context: source.context.clone(),
        ..KubeConfigOptions::default()
    };
    let mut config = match &source.kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path)
                .map_err(|e| Error::Config(format!("reading {}: {e}", path.display())))?;
            kube::Config::from_custom_kubeconfig(kc, &options)
                .await
                .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?
        }
        None if source.context.is_some() => kube::Config::from_kubeconfig(&options)
            .await
            .map_err(|e| Error::Config(e.to_string()))?,
        None => kube::Config::infer()
            .await
            .map_err(|e| Error::Config(format!("{e} (give --kubeconfig, or run in a pod)")))?,
    };
    // The gate retries, with Retry-After; kube's own retry would double it.
    config.default_retry = false;
    let builder =
        kube::client::ClientBuilder::try_from(config).map_err(|e| Error::Config(e.to_string()))?;
    Ok(builder.with_layer(&gate).build())
}

/// [`JobApi`] over kube's client.
#[derive(Clone)]
pub struct KubeJobs {
    pub client: Client,
    pub timeout: Duration,
}

impl std::fmt::Debug for KubeJobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeJobs")
            .field("timeout", &self.timeout)
            .finish()
    }
}

fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

impl KubeJobs {
    async fn run<T>(
        &self,
        kind: &'static str,
        name: &str,
        fut: impl Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, Error> {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(r) => r.map_err(|e| Error::from_kube(e, kind, name)),
            Err(_) => Err(Error::Timeout(self.timeout)),
        }
    }

    fn request(
        method: http::Method,
        uri: String,
        body: Vec<u8>,
    ) -> Result<http::Request<Vec<u8>>, Error> {
        http::Request::builder()
            .method(method)
            .uri(uri)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::ACCEPT, "application/json")
            .body(body)
            .map_err(|e| Error::Config(e.to_string()))
    }

    async fn delete(&self, kind: &'static str, path: String, name: &str) -> Result<bool, Error> {
        let body =
            br#"{"kind":"DeleteOptions","apiVersion":"v1","propagationPolicy":"Background"}"#
                .to_vec();
        let req = Self::request(http::Method::DELETE, path, body)?;
        match self.run(kind, name, self.client.request_text(req)).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }
}

impl JobApi for KubeJobs {
    async fn create_job(&self, namespace: &str, job: &serde_json::Value) -> Result<Job, Error> {
        let name = job["metadata"]["name"].as_str().unwrap_or_default();
        let body = serde_json::to_vec(job).map_err(|e| Error::Config(e.to_string()))?;
        let req = Self::request(
            http::Method::POST,
            format!("/apis/batch/v1/namespaces/{}/jobs", enc(namespace)),
            body,
        )?;
        // The answer is the whole Job; what a caller reads of it (uid, image,
        // what the index keeps) is decoded, the rest skipped.
        let created = self.client.request::<slim::SlimJob>(req);
        self.run("Job", name, created).await.map(|j| j.to_job())
    }

    async fn get_job(&self, namespace: &str, name: &str) -> Result<Option<Job>, Error> {
        let req = Self::request(
            http::Method::GET,
            format!(
                "/apis/batch/v1/namespaces/{}/jobs/{}",
                enc(namespace),
                enc(name)
            ),
            Vec::new(),
        )?;
        match self.run("Job", name, self.client.request::<Job>(req)).await {
            Ok(job) => Ok(Some(job)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn delete_job(&self, namespace: &str, name: &str) -> Result<bool, Error> {
        self.delete(
            "Job",
            format!(
                "/apis/batch/v1/namespaces/{}/jobs/{}",
                enc(namespace),
                enc(name)
            ),
            name,
        )
        .await
    }

    async fn job_pod_names(&self, namespace: &str, job: &str) -> Result<Vec<String>, Error> {
        let req = Self::request(
            http::Method::GET,
            format!(
                "/api/v1/namespaces/{}/pods?labelSelector={}",
                enc(namespace),
                enc(&format!("job-name={job}"))
            ),
            Vec::new(),
        )?;
        let list: serde_json::Value = self.run("Pod", job, self.client.request(req)).await?;
        Ok(list["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn delete_pod(&self, namespace: &str, name: &str) -> Result<bool, Error> {
        self.delete(
            "Pod",
            format!("/api/v1/namespaces/{}/pods/{}", enc(namespace), enc(name)),
            name,
        )
        .await
    }

    async fn pod_log_tail(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        lines: u32,
    ) -> Result<String, Error> {
        let req = Self::request(
            http::Method::GET,
            format!(
                "/api/v1/namespaces/{}/pods/{}/log?container={}&tailLines={lines}&timestamps=true",
                enc(namespace),
                enc(pod),
                enc(container)
            ),
            Vec::new(),
        )?;
        self.run("Pod", pod, self.client.request_text(req)).await
    }

    async fn pod_log(&self, namespace: &str, pod: &str) -> Result<String, Error> {
        let req = Self::request(
            http::Method::GET,
            format!(
                "/api/v1/namespaces/{}/pods/{}/log",
                enc(namespace),
                enc(pod)
            ),
            Vec::new(),
        )?;
        self.run("Pod", pod, self.client.request_text(req)).await
    }
}
