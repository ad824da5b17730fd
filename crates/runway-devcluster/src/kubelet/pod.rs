//! One bound pod's lifecycle: its images, its containers (run as processes
//! or simulated), the back-off between restarts, and its deletion.

use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;

use super::images::image_exists;
use super::status::{container_names, container_spec, publish, render_status, CState, CStatus};
use super::{process, simulated};
use super::{Kubelet, KubeletMode, PodKey, ANN_DURATION_MS, ANN_EXIT_CODE, ANN_LOG, ANN_SCENARIO};
use crate::api::{ns_name, Cluster};
use crate::store::Stored;
use crate::validate::Kind;

/// Carries the deadline of a pod's deletion (epoch ms) once it is deleted.
pub(super) type DeleteRx = watch::Receiver<Option<i64>>;

/// What every step of one pod's run needs.
#[derive(Debug)]
pub(super) struct PodRun {
    pub(super) kubelet: Kubelet,
    pub(super) key: PodKey,
    pub(super) ip: String,
    /// The pod as it was when its run began (bound to its node).
    pub(super) pod: Value,
    /// The pod as this task last wrote it, with its revision: the base of
    /// the next status write, unless someone else wrote the pod meanwhile.
    last: std::sync::Mutex<Option<(u64, Value)>>,
}

/// The containers' statuses as the pod task tracks them.
#[derive(Debug)]
pub(super) struct Containers {
    pub(super) main: Vec<CStatus>,
    pub(super) init: Vec<CStatus>,
}

/// What a pod's script (annotations) asks for.
#[derive(Debug, Default, Clone)]
pub(super) struct Script {
    pub(super) duration_ms: Option<i64>,
    pub(super) exit_code: Option<i32>,
    pub(super) log: Option<String>,
    pub(super) scenario: Option<String>,
}

// === impl PodRun ===

impl PodRun {
    pub(super) fn cluster(&self) -> &Cluster {
        &self.kubelet.cluster
    }

    /// Writes the containers' statuses (see [`publish`]).
    pub(super) fn publish(&self, main: &[CStatus], init: &[CStatus], evicted: Option<&str>) {
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let base = last.take();
        *last = publish(
            self.cluster(),
            &self.key,
            base,
            main,
            init,
            &self.ip,
            evicted,
        );
    }

    /// Records an Event about the pod, from the kubelet.
    pub(super) fn event(&self, type_: &str, reason: &str, message: &str) {
        self.cluster()
            .record_event(Kind::Pod, &self.pod, type_, reason, message, "kubelet");
    }
}

/// The lifecycle of one bound pod, until it finished (and, when deleted, is
/// gone). `bound` is the pod as the scheduler wrote it.
pub(super) async fn run_pod(
    kubelet: Kubelet,
    key: PodKey,
    ip: String,
    bound: Option<(u64, Value)>,
    mut deleted: DeleteRx,
) {
    let Ok(stored) = kubelet.cluster.get(Kind::Pod, &key.0, &key.1) else {
        return;
    };
    let pod = match bound {
        Some((rev, pod)) if rev == stored.rev() => pod,
        _ => stored.value(),
    };
    let run = PodRun {
        kubelet,
        key,
        ip,
        last: std::sync::Mutex::new(Some((stored.rev(), pod.clone()))),
        pod,
    };
    let script = script_of(run.cluster(), &run.pod);
    let mut containers = Containers {
        main: waiting(&run.pod, "containers", "ContainerCreating"),
        init: waiting(&run.pod, "initContainers", "PodInitializing"),
    };
    let missing = missing_images(&run, &script);
    if !missing.is_empty() {
        pull_failure_loop(&run, &mut containers, &missing, &mut deleted).await;
    } else if run.kubelet.config.mode == KubeletMode::Simulated || script.scenario.is_some() {
        // A scripted scenario is played out the same way in both modes.
        simulated::simulate(&run, &script, &mut containers, &mut deleted).await;
    } else {
        process::run_processes(&run, &mut containers, &mut deleted).await;
    }
    // A finished pod only waits for its deletion, in a task of its own: this
    // task's state (pod, containers, the run's futures) is several KB, and
    // thousands of finished pods wait.
    let PodRun { kubelet, key, .. } = run;
    tokio::spawn(async move { finish_deletion(&kubelet.cluster, &key, &mut deleted).await });
}

fn waiting(pod: &Value, list: &str, reason: &str) -> Vec<CStatus> {
    container_names(pod, list)
        .iter()
        .map(|name| CStatus::waiting(name, reason))
        .collect()
}

fn script_of(cluster: &Cluster, pod: &Value) -> Script {
    let mut anns = vec![pod["metadata"]["annotations"].clone()];
    if let Some(owner) = pod["metadata"]["ownerReferences"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["kind"] == "Job"))
        .and_then(|r| r["name"].as_str())
    {
        let (ns, _) = ns_name(pod);
        if let Ok(job) = cluster.get(Kind::Job, &ns, owner) {
            anns.push(job_annotations(&job));
        }
    }
    let get = |k: &str| anns.iter().find_map(|a| a[k].as_str().map(str::to_owned));
    Script {
        duration_ms: get(ANN_DURATION_MS).and_then(|v| v.trim().parse().ok()),
        exit_code: get(ANN_EXIT_CODE).and_then(|v| v.trim().parse().ok()),
        log: get(ANN_LOG),
        scenario: get(ANN_SCENARIO),
    }
}

/// A Job's annotations, reading nothing else of it.
fn job_annotations(job: &Stored) -> Value {
    #[derive(serde::Deserialize)]
    struct View {
        #[serde(default)]
        metadata: Meta,
    }
    #[derive(serde::Deserialize, Default)]
    struct Meta {
        #[serde(default)]
        annotations: Value,
    }
    job.view::<View>()
        .map(|v| v.metadata.annotations)
        .unwrap_or_default()
}

