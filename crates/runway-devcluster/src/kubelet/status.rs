//! Container statuses as the kubelet reports them, and the pod phase and
//! conditions they imply.

use serde_json::{json, Value};

use super::PodKey;
use crate::api::Cluster;
use crate::validate::Kind;

pub(super) fn pod_condition(
    ty: &str,
    status: bool,
    now: &str,
    reason: Option<&str>,
    message: Option<&str>,
) -> Value {
    let mut c = json!({"type": ty, "status": if status { "True" } else { "False" },
                       "lastProbeTime": null, "lastTransitionTime": now});
    if let Some(r) = reason {
        c["reason"] = json!(r);
    }
    if let Some(m) = message {
        c["message"] = json!(m);
    }
    c
}

pub(super) fn set_condition(pod: &mut Value, cond: Value) {
    let list = pod["status"]
        .as_object_mut()
        .map(|s| s.entry("conditions").or_insert_with(|| json!([])));
    if let Some(Value::Array(items)) = list {
        match items.iter_mut().find(|c| c["type"] == cond["type"]) {
            Some(existing) => {
                if existing["status"] == cond["status"] {
                    let t = existing["lastTransitionTime"].clone();
                    *existing = cond;
                    existing["lastTransitionTime"] = t;
                } else {
                    *existing = cond;
                }
            }
            None => items.push(cond),
        }
    }
}

pub(super) fn container_names(pod: &Value, list: &str) -> Vec<String> {
    pod["spec"][list]
        .as_array()
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

pub(super) fn container_spec<'a>(pod: &'a Value, name: &str) -> &'a Value {
    pod["spec"]["containers"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == name))
        .or_else(|| {
            pod["spec"]["initContainers"]
                .as_array()
                .and_then(|cs| cs.iter().find(|c| c["name"] == name))
        })
        .unwrap_or(&Value::Null)
}

pub(super) fn base_status(pod: &Value, name: &str, restarts: i64) -> Value {
    let spec = container_spec(pod, name);
    json!({"name": name, "image": spec["image"], "imageID": "", "ready": false,
           "restartCount": restarts, "started": false})
}

pub(super) fn waiting_status(
    pod: &Value,
    name: &str,
    reason: &str,
    message: Option<&str>,
    restarts: i64,
) -> Value {
    let mut s = base_status(pod, name, restarts);
    let mut w = json!({"reason": reason});
    if let Some(m) = message {
        w["message"] = json!(m);
    }
    s["state"] = json!({"waiting": w});
    s
}

/// What a container's status says now, as the pod task tracks it.
#[derive(Debug, Clone)]
pub(super) enum CState {
    Waiting {
        reason: String,
        message: Option<String>,
    },
    Running {
        started: String,
    },
    Terminated {
        code: i32,
        reason: String,
        started: String,
        finished: String,
        message: Option<String>,
    },
}

#[derive(Debug, Clone)]
pub(super) struct CStatus {
    pub(super) name: String,
    pub(super) state: CState,
    pub(super) last: Option<Value>,
    pub(super) restarts: i64,
    pub(super) id: String,
}

impl CStatus {
    /// A container not started yet, waiting for `reason`.
    pub(super) fn waiting(name: &str, reason: &str) -> CStatus {
        CStatus {
            name: name.to_owned(),
            state: CState::Waiting {
                reason: reason.into(),
                message: None,
            },
            last: None,
            restarts: 0,
            id: String::new(),
        }
    }
}

pub(super) fn render_status(pod: &Value, c: &CStatus) -> Value {
    let mut s = base_status(pod, &c.name, c.restarts);
    s["imageID"] = json!(format!("runway.dev/{}", s["image"].as_str().unwrap_or("")));
    match &c.state {
        CState::Waiting { reason, message } => {
            let mut w = json!({"reason": reason});
            if let Some(m) = message {
                w["message"] = json!(m);
            }
            s["state"] = json!({"waiting": w});
        }
        CState::Running { started } => {
            s["state"] = json!({"running": {"startedAt": started}});
            s["ready"] = json!(true);
            s["started"] = json!(true);
            s["containerID"] = json!(c.id);
        }
        CState::Terminated {
            code,
            reason,
            started,
            finished,
            message,
        } => {
            let mut t = json!({"exitCode": code, "reason": reason, "startedAt": started,
                               "finishedAt": finished, "containerID": c.id});
            if let Some(m) = message {
                t["message"] = json!(m);
            }
            s["state"] = json!({"terminated": t});
            s["containerID"] = json!(c.id);
        }
    }
    if let Some(l) = &c.last {
        s["lastState"] = l.clone();
    } else {
        s["lastState"] = json!({});
    }
    s
}

