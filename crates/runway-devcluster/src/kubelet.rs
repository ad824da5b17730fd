//! The scheduler and the kubelet. The scheduler binds pending pods to nodes
//! that match their nodeSelector and required node affinity and have room
//! for their requests; the rest stay Pending with PodScheduled=False. The
//! kubelet then runs each bound pod:
//! - `process` mode: every container's command and args run as a local
//!   process group with the container's env, envFrom and working dir; stdout
//!   and stderr become the pod log; a memory limit is enforced by watching the
//!   group's RSS (OOMKilled, exit 137); deletion sends SIGTERM, then SIGKILL
//!   when the grace period ends. Images are not pulled: a catalogue of glob
//!   patterns says which exist, and any other gives ErrImagePull, then
//!   ImagePullBackOff, with Events.
//! - `simulated` mode: containers "run" for a duration and exit with a code,
//!   both from annotations, on the cluster clock (virtual in tests), so load
//!   tests can run very many pods.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::watch;

use super::api::{ns_name, Cluster};
use super::faults::Faults;
use super::logs::LogStore;
use super::store::EventType;
use super::validate::Kind;

/// Annotations that script a pod (on the Job's pod template, or on the Job).
pub const ANN_DURATION_MS: &str = "runway.dev/duration-ms";
pub const ANN_EXIT_CODE: &str = "runway.dev/exit-code";
pub const ANN_LOG: &str = "runway.dev/log";
/// One of ErrImagePull, ImagePullBackOff, CrashLoopBackOff,
/// CreateContainerConfigError, OOMKilled, Evicted, Never (runs forever).
pub const ANN_SCENARIO: &str = "runway.dev/scenario";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KubeletMode {
    Process,
    Simulated,
}

/// One node: its name, labels and allocatable capacity.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub cpu_millis: i64,
    pub memory_bytes: i64,
    pub max_pods: i64,
}

impl NodeConfig {
    pub fn new(name: &str) -> NodeConfig {
        let labels = [
            ("kubernetes.io/hostname", name),
            ("kubernetes.io/os", "linux"),
            ("kubernetes.io/arch", "amd64"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        NodeConfig {
            name: name.to_owned(),
            labels,
            cpu_millis: 64_000,
            memory_bytes: 256 << 30,
            max_pods: 110_000,
        }
    }
}

#[derive(Debug, Clone)]
pub struct KubeletConfig {
    pub mode: KubeletMode,
    pub nodes: Vec<NodeConfig>,
    /// Glob patterns (`*` matches any run of characters) of the images that
    /// exist; a pattern starting with `!` excludes, and the last match wins.
    pub images: Vec<String>,
    /// Where pods without an existing workingDir run (one folder per pod).
    pub root: PathBuf,
    /// First image-pull back-off; doubles up to five minutes, as a real kubelet.
    pub pull_backoff: Duration,
    /// Simulated mode: how long a container runs without an annotation.
    pub default_duration_ms: i64,
    /// How often the scheduler and the simulated containers are checked.
    pub tick: Duration,
    /// Environment every process gets before the container's own (PATH, HOME, ...).
    pub base_env: Vec<(String, String)>,
}

impl Default for KubeletConfig {
    fn default() -> Self {
        let base_env = ["PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "VIRTUAL_ENV"]
            .iter()
            .filter_map(|k| std::env::var(k).ok().map(|v| ((*k).to_owned(), v)))
            .collect();
        KubeletConfig {
            mode: KubeletMode::Process,
            nodes: ["devmaster1", "devmaster2", "devmaster3"]
                .into_iter()
                .map(NodeConfig::new)
                .collect(),
            images: vec!["*".to_owned()],
            root: std::env::temp_dir().join("runway-dev-cluster"),
            pull_backoff: Duration::from_secs(1),
            default_duration_ms: 100,
            tick: Duration::from_millis(20),
            base_env,
        }
    }
}

/// Glob match with `*` only.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let mut rest = text;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(part) else {
                return false;
            };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
    }
    true
}

/// Whether the catalogue has `image`: the last pattern that matches decides.
pub fn image_exists(catalogue: &[String], image: &str) -> bool {
    catalogue
        .iter()
        .rev()
        .find_map(|p| match p.strip_prefix('!') {
            Some(neg) => glob_match(neg, image).then_some(false),
            None => glob_match(p, image).then_some(true),
        })
        .unwrap_or(false)
}