/// The containers (index, image) whose image cannot be pulled: not in the
/// catalogue, or every one when the script asks for a pull failure.
fn missing_images(run: &PodRun, script: &Script) -> Vec<(usize, String)> {
    let scripted_pull = matches!(
        script.scenario.as_deref(),
        Some("ErrImagePull" | "ImagePullBackOff")
    );
    container_names(&run.pod, "containers")
        .iter()
        .enumerate()
        .filter_map(|(i, n)| {
            let image = container_spec(&run.pod, n)["image"]
                .as_str()
                .unwrap_or("")
                .to_owned();
            let exists = image_exists(&run.kubelet.config.images, &image);
            (!exists || scripted_pull).then_some((i, image))
        })
        .collect()
}

/// After the containers stopped: a deleted pod goes; otherwise wait for deletion.
async fn finish_deletion(cluster: &Cluster, key: &PodKey, deleted: &mut DeleteRx) {
    loop {
        if deleted.borrow().is_some() {
            let _ = cluster.finish_pod_deletion(&key.0, &key.1);
            return;
        }
        if deleted.changed().await.is_err() {
            return;
        }
    }
}

/// ErrImagePull, then ImagePullBackOff with a doubling back-off, until the
/// pod is deleted.
async fn pull_failure_loop(
    run: &PodRun,
    c: &mut Containers,
    missing: &[(usize, String)],
    deleted: &mut DeleteRx,
) {
    let mut backoff = run.kubelet.config.pull_backoff;
    loop {
        report_pull_failures(run, c, missing);
        if wait_or_deleted(backoff.min(Duration::from_millis(500)), deleted).await {
            return;
        }
        report_back_off(run, c, missing);
        if wait_or_deleted(backoff, deleted).await {
            return;
        }
        backoff = (backoff * 2).min(Duration::from_secs(300));
    }
}

fn report_pull_failures(run: &PodRun, c: &mut Containers, missing: &[(usize, String)]) {
    for (i, image) in missing {
        run.event("Normal", "Pulling", &format!("Pulling image \"{image}\""));
        let msg = format!(
            "failed to pull and unpack image \"{image}\": failed to resolve reference \"{image}\": \
             {image}: not found"
        );
        run.event(
            "Warning",
            "Failed",
            &format!("Failed to pull image \"{image}\": {msg}"),
        );
        run.event("Warning", "Failed", "Error: ErrImagePull");
        c.main[*i].state = CState::Waiting {
            reason: "ErrImagePull".into(),
            message: Some(msg),
        };
    }
    run.publish(&c.main, &[], None);
}

fn report_back_off(run: &PodRun, c: &mut Containers, missing: &[(usize, String)]) {
    for (i, image) in missing {
        let msg = format!("Back-off pulling image \"{image}\"");
        run.event("Normal", "BackOff", &msg);
        run.event("Warning", "Failed", "Error: ImagePullBackOff");
        c.main[*i].state = CState::Waiting {
            reason: "ImagePullBackOff".into(),
            message: Some(msg),
        };
    }
    run.publish(&c.main, &[], None);
}

/// Sleeps; true when the pod was deleted meanwhile.
pub(super) async fn wait_or_deleted(d: Duration, deleted: &mut DeleteRx) -> bool {
    if deleted.borrow().is_some() {
        return true;
    }
    tokio::select! {
        () = tokio::time::sleep(d) => deleted.borrow().is_some(),
        r = deleted.changed() => r.is_err() || deleted.borrow().is_some(),
    }
}

pub(super) fn restart_wanted(pod: &Value, code: i32) -> bool {
    match pod["spec"]["restartPolicy"].as_str().unwrap_or("Always") {
        "Always" => true,
        "OnFailure" => code != 0,
        _ => false,
    }
}

/// Every container waits in CrashLoopBackOff (10 s doubling to five minutes on
/// a real node, from `pull_backoff` here) before the restart; true when the
/// pod was deleted meanwhile.
pub(super) async fn crash_loop_back_off(
    run: &PodRun,
    c: &mut Containers,
    restarts: i64,
    deleted: &mut DeleteRx,
) -> bool {
    let shift = (restarts - 1).clamp(0, 5);
    for s in c.main.iter_mut() {
        s.last = Some(render_status(&run.pod, s)["state"].clone());
        s.restarts = restarts;
        s.state = CState::Waiting {
            reason: "CrashLoopBackOff".into(),
            message: Some(format!(
                "back-off {}s restarting failed container={} pod={}_{}",
                10 << shift,
                s.name,
                run.key.1,
                run.key.0
            )),
        };
    }
    run.event("Warning", "BackOff", "Back-off restarting failed container");
    run.publish(&c.main, &c.init, None);
    let back = (run.kubelet.config.pull_backoff * (1 << shift)).min(Duration::from_secs(300));
    wait_or_deleted(back, deleted).await
}

/// CreateContainerConfigError for every container, until the pod is deleted.
pub(super) async fn config_error(
    run: &PodRun,
    c: &mut Containers,
    msg: &str,
    deleted: &mut DeleteRx,
) {
    for s in c.main.iter_mut() {
        s.state = CState::Waiting {
            reason: "CreateContainerConfigError".into(),
            message: Some(msg.to_owned()),
        };
    }
    run.event("Warning", "Failed", &format!("Error: {msg}"));
    run.publish(&c.main, &c.init, None);
    // The real kubelet keeps retrying; the pod stays Pending until deleted.
    while !wait_or_deleted(Duration::from_secs(3600), deleted).await {}
}