/// What the containers' states add up to.
#[derive(Debug)]
struct Summary {
    all_running: bool,
    all_done: bool,
    all_ok: bool,
    any_started: bool,
    init_failed: bool,
    init_done: bool,
}

impl Summary {
    fn of(statuses: &[CStatus], init: &[CStatus]) -> Summary {
        let all = |f: &dyn Fn(&CState) -> bool| statuses.iter().all(|c| f(&c.state));
        Summary {
            all_running: !statuses.is_empty() && all(&|s| matches!(s, CState::Running { .. })),
            all_done: !statuses.is_empty() && all(&|s| matches!(s, CState::Terminated { .. })),
            all_ok: all(&|s| matches!(s, CState::Terminated { code: 0, .. })),
            any_started: statuses
                .iter()
                .any(|c| !matches!(c.state, CState::Waiting { .. })),
            init_failed: init
                .iter()
                .any(|c| matches!(c.state, CState::Terminated { code, .. } if code != 0)),
            init_done: init
                .iter()
                .all(|c| matches!(c.state, CState::Terminated { code: 0, .. })),
        }
    }

    fn phase(&self, evicted: bool) -> &'static str {
        if evicted || self.init_failed {
            "Failed"
        } else if self.all_done {
            if self.all_ok {
                "Succeeded"
            } else {
                "Failed"
            }
        } else if self.any_started {
            "Running"
        } else {
            "Pending"
        }
    }
}

/// Writes the containers' statuses and the phase and conditions they imply,
/// on `base` (the pod as the caller last saw it, with its revision) when the
/// pod has not changed since; the pod as written.
pub(super) fn publish(
    cluster: &Cluster,
    key: &PodKey,
    base: Option<(u64, Value)>,
    statuses: &[CStatus],
    init: &[CStatus],
    ip: &str,
    evicted: Option<&str>,
) -> Option<(u64, Value)> {
    let now = cluster.clock.now_rfc3339();
    let written = cluster.update_status_kept(Kind::Pod, &key.0, &key.1, base, |p| {
        // Rendered from the spec before the status changes, and compared
        // with the status before: the pod is not copied.
        let render = |pod: &Value, list: &[CStatus]| -> Vec<Value> {
            list.iter().map(|c| render_status(pod, c)).collect()
        };
        let main = render(p, statuses);
        let init_statuses = render(p, init);
        let before = p["status"].clone();
        let summary = Summary::of(statuses, init);
        p["status"]["phase"] = json!(summary.phase(evicted.is_some()));
        p["status"]["containerStatuses"] = Value::Array(main);
        if !init.is_empty() {
            p["status"]["initContainerStatuses"] = Value::Array(init_statuses);
        }
        if summary.any_started || summary.init_done {
            p["status"]["podIP"] = json!(ip);
            p["status"]["podIPs"] = json!([{"ip": ip}]);
            set_condition(
                p,
                pod_condition(
                    "PodReadyToStartContainers",
                    !summary.all_done,
                    &now,
                    None,
                    None,
                ),
            );
        }
        set_condition(
            p,
            pod_condition(
                "Initialized",
                summary.init_done,
                &now,
                (!summary.init_done).then_some("ContainersNotInitialized"),
                None,
            ),
        );
        set_readiness(p, &summary, statuses, &now);
        if let Some(msg) = evicted {
            p["status"]["reason"] = json!("Evicted");
            p["status"]["message"] = json!(msg);
        }
        p["status"] != before
    });
    written.ok()
}

/// ContainersReady and Ready: true while every container runs.
fn set_readiness(p: &mut Value, summary: &Summary, statuses: &[CStatus], now: &str) {
    if summary.all_running {
        set_condition(p, pod_condition("ContainersReady", true, now, None, None));
        set_condition(p, pod_condition("Ready", true, now, None, None));
        return;
    }
    let reason = if summary.all_done {
        "PodCompleted"
    } else {
        "ContainersNotReady"
    };
    let unready: Vec<&str> = statuses
        .iter()
        .filter(|c| !matches!(c.state, CState::Running { .. }))
        .map(|c| c.name.as_str())
        .collect();
    let msg = (!summary.all_done)
        .then(|| format!("containers with unready status: [{}]", unready.join(" ")));
    set_condition(
        p,
        pod_condition("ContainersReady", false, now, Some(reason), msg.as_deref()),
    );
    set_condition(
        p,
        pod_condition("Ready", false, now, Some(reason), msg.as_deref()),
    );
}