/// A Kubernetes quantity in base units (cpu in millicores when `milli`).
pub fn parse_quantity(q: &Value, milli: bool) -> Option<i64> {
    let s = match q {
        Value::String(s) => s.trim().to_owned(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let factor: f64 = match suffix {
        "" => 1.0,
        "m" => 0.001,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "Ki" => 1024.0,
        "Mi" => 1_048_576.0,
        "Gi" => 1_073_741_824.0,
        "Ti" => 1_099_511_627_776.0,
        s if s.starts_with(['e', 'E']) => 10f64.powi(s[1..].parse().ok()?),
        _ => return None,
    };
    let v = n * factor * if milli { 1000.0 } else { 1.0 };
    Some(v.ceil() as i64)
}

fn requests(pod: &Value) -> (i64, i64) {
    let mut cpu = 0;
    let mut mem = 0;
    for c in pod["spec"]["containers"].as_array().into_iter().flatten() {
        let r = &c["resources"];
        let get = |name: &str| r["requests"].get(name).or_else(|| r["limits"].get(name));
        cpu += get("cpu")
            .and_then(|q| parse_quantity(q, true))
            .unwrap_or(0);
        mem += get("memory")
            .and_then(|q| parse_quantity(q, false))
            .unwrap_or(0);
    }
    (cpu, mem)
}

fn expr_matches(expr: &Value, labels: &BTreeMap<String, String>) -> bool {
    let key = expr["key"].as_str().unwrap_or("");
    let values: Vec<&str> = expr["values"]
        .as_array()
        .map(|v| v.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let have = labels.get(key).map(String::as_str);
    match expr["operator"].as_str().unwrap_or("") {
        "In" => have.is_some_and(|h| values.contains(&h)),
        "NotIn" => have.is_none_or(|h| !values.contains(&h)),
        "Exists" => have.is_some(),
        "DoesNotExist" => have.is_none(),
        op @ ("Gt" | "Lt") => {
            let (Some(h), Some(v)) = (
                have.and_then(|h| h.parse::<i64>().ok()),
                values.first().and_then(|v| v.parse::<i64>().ok()),
            ) else {
                return false;
            };
            if op == "Gt" {
                h > v
            } else {
                h < v
            }
        }
        _ => false,
    }
}

/// nodeSelector and required node affinity (terms ORed, expressions ANDed).
pub fn node_matches(pod: &Value, node: &NodeConfig) -> bool {
    let spec = &pod["spec"];
    if let Some(sel) = spec["nodeSelector"].as_object() {
        if sel
            .iter()
            .any(|(k, v)| node.labels.get(k).map(String::as_str) != v.as_str())
        {
            return false;
        }
    }
    if let Some(name) = spec["nodeName"].as_str().filter(|n| !n.is_empty()) {
        return name == node.name;
    }
    let terms = &spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        ["nodeSelectorTerms"];
    let Some(terms) = terms.as_array() else {
        return true;
    };
    terms.iter().any(|term| {
        let exprs = term["matchExpressions"].as_array();
        let fields = term["matchFields"].as_array();
        let mut fields_map = BTreeMap::new();
        fields_map.insert("metadata.name".to_owned(), node.name.clone());
        // An empty term matches no node.
        let non_empty =
            exprs.is_some_and(|e| !e.is_empty()) || fields.is_some_and(|f| !f.is_empty());
        non_empty
            && exprs
                .into_iter()
                .flatten()
                .all(|e| expr_matches(e, &node.labels))
            && fields
                .into_iter()
                .flatten()
                .all(|e| expr_matches(e, &fields_map))
    })
}

#[derive(Debug)]
struct Bound {
    node: String,
    cpu: i64,
    mem: i64,
}

#[derive(Debug, Default)]
struct State {
    /// Pods waiting for a node, in arrival order.
    pending: BTreeMap<u64, (String, String)>,
    next_seq: u64,
    /// Resources held by bound, unfinished pods.
    bound: HashMap<(String, String), Bound>,
    /// Pods the kubelet runs: the sender tells the pod's task about deletion.
    running: HashMap<(String, String), watch::Sender<Option<i64>>>,
    /// The last Unschedulable message written per pod.
    unschedulable: HashMap<(String, String), String>,
    next_ip: u32,
}

/// Runs until `stop` turns true.
pub async fn run_kubelet(
    cluster: Arc<Cluster>,
    logs: Arc<LogStore>,
    faults: Arc<Faults>,
    config: KubeletConfig,
    mut stop: watch::Receiver<bool>,
) {
    let config = Arc::new(config);
    let mut state = State::default();
    let mut rx = resync(&cluster, &mut state);
    let mut ticker = tokio::time::interval(config.tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = stop.changed() => {
                if *stop.borrow() {
                    for (_, tx) in state.running.drain() {
                        // Stop every process at once: the cluster goes away.
                        let _ = tx.send(Some(0));
                    }
                    return;
                }
            }
            _ = ticker.tick() => {}
            ev = rx.recv() => match ev {
                Ok(e) if e.kind == Kind::Pod => observe(&cluster, &logs, &mut state, e.ty, &e.object),
                Ok(_) => {}
                Err(RecvError::Lagged(_)) => rx = resync(&cluster, &mut state),
                Err(RecvError::Closed) => return,
            }
        }
        if faults.kubelet_paused() {
            continue;
        }
        schedule(&cluster, &logs, &config, &mut state);
    }
}

fn resync(
    cluster: &Cluster,
    state: &mut State,
) -> tokio::sync::broadcast::Receiver<Arc<super::store::Event>> {
    let (lists, rx) = cluster.snapshot_and_subscribe(&[Kind::Pod]);
    let pods = lists.into_iter().next().unwrap_or_default();
    state.pending.clear();
    for pod in pods {
        let key = ns_name(&pod);
        let unbound = pod["spec"]["nodeName"].as_str().is_none_or(str::is_empty);
        if unbound && pod["metadata"].get("deletionTimestamp").is_none() {
            state.next_seq += 1;
            state.pending.insert(state.next_seq, key);
        }
    }
    rx
}

fn observe(cluster: &Cluster, logs: &LogStore, state: &mut State, ty: EventType, pod: &Value) {
    let key = ns_name(pod);
    let unbound = pod["spec"]["nodeName"].as_str().is_none_or(str::is_empty);
    match ty {
        EventType::Added if unbound => {
            state.next_seq += 1;
            state.pending.insert(state.next_seq, key);
        }
        EventType::Deleted => {
            state.bound.remove(&key);
            state.unschedulable.remove(&key);
            state.pending.retain(|_, k| *k != key);
            if let Some(tx) = state.running.remove(&key) {
                let _ = tx.send(Some(0));
            }
            logs.remove_pod(&key.0, &key.1);
        }
        _ => {
            if let Some(ts) = pod["metadata"]["deletionTimestamp"].as_str() {
                let deadline = super::clock::parse_rfc3339(ts).unwrap_or(0);
                match state.running.get(&key) {
                    Some(tx) => {
                        let _ = tx.send(Some(deadline));
                    }
                    // Nothing runs for it (unbound, or already finished): done at once.
                    None => {
                        let _ = cluster.finish_pod_deletion(&key.0, &key.1);
                    }
                }
            }
            if matches!(
                pod["status"]["phase"].as_str(),
                Some("Succeeded" | "Failed")
            ) {
                state.bound.remove(&key);
            }
        }
    }
}

fn schedule(
    cluster: &Arc<Cluster>,
    logs: &Arc<LogStore>,
    config: &Arc<KubeletConfig>,
    state: &mut State,
) {
    if state.pending.is_empty() {
        return;
    }
    let mut used: HashMap<&str, (i64, i64, i64)> = HashMap::new();
    for b in state.bound.values() {
        let u = used.entry(b.node.as_str()).or_default();
        u.0 += b.cpu;
        u.1 += b.mem;
        u.2 += 1;
    }
    let mut used: HashMap<String, (i64, i64, i64)> =
        used.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    let queue: Vec<(u64, (String, String))> =
        std::mem::take(&mut state.pending).into_iter().collect();
    for (seq, key) in queue {
        let Ok(pod) = cluster.get(Kind::Pod, &key.0, &key.1) else {
            continue;
        };
        if pod["metadata"].get("deletionTimestamp").is_some() {
            continue;
        }
        let (cpu, mem) = requests(&pod);
        let mut affinity_misses = 0;
        let mut cpu_misses = 0;
        let mut mem_misses = 0;
        let mut pod_misses = 0;
        let mut chosen = None;
        for node in &config.nodes {
            if !node_matches(&pod, node) {
                affinity_misses += 1;
                continue;
            }
            let u = used.get(&node.name).copied().unwrap_or_default();
            let mut fits = true;
            if u.0 + cpu > node.cpu_millis {
                cpu_misses += 1;
                fits = false;
            }
            if u.1 + mem > node.memory_bytes {
                mem_misses += 1;
                fits = false;
            }
            if u.2 + 1 > node.max_pods {
                pod_misses += 1;
                fits = false;
            }
            if fits {
                // Least allocated by pod count: spreads pods as the default scheduler tends to.
                if chosen
                    .as_ref()
                    .is_none_or(|(_, c): &(String, i64)| u.2 < *c)
                {
                    chosen = Some((node.name.clone(), u.2));
                }
            }
        }
        match chosen {
            Some((node, _)) => {
                let u = used.entry(node.clone()).or_default();
                u.0 += cpu;
                u.1 += mem;
                u.2 += 1;
                state.unschedulable.remove(&key);
                state.bound.insert(
                    key.clone(),
                    Bound {
                        node: node.clone(),
                        cpu,
                        mem,
                    },
                );
                state.next_ip += 1;
                let ip = format!(
                    "10.244.{}.{}",
                    (state.next_ip >> 8) & 0xff,
                    state.next_ip & 0xff
                );
                let host_ip = node_ip(config, &node);
                bind(cluster, &pod, &node, &host_ip);
                let (tx, rx) = watch::channel(None);
                state.running.insert(key.clone(), tx);
                let cluster = cluster.clone();
                let logs = logs.clone();
                let config = config.clone();
                tokio::spawn(async move {
                    run_pod(&cluster, &logs, &config, &key, &ip, rx).await;
                });
            }
            None => {
                let total = config.nodes.len();
                let mut reasons = Vec::new();
                if cpu_misses > 0 {
                    reasons.push(format!("{cpu_misses} Insufficient cpu"));
                }
                if mem_misses > 0 {
                    reasons.push(format!("{mem_misses} Insufficient memory"));
                }
                if pod_misses > 0 {
                    reasons.push(format!("{pod_misses} Too many pods"));
                }
                if affinity_misses > 0 {
                    reasons.push(format!(
                        "{affinity_misses} node(s) didn't match Pod's node affinity/selector"
                    ));
                }
                let message = format!(
                    "0/{total} nodes are available: {}. preemption: 0/{total} nodes are available: \
                     {total} Preemption is not helpful for scheduling.",
                    reasons.join(", ")
                );
                if state.unschedulable.get(&key) != Some(&message) {
                    mark_unschedulable(cluster, &pod, &message);
                    state.unschedulable.insert(key.clone(), message);
                }
                state.pending.insert(seq, key);
            }
        }
    }
}

fn node_ip(config: &KubeletConfig, node: &str) -> String {
    let i = config
        .nodes
        .iter()
        .position(|n| n.name == node)
        .unwrap_or(0);
    format!("192.0.2.{}", i + 10)
}

fn pod_condition(
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

fn set_condition(pod: &mut Value, cond: Value) {
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

fn mark_unschedulable(cluster: &Cluster, pod: &Value, message: &str) {
    let (ns, name) = ns_name(pod);
    let now = cluster.clock.now_rfc3339();
    let _ = cluster.update_status_with(Kind::Pod, &ns, &name, |p| {
        set_condition(
            p,
            pod_condition(
                "PodScheduled",
                false,
                &now,
                Some("Unschedulable"),
                Some(message),
            ),
        );
    });
    cluster.record_event(
        Kind::Pod,
        pod,
        "Warning",
        "FailedScheduling",
        message,
        "default-scheduler",
    );
}

fn bind(cluster: &Cluster, pod: &Value, node: &str, host_ip: &str) {
    let (ns, name) = ns_name(pod);
    let now = cluster.clock.now_rfc3339();
    let containers = container_names(pod, "containers");
    let init = container_names(pod, "initContainers");
    let _ = cluster.update_status_with(Kind::Pod, &ns, &name, |p| {
        p["spec"]["nodeName"] = json!(node);
        set_condition(p, pod_condition("PodScheduled", true, &now, None, None));
        set_condition(
            p,
            pod_condition("PodReadyToStartContainers", false, &now, None, None),
        );
        let init_done = init.is_empty();
        set_condition(
            p,
            pod_condition(
                "Initialized",
                init_done,
                &now,
                (!init_done).then_some("ContainersNotInitialized"),
                None,
            ),
        );
        let msg = format!("containers with unready status: [{}]", containers.join(" "));
        set_condition(
            p,
            pod_condition("Ready", false, &now, Some("ContainersNotReady"), Some(&msg)),
        );
        set_condition(
            p,
            pod_condition(
                "ContainersReady",
                false,
                &now,
                Some("ContainersNotReady"),
                Some(&msg),
            ),
        );
        p["status"]["hostIP"] = json!(host_ip);
        p["status"]["hostIPs"] = json!([{"ip": host_ip}]);
        p["status"]["startTime"] = json!(now);
        p["status"]["containerStatuses"] = Value::Array(
            containers
                .iter()
                .map(|c| waiting_status(p, c, "ContainerCreating", None, 0))
                .collect(),
        );
    });
    let message = format!("Successfully assigned {ns}/{name} to {node}");
    cluster.record_event(
        Kind::Pod,
        pod,
        "Normal",
        "Scheduled",
        &message,
        "default-scheduler",
    );
}

fn container_names(pod: &Value, list: &str) -> Vec<String> {
    pod["spec"][list]
        .as_array()
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn container_spec<'a>(pod: &'a Value, name: &str) -> &'a Value {
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

fn base_status(pod: &Value, name: &str, restarts: i64) -> Value {
    let spec = container_spec(pod, name);
    json!({"name": name, "image": spec["image"], "imageID": "", "ready": false,
           "restartCount": restarts, "started": false})
}

fn waiting_status(
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
enum CState {
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
struct CStatus {
    name: String,
    state: CState,
    last: Option<Value>,
    restarts: i64,
    id: String,
}

fn render_status(pod: &Value, c: &CStatus) -> Value {
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

/// Writes the containers' statuses and the phase and conditions they imply.
fn publish(
    cluster: &Cluster,
    key: &(String, String),
    statuses: &[CStatus],
    init: &[CStatus],
    ip: &str,
    evicted: Option<&str>,
) {
    let now = cluster.clock.now_rfc3339();
    let _ = cluster.update_status_with(Kind::Pod, &key.0, &key.1, |p| {
        let snapshot = p.clone();
        let rendered: Vec<Value> = statuses
            .iter()
            .map(|c| render_status(&snapshot, c))
            .collect();
        let rendered_init: Vec<Value> = init.iter().map(|c| render_status(&snapshot, c)).collect();
        let all_running = !statuses.is_empty()
            && statuses
                .iter()
                .all(|c| matches!(c.state, CState::Running { .. }));
        let all_done = !statuses.is_empty()
            && statuses
                .iter()
                .all(|c| matches!(c.state, CState::Terminated { .. }));
        let init_failed = init
            .iter()
            .any(|c| matches!(c.state, CState::Terminated { code, .. } if code != 0));
        let init_done = init
            .iter()
            .all(|c| matches!(c.state, CState::Terminated { code: 0, .. }));
        let any_started = statuses
            .iter()
            .any(|c| !matches!(c.state, CState::Waiting { .. }));
        let all_ok = statuses
            .iter()
            .all(|c| matches!(c.state, CState::Terminated { code: 0, .. }));
        let phase = if evicted.is_some() || init_failed {
            "Failed"
        } else if all_done {
            if all_ok {
                "Succeeded"
            } else {
                "Failed"
            }
        } else if any_started {
            "Running"
        } else {
            "Pending"
        };
        p["status"]["phase"] = json!(phase);
        p["status"]["containerStatuses"] = Value::Array(rendered);
        if !rendered_init.is_empty() {
            p["status"]["initContainerStatuses"] = Value::Array(rendered_init);
        }
        if any_started || init_done {
            p["status"]["podIP"] = json!(ip);
            p["status"]["podIPs"] = json!([{"ip": ip}]);
            set_condition(
                p,
                pod_condition("PodReadyToStartContainers", !all_done, &now, None, None),
            );
        }
        set_condition(
            p,
            pod_condition(
                "Initialized",
                init_done,
                &now,
                (!init_done).then_some("ContainersNotInitialized"),
                None,
            ),
        );
        let unready: Vec<&str> = statuses
            .iter()
            .filter(|c| !matches!(c.state, CState::Running { .. }))
            .map(|c| c.name.as_str())
            .collect();
        if all_running {
            set_condition(p, pod_condition("ContainersReady", true, &now, None, None));
            set_condition(p, pod_condition("Ready", true, &now, None, None));
        } else {
            let reason = if all_done {
                "PodCompleted"
            } else {
                "ContainersNotReady"
            };
            let msg = (!all_done)
                .then(|| format!("containers with unready status: [{}]", unready.join(" ")));
            set_condition(
                p,
                pod_condition("ContainersReady", false, &now, Some(reason), msg.as_deref()),
            );
            set_condition(
                p,
                pod_condition("Ready", false, &now, Some(reason), msg.as_deref()),
            );
        }
        if let Some(msg) = evicted {
            p["status"]["reason"] = json!("Evicted");
            p["status"]["message"] = json!(msg);
        }
    });
}

/// What a pod's script (annotations) asks for.
#[derive(Debug, Default, Clone)]
struct Script {
    duration_ms: Option<i64>,
    exit_code: Option<i32>,
    log: Option<String>,
    scenario: Option<String>,
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
            anns.push(job["metadata"]["annotations"].clone());
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

type DeleteRx = watch::Receiver<Option<i64>>;

/// The lifecycle of one bound pod, until it finished (and, when deleted, is gone).
async fn run_pod(
    cluster: &Arc<Cluster>,
    logs: &Arc<LogStore>,
    config: &Arc<KubeletConfig>,
    key: &(String, String),
    ip: &str,
    mut deleted: DeleteRx,
) {
    let Ok(pod) = cluster.get(Kind::Pod, &key.0, &key.1) else {
        return;
    };
    let pod = (*pod).clone();
    let script = script_of(cluster, &pod);
    let names = container_names(&pod, "containers");
    let init_names = container_names(&pod, "initContainers");
    let mut statuses: Vec<CStatus> = names
        .iter()
        .map(|n| CStatus {
            name: n.clone(),
            state: CState::Waiting {
                reason: "ContainerCreating".into(),
                message: None,
            },
            last: None,
            restarts: 0,
            id: String::new(),
        })
        .collect();
    let mut init: Vec<CStatus> = init_names
        .iter()
        .map(|n| CStatus {
            name: n.clone(),
            state: CState::Waiting {
                reason: "PodInitializing".into(),
                message: None,
            },
            last: None,
            restarts: 0,
            id: String::new(),
        })
        .collect();

    // Images: every container's must be in the catalogue (or pass the script).
    let scripted_pull = matches!(
        script.scenario.as_deref(),
        Some("ErrImagePull" | "ImagePullBackOff")
    );
    let missing: Vec<(usize, String)> = names
        .iter()
        .enumerate()
        .filter_map(|(i, n)| {
            let image = container_spec(&pod, n)["image"]
                .as_str()
                .unwrap_or("")
                .to_owned();
            let exists = image_exists(&config.images, &image);
            (!exists || scripted_pull).then_some((i, image))
        })
        .collect();
    if !missing.is_empty() {
        pull_failure_loop(
            cluster,
            config,
            key,
            &pod,
            &mut statuses,
            &missing,
            ip,
            &mut deleted,
        )
        .await;
        finish_deletion(cluster, key, &mut deleted).await;
        return;
    }

    // A scripted scenario is played out the same way in both modes.
    if config.mode == KubeletMode::Simulated || script.scenario.is_some() {
        simulate(
            cluster,
            logs,
            config,
            key,
            &pod,
            &script,
            &mut statuses,
            &mut init,
            ip,
            &mut deleted,
        )
        .await;
    } else {
        run_processes(
            cluster,
            logs,
            config,
            key,
            &pod,
            &mut statuses,
            &mut init,
            ip,
            &mut deleted,
        )
        .await;
    }
    finish_deletion(cluster, key, &mut deleted).await;
}

/// After the containers stopped: a deleted pod goes; otherwise wait for deletion.
async fn finish_deletion(cluster: &Cluster, key: &(String, String), deleted: &mut DeleteRx) {
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

#[allow(clippy::too_many_arguments)]
async fn pull_failure_loop(
    cluster: &Cluster,
    config: &KubeletConfig,
    key: &(String, String),
    pod: &Value,
    statuses: &mut [CStatus],
    missing: &[(usize, String)],
    ip: &str,
    deleted: &mut DeleteRx,
) {
    let mut backoff = config.pull_backoff;
    loop {
        for (i, image) in missing {
            cluster.record_event(
                Kind::Pod,
                pod,
                "Normal",
                "Pulling",
                &format!("Pulling image \"{image}\""),
                "kubelet",
            );
            let msg = format!(
                "failed to pull and unpack image \"{image}\": failed to resolve reference \"{image}\": \
                 {image}: not found"
            );
            cluster.record_event(
                Kind::Pod,
                pod,
                "Warning",
                "Failed",
                &format!("Failed to pull image \"{image}\": {msg}"),
                "kubelet",
            );
            cluster.record_event(
                Kind::Pod,
                pod,
                "Warning",
                "Failed",
                "Error: ErrImagePull",
                "kubelet",
            );
            statuses[*i].state = CState::Waiting {
                reason: "ErrImagePull".into(),
                message: Some(msg),
            };
        }
        publish(cluster, key, statuses, &[], ip, None);
        if wait_or_deleted(backoff.min(Duration::from_millis(500)), deleted).await {
            return;
        }
        for (i, image) in missing {
            let msg = format!("Back-off pulling image \"{image}\"");
            cluster.record_event(Kind::Pod, pod, "Normal", "BackOff", &msg, "kubelet");
            cluster.record_event(
                Kind::Pod,
                pod,
                "Warning",
                "Failed",
                "Error: ImagePullBackOff",
                "kubelet",
            );
            statuses[*i].state = CState::Waiting {
                reason: "ImagePullBackOff".into(),
                message: Some(msg),
            };
        }
        publish(cluster, key, statuses, &[], ip, None);
        if wait_or_deleted(backoff, deleted).await {
            return;
        }
        backoff = (backoff * 2).min(Duration::from_secs(300));
    }
}

/// Sleeps; true when the pod was deleted meanwhile.
async fn wait_or_deleted(d: Duration, deleted: &mut DeleteRx) -> bool {
    if deleted.borrow().is_some() {
        return true;
    }
    tokio::select! {
        () = tokio::time::sleep(d) => deleted.borrow().is_some(),
        r = deleted.changed() => r.is_err() || deleted.borrow().is_some(),
    }
}

fn restart_wanted(pod: &Value, code: i32) -> bool {
    match pod["spec"]["restartPolicy"].as_str().unwrap_or("Always") {
        "Always" => true,
        "OnFailure" => code != 0,
        _ => false,
    }
}

/// Simulated containers on the cluster clock.
#[allow(clippy::too_many_arguments)]
async fn simulate(
    cluster: &Cluster,
    logs: &LogStore,
    config: &KubeletConfig,
    key: &(String, String),
    pod: &Value,
    script: &Script,
    statuses: &mut [CStatus],
    init: &mut [CStatus],
    ip: &str,
    deleted: &mut DeleteRx,
) {
    let scenario = script.scenario.as_deref().unwrap_or("");
    if scenario == "CreateContainerConfigError" {
        for s in statuses.iter_mut() {
            s.state = CState::Waiting {
                reason: "CreateContainerConfigError".into(),
                message: Some("secret \"missing\" not found".into()),
            };
        }
        cluster.record_event(
            Kind::Pod,
            pod,
            "Warning",
            "Failed",
            "Error: secret \"missing\" not found",
            "kubelet",
        );
        publish(cluster, key, statuses, init, ip, None);
        return;
    }
    for s in init.iter_mut() {
        s.state = CState::Terminated {
            code: 0,
            reason: "Completed".into(),
            started: cluster.clock.now_rfc3339(),
            finished: cluster.clock.now_rfc3339(),
            message: None,
        };
    }
    let mut restarts = 0;
    loop {
        let now = cluster.clock.now_rfc3339();
        for s in statuses.iter_mut() {
            s.id = format!("runway://{}-{}-{restarts}", key.1, s.name);
            s.state = CState::Running {
                started: now.clone(),
            };
            logs.open(&key.0, &key.1, &s.name);
            if let Some(text) = &script.log {
                for line in text.lines() {
                    logs.append(
                        &key.0,
                        &key.1,
                        &s.name,
                        cluster.clock.now_ms(),
                        line.to_owned(),
                    );
                }
            }
        }
        publish(cluster, key, statuses, init, ip, None);
        let duration = script.duration_ms.unwrap_or(config.default_duration_ms);
        let end = cluster.clock.now_ms() + duration;
        // Poll the clock: virtual time moves by hand in tests.
        loop {
            if scenario != "Never" && cluster.clock.now_ms() >= end {
                break;
            }
            if wait_or_deleted(config.tick, deleted).await {
                let finished = cluster.clock.now_rfc3339();
                for s in statuses.iter_mut() {
                    if let CState::Running { started } = &s.state {
                        s.state = CState::Terminated {
                            code: 143,
                            reason: "Error".into(),
                            started: started.clone(),
                            finished: finished.clone(),
                            message: None,
                        };
                    }
                    logs.close(&key.0, &key.1, &s.name);
                }
                publish(cluster, key, statuses, init, ip, None);
                return;
            }
        }
        let finished = cluster.clock.now_rfc3339();
        let (code, reason) = match scenario {
            "OOMKilled" => (137, "OOMKilled"),
            "CrashLoopBackOff" => (1, "Error"),
            _ => {
                let c = script.exit_code.unwrap_or(0);
                (c, if c == 0 { "Completed" } else { "Error" })
            }
        };
        if scenario == "Evicted" {
            let msg =
                "The node was low on resource: memory. Threshold quantity: 100Mi, available: 50Mi.";
            for s in statuses.iter_mut() {
                if let CState::Running { started } = &s.state {
                    s.state = CState::Terminated {
                        code: 137,
                        reason: "ContainerStatusUnknown".into(),
                        started: started.clone(),
                        finished: finished.clone(),
                        message: None,
                    };
                }
                logs.close(&key.0, &key.1, &s.name);
            }
            cluster.record_event(Kind::Pod, pod, "Warning", "Evicted", msg, "kubelet");
            publish(cluster, key, statuses, init, ip, Some(msg));
            return;
        }
        for s in statuses.iter_mut() {
            if let CState::Running { started } = &s.state {
                s.state = CState::Terminated {
                    code,
                    reason: reason.into(),
                    started: started.clone(),
                    finished: finished.clone(),
                    message: None,
                };
            }
            logs.close(&key.0, &key.1, &s.name);
        }
        let restart = restart_wanted(pod, code) || scenario == "CrashLoopBackOff";
        if !restart {
            publish(cluster, key, statuses, init, ip, None);
            return;
        }
        restarts += 1;
        if crash_loop_back_off(
            cluster, config, key, pod, statuses, init, ip, restarts, deleted,
        )
        .await
        {
            return;
        }
    }
}

/// Resolves a container's environment as the kubelet does. An error is a
/// CreateContainerConfigError message.
fn resolve_env(
    cluster: &Cluster,
    pod: &Value,
    ctr: &Value,
) -> Result<Vec<(String, String)>, String> {
    let (ns, name) = ns_name(pod);
    let mut out: Vec<(String, String)> = Vec::new();
    let set = |k: String, v: String, out: &mut Vec<(String, String)>| {
        out.retain(|(x, _)| *x != k);
        out.push((k, v));
    };
    for from in ctr["envFrom"].as_array().into_iter().flatten() {
        let prefix = from["prefix"].as_str().unwrap_or("");
        let (kind, r) = if from.get("configMapRef").is_some() {
            (Kind::ConfigMap, &from["configMapRef"])
        } else {
            (Kind::Secret, &from["secretRef"])
        };
        let ref_name = r["name"].as_str().unwrap_or("");
        match cluster.get(kind, &ns, ref_name) {
            Ok(obj) => {
                for (k, v) in data_of(kind, &obj) {
                    set(format!("{prefix}{k}"), v, &mut out);
                }
            }
            Err(_) if r["optional"] == true => {}
            Err(_) => {
                let what = if kind == Kind::Secret {
                    "secret"
                } else {
                    "configmap"
                };
                return Err(format!("{what} \"{ref_name}\" not found"));
            }
        }
    }
    for e in ctr["env"].as_array().into_iter().flatten() {
        let Some(k) = e["name"].as_str() else {
            continue;
        };
        if let Some(v) = e.get("value") {
            set(
                k.to_owned(),
                expand(v.as_str().unwrap_or(""), &out),
                &mut out,
            );
            continue;
        }
        let vf = &e["valueFrom"];
        let value = if let Some(f) = vf["fieldRef"]["fieldPath"].as_str() {
            Some(match f {
                "metadata.name" => name.clone(),
                "metadata.namespace" => ns.clone(),
                "metadata.uid" => pod["metadata"]["uid"].as_str().unwrap_or("").to_owned(),
                "spec.nodeName" => pod["spec"]["nodeName"].as_str().unwrap_or("").to_owned(),
                "spec.serviceAccountName" => pod["spec"]["serviceAccountName"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned(),
                "status.podIP" => pod["status"]["podIP"].as_str().unwrap_or("").to_owned(),
                "status.hostIP" => pod["status"]["hostIP"].as_str().unwrap_or("").to_owned(),
                other => {
                    if let Some(l) = other
                        .strip_prefix("metadata.labels['")
                        .and_then(|s| s.strip_suffix("']"))
                    {
                        pod["metadata"]["labels"][l]
                            .as_str()
                            .unwrap_or("")
                            .to_owned()
                    } else if let Some(a) = other
                        .strip_prefix("metadata.annotations['")
                        .and_then(|s| s.strip_suffix("']"))
                    {
                        pod["metadata"]["annotations"][a]
                            .as_str()
                            .unwrap_or("")
                            .to_owned()
                    } else {
                        return Err(format!("unsupported fieldPath {other}"));
                    }
                }
            })
        } else {
            let (kind, r) = if vf.get("secretKeyRef").is_some() {
                (Kind::Secret, &vf["secretKeyRef"])
            } else if vf.get("configMapKeyRef").is_some() {
                (Kind::ConfigMap, &vf["configMapKeyRef"])
            } else {
                (Kind::ConfigMap, &Value::Null)
            };
            if r.is_null() {
                None
            } else {
                let ref_name = r["name"].as_str().unwrap_or("");
                let ref_key = r["key"].as_str().unwrap_or("");
                let optional = r["optional"] == true;
                let what = if kind == Kind::Secret {
                    "secret"
                } else {
                    "configmap"
                };
                match cluster.get(kind, &ns, ref_name) {
                    Ok(obj) => match data_of(kind, &obj).into_iter().find(|(k, _)| k == ref_key) {
                        Some((_, v)) => Some(v),
                        None if optional => None,
                        None => {
                            let kind_name = if kind == Kind::Secret {
                                "Secret"
                            } else {
                                "ConfigMap"
                            };
                            return Err(format!(
                                "couldn't find key {ref_key} in {kind_name} {ns}/{ref_name}"
                            ));
                        }
                    },
                    Err(_) if optional => None,
                    Err(_) => return Err(format!("{what} \"{ref_name}\" not found")),
                }
            }
        };
        if let Some(v) = value {
            set(k.to_owned(), v, &mut out);
        }
    }
    Ok(out)
}

/// `$(VAR)` references to earlier variables, as the kubelet expands them.
fn expand(value: &str, env: &[(String, String)]) -> String {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(at) = rest.find("$(") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        match after.find(')') {
            Some(end) => {
                let name = &after[..end];
                match env.iter().rev().find(|(k, _)| k == name) {
                    Some((_, v)) => out.push_str(v),
                    None => {
                        out.push_str("$(");
                        out.push_str(name);
                        out.push(')');
                    }
                }
                rest = &after[end + 1..];
            }
            None => {
                out.push_str(&rest[at..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

fn data_of(kind: Kind, obj: &Value) -> Vec<(String, String)> {
    use base64::Engine as _;
    let mut out = Vec::new();
    if let Some(d) = obj["data"].as_object() {
        for (k, v) in d {
            let s = v.as_str().unwrap_or("");
            let value = if kind == Kind::Secret {
                base64::engine::general_purpose::STANDARD
                    .decode(s)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .unwrap_or_default()
            } else {
                s.to_owned()
            };
            out.push((k.clone(), value));
        }
    }
    if let Some(d) = obj["stringData"].as_object() {
        for (k, v) in d {
            out.push((k.clone(), v.as_str().unwrap_or("").to_owned()));
        }
    }
    out
}

/// One container process: the pid of its group and how it ended.
#[derive(Debug)]
struct Exit {
    code: i32,
    oom: bool,
}

/// Real processes for each container.
#[allow(clippy::too_many_arguments)]
async fn run_processes(
    cluster: &Arc<Cluster>,
    logs: &Arc<LogStore>,
    config: &Arc<KubeletConfig>,
    key: &(String, String),
    pod: &Value,
    statuses: &mut [CStatus],
    init: &mut [CStatus],
    ip: &str,
    deleted: &mut DeleteRx,
) {
    // Env needs the pod as bound (nodeName, IPs).
    let bound = cluster
        .get(Kind::Pod, &key.0, &key.1)
        .map(|p| (*p).clone())
        .unwrap_or_else(|_| pod.clone());
    let mut bound = bound;
    bound["status"]["podIP"] = json!(ip);
    let pod_dir = config.root.join(&key.0).join(&key.1);
    let _ = std::fs::create_dir_all(&pod_dir);

    // Init containers, one after the other.
    for i in 0..init.len() {
        let name = init[i].name.clone();
        let ctr = container_spec(&bound, &name).clone();
        let env = match resolve_env(cluster, &bound, &ctr) {
            Ok(env) => env,
            Err(msg) => {
                config_error(cluster, key, pod, statuses, init, ip, &msg, deleted).await;
                return;
            }
        };
        let started = cluster.clock.now_rfc3339();
        init[i].state = CState::Running {
            started: started.clone(),
        };
        publish(cluster, key, statuses, init, ip, None);
        let exit = run_one(
            cluster,
            logs,
            config,
            key,
            &ctr,
            &env,
            &pod_dir,
            deleted.clone(),
        )
        .await;
        init[i].state = terminated(cluster, &exit, started);
        if exit.code != 0 {
            publish(cluster, key, statuses, init, ip, None);
            return;
        }
    }

    let mut envs = Vec::new();
    for s in statuses.iter() {
        let ctr = container_spec(&bound, &s.name).clone();
        match resolve_env(cluster, &bound, &ctr) {
            Ok(env) => envs.push((ctr, env)),
            Err(msg) => {
                config_error(cluster, key, pod, statuses, init, ip, &msg, deleted).await;
                return;
            }
        }
    }
    let mut restarts = 0;
    loop {
        let started = cluster.clock.now_rfc3339();
        let (done_tx, mut done_rx) = tokio::sync::mpsc::channel(envs.len().max(1));
        for (i, (ctr, env)) in envs.iter().enumerate() {
            statuses[i].state = CState::Running {
                started: started.clone(),
            };
            statuses[i].id = format!("runway://{}-{}-{restarts}", key.1, statuses[i].name);
            let (c, l, cfg, k) = (cluster.clone(), logs.clone(), config.clone(), key.clone());
            let (spec, env, dir, del) =
                (ctr.clone(), env.clone(), pod_dir.clone(), deleted.clone());
            let done_tx = done_tx.clone();
            tokio::spawn(async move {
                let exit = run_one(&c, &l, &cfg, &k, &spec, &env, &dir, del).await;
                let _ = done_tx.send((i, exit)).await;
            });
            let name = statuses[i].name.clone();
            let image = ctr["image"].as_str().unwrap_or("");
            let pulled = format!("Container image \"{image}\" already present on machine");
            cluster_event(cluster, pod, "Pulled", &pulled);
            cluster_event(
                cluster,
                pod,
                "Created",
                &format!("Created container: {name}"),
            );
            cluster_event(
                cluster,
                pod,
                "Started",
                &format!("Started container {name}"),
            );
        }
        drop(done_tx);
        publish(cluster, key, statuses, init, ip, None);
        // Each container's end is published as it happens.
        let mut any_failed = false;
        while let Some((idx, exit)) = done_rx.recv().await {
            any_failed |= exit.code != 0;
            statuses[idx].state = terminated(cluster, &exit, started.clone());
            publish(cluster, key, statuses, init, ip, None);
        }
        let deleting = deleted.borrow().is_some();
        if deleting || !restart_wanted(pod, if any_failed { 1 } else { 0 }) {
            return;
        }
        restarts += 1;
        if crash_loop_back_off(
            cluster, config, key, pod, statuses, init, ip, restarts, deleted,
        )
        .await
        {
            return;
        }
    }
}

/// Every container waits in CrashLoopBackOff (10 s doubling to five minutes on
/// a real node, from `pull_backoff` here) before the restart; true when the
/// pod was deleted meanwhile.
#[allow(clippy::too_many_arguments)]
async fn crash_loop_back_off(
    cluster: &Cluster,
    config: &KubeletConfig,
    key: &(String, String),
    pod: &Value,
    statuses: &mut [CStatus],
    init: &[CStatus],
    ip: &str,
    restarts: i64,
    deleted: &mut DeleteRx,
) -> bool {
    let shift = (restarts - 1).clamp(0, 5);
    for s in statuses.iter_mut() {
        s.last = Some(render_status(pod, s)["state"].clone());
        s.restarts = restarts;
        s.state = CState::Waiting {
            reason: "CrashLoopBackOff".into(),
            message: Some(format!(
                "back-off {}s restarting failed container={} pod={}_{}",
                10 << shift,
                s.name,
                key.1,
                key.0
            )),
        };
    }
    cluster.record_event(
        Kind::Pod,
        pod,
        "Warning",
        "BackOff",
        "Back-off restarting failed container",
        "kubelet",
    );
    publish(cluster, key, statuses, init, ip, None);
    let back = (config.pull_backoff * (1 << shift)).min(Duration::from_secs(300));
    wait_or_deleted(back, deleted).await
}

fn cluster_event(cluster: &Cluster, pod: &Value, reason: &str, message: &str) {
    cluster.record_event(Kind::Pod, pod, "Normal", reason, message, "kubelet");
}

fn terminated(cluster: &Cluster, exit: &Exit, started: String) -> CState {
    let reason = if exit.oom {
        "OOMKilled"
    } else if exit.code == 0 {
        "Completed"
    } else {
        "Error"
    };
    CState::Terminated {
        code: exit.code,
        reason: reason.into(),
        started,
        finished: cluster.clock.now_rfc3339(),
        message: None,
    }
}

#[allow(clippy::too_many_arguments)]
async fn config_error(
    cluster: &Cluster,
    key: &(String, String),
    pod: &Value,
    statuses: &mut [CStatus],
    init: &mut [CStatus],
    ip: &str,
    msg: &str,
    deleted: &mut DeleteRx,
) {
    for s in statuses.iter_mut() {
        s.state = CState::Waiting {
            reason: "CreateContainerConfigError".into(),
            message: Some(msg.to_owned()),
        };
    }
    cluster.record_event(
        Kind::Pod,
        pod,
        "Warning",
        "Failed",
        &format!("Error: {msg}"),
        "kubelet",
    );
    publish(cluster, key, statuses, init, ip, None);
    // The real kubelet keeps retrying; the pod stays Pending until deleted.
    while !wait_or_deleted(Duration::from_secs(3600), deleted).await {}
}

/// Runs one container's process group to its end.
#[allow(clippy::too_many_arguments)]
async fn run_one(
    cluster: &Cluster,
    logs: &Arc<LogStore>,
    config: &KubeletConfig,
    key: &(String, String),
    ctr: &Value,
    env: &[(String, String)],
    pod_dir: &std::path::Path,
    mut deleted: DeleteRx,
) -> Exit {
    let name = ctr["name"].as_str().unwrap_or("").to_owned();
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(|s| expand(s, env)))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut argv = strings(&ctr["command"]);
    argv.extend(strings(&ctr["args"]));
    let log = |line: String| logs.append(&key.0, &key.1, &name, cluster.clock.now_ms(), line);
    if argv.is_empty() {
        // No image entrypoint exists to fall back on.
        log(
            "runway dev-cluster: the container has no command (images have no entrypoint here)"
                .into(),
        );
        logs.close(&key.0, &key.1, &name);
        return Exit {
            code: 127,
            oom: false,
        };
    }
    let dir = match ctr["workingDir"].as_str() {
        Some(d) if std::path::Path::new(d).is_dir() => PathBuf::from(d),
        _ => pod_dir.to_path_buf(),
    };
    let mut cmd = tokio::process::Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .env_clear()
        .envs(config.base_env.iter().cloned())
        .env("HOSTNAME", &key.1)
        .envs(env.iter().cloned())
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            log(format!("exec {}: {e}", argv[0]));
            logs.close(&key.0, &key.1, &name);
            return Exit {
                code: 128,
                oom: false,
            };
        }
    };
    let pid = child.id().unwrap_or(0);
    let mut readers = Vec::new();
    if let Some(out) = child.stdout.take() {
        readers.push(spawn_reader(
            out,
            cluster.clock.clone(),
            logs.clone(),
            key.clone(),
            name.clone(),
        ));
    }
    if let Some(err) = child.stderr.take() {
        readers.push(spawn_reader(
            err,
            cluster.clock.clone(),
            logs.clone(),
            key.clone(),
            name.clone(),
        ));
    }
    let limit = ctr["resources"]["limits"]
        .get("memory")
        .and_then(|q| parse_quantity(q, false));
    let mut oom = false;
    let mut term_sent = false;
    let mut kill_at: Option<i64> = None;
    let status = loop {
        tokio::select! {
            s = child.wait() => break s,
            () = tokio::time::sleep(Duration::from_millis(100)) => {
                if let Some(l) = limit {
                    if group_rss(pid) > l {
                        oom = true;
                        signal_group(pid, "KILL");
                    }
                }
                if kill_at.is_some_and(|t| cluster.clock.now_ms() >= t) {
                    signal_group(pid, "KILL");
                }
            }
            r = deleted.changed(), if !term_sent => {
                if r.is_err() {
                    signal_group(pid, "KILL");
                    term_sent = true;
                    continue;
                }
                if let Some(deadline) = *deleted.borrow() {
                    term_sent = true;
                    signal_group(pid, "TERM");
                    kill_at = Some(deadline);
                }
            }
        }
    };
    // Whatever the group left behind goes with the container.
    signal_group(pid, "KILL");
    for r in readers {
        let _ = r.await;
    }
    logs.close(&key.0, &key.1, &name);
    let code = match status {
        Ok(s) => s.code().unwrap_or_else(|| {
            use std::os::unix::process::ExitStatusExt;
            128 + s.signal().unwrap_or(9)
        }),
        Err(_) => 128,
    };
    Exit {
        code: if oom { 137 } else { code },
        oom,
    }
}

fn spawn_reader(
    stream: impl AsyncRead + Unpin + Send + 'static,
    clock: super::clock::Clock,
    logs: Arc<LogStore>,
    key: (String, String),
    name: String,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            logs.append(&key.0, &key.1, &name, clock.now_ms(), line);
        }
    })
}

/// Signals a process group through kill(1): the crate forbids unsafe code.
fn signal_group(pid: u32, signal: &str) {
    if pid == 0 {
        return;
    }
    let _ = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg("--")
        .arg(format!("-{pid}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Resident memory of every process in the group, in bytes.
fn group_rss(pgid: u32) -> i64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut total = 0;
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Fields after the parenthesised command: state ppid pgrp ...
        let Some(after) = stat.rsplit_once(')').map(|(_, a)| a) else {
            continue;
        };
        let fields: Vec<&str> = after.split_whitespace().collect();
        if fields.get(2).and_then(|g| g.parse::<u32>().ok()) != Some(pgid) {
            continue;
        }
        // rss (pages) is field 24 of stat, index 21 after the command.
        if let Some(pages) = fields.get(21).and_then(|p| p.parse::<i64>().ok()) {
            total += pages * 4096;
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("*", "anything:1"));
        assert!(glob_match(
            "docker.io/*:1.*",
            "docker.io/dagster/user-code:1.13"
        ));
        assert!(!glob_match("docker.io/*:1.*", "ghcr.io/x:1.2"));
        assert!(glob_match("exact", "exact"));
        assert!(!glob_match("exact", "exactly"));
    }

    #[test]
    fn catalogue_last_match_wins() {
        let cat = vec![
            "*".to_owned(),
            "!*.invalid/*".to_owned(),
            "ok.invalid/x:1".to_owned(),
        ];
        assert!(image_exists(&cat, "busybox:1.36"));
        assert!(!image_exists(&cat, "registry.invalid/nope:1"));
        assert!(image_exists(&cat, "ok.invalid/x:1"));
        assert!(!image_exists(&[], "busybox"));
    }

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity(&json!("300m"), true), Some(300));
        assert_eq!(parse_quantity(&json!("2"), true), Some(2000));
        assert_eq!(parse_quantity(&json!(1), true), Some(1000));
        assert_eq!(parse_quantity(&json!("2048Mi"), false), Some(2048 << 20));
        assert_eq!(parse_quantity(&json!("1G"), false), Some(1_000_000_000));
        assert_eq!(parse_quantity(&json!("1e3"), false), Some(1000));
        assert_eq!(parse_quantity(&json!("bogus"), false), None);
    }

    #[test]
    fn affinity_and_selector() {
        let node = NodeConfig::new("devmaster2");
        let aff = |op: &str, vals: &[&str]| {
            json!({"spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
                {"nodeSelectorTerms": [{"matchExpressions": [
                    {"key": "kubernetes.io/hostname", "operator": op, "values": vals}]}]}}}}})
        };
        assert!(node_matches(
            &aff("In", &["devmaster1", "devmaster2"]),
            &node
        ));
        assert!(!node_matches(&aff("In", &["devmaster1"]), &node));
        assert!(node_matches(&aff("NotIn", &["devmaster1"]), &node));
        assert!(node_matches(&aff("Exists", &[]), &node));
        assert!(!node_matches(&aff("DoesNotExist", &[]), &node));
        assert!(node_matches(
            &json!({"spec": {"nodeSelector": {"kubernetes.io/os": "linux"}}}),
            &node
        ));
        assert!(!node_matches(
            &json!({"spec": {"nodeSelector": {"disk": "ssd"}}}),
            &node
        ));
        assert!(node_matches(&json!({"spec": {}}), &node));
    }

    #[test]
    fn env_expansion() {
        let env = vec![("A".to_owned(), "1".to_owned())];
        assert_eq!(expand("x-$(A)-$(B)", &env), "x-1-$(B)");
        assert_eq!(expand("$(A", &env), "$(A");
    }
}
