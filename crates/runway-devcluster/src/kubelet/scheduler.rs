//! The scheduler: binds pending pods to nodes that match their nodeSelector
//! and required node affinity and have room for their requests, in arrival
//! order; a pod that fits nowhere stays Pending with PodScheduled=False and a
//! FailedScheduling event.

use std::collections::{BTreeMap, HashMap};

use serde_json::{json, Value};
use tokio::sync::watch;

use super::pod::run_pod;
use super::status::{container_names, pod_condition, set_condition, waiting_status};
use super::{Kubelet, KubeletConfig, NodeConfig, PodKey, State};
use crate::api::{ns_name, Cluster};
use crate::validate::Kind;

/// What a bound, unfinished pod holds on its node.
#[derive(Debug)]
pub(super) struct Bound {
    node: String,
    cpu: i64,
    mem: i64,
}

/// What the bound pods of one node hold.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Usage {
    cpu: i64,
    mem: i64,
    pods: i64,
}

/// How many nodes were passed over for each reason, for the
/// FailedScheduling message.
#[derive(Debug, Default)]
struct Misses {
    affinity: usize,
    cpu: usize,
    mem: usize,
    pods: usize,
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

/// Places every pending pod it can, oldest first, and starts it.
pub(super) fn schedule(kubelet: &Kubelet, state: &mut State) {
    if state.pending.is_empty() {
        return;
    }
    let queue: Vec<(u64, PodKey)> = std::mem::take(&mut state.pending).into_iter().collect();
    for (seq, key) in queue {
        let Ok(pod) = kubelet.cluster.get(Kind::Pod, &key.0, &key.1) else {
            continue;
        };
        if pod.deleting() {
            continue;
        }
        let rev = pod.rev();
        let pod = pod.value();
        let (cpu, mem) = requests(&pod);
        match choose_node(&kubelet.config, &state.usage, &pod, cpu, mem) {
            Ok(node) => {
                start(kubelet, state, key, (rev, pod), Bound { node, cpu, mem });
            }
            Err(misses) => {
                let message = unschedulable_message(kubelet.config.nodes.len(), &misses);
                if state.unschedulable.get(&key) != Some(&message) {
                    mark_unschedulable(&kubelet.cluster, &pod, &message);
                    state.unschedulable.insert(key.clone(), message);
                }
                state.pending.insert(seq, key);
            }
        }
    }
}

/// A pod stops holding room on its node (finished or deleted). The usage
/// per node is kept as pods bind and release: summing every bound pod on
/// each scheduling pass grew with the pods running.
pub(super) fn release(state: &mut State, key: &PodKey) {
    if let Some(b) = state.bound.remove(key) {
        if let Some(u) = state.usage.get_mut(&b.node) {
            u.cpu -= b.cpu;
            u.mem -= b.mem;
            u.pods -= 1;
        }
    }
}

/// The node for a pod with these requests, or why none fits.
fn choose_node(
    config: &KubeletConfig,
    used: &HashMap<String, Usage>,
    pod: &Value,
    cpu: i64,
    mem: i64,
) -> Result<String, Misses> {
    let mut misses = Misses::default();
    let mut chosen: Option<(&str, i64)> = None;
    for node in &config.nodes {
        if !node_matches(pod, node) {
            misses.affinity += 1;
            continue;
        }
        let u = used.get(&node.name).copied().unwrap_or_default();
        let mut fits = true;
        if u.cpu + cpu > node.cpu_millis {
            misses.cpu += 1;
            fits = false;
        }
        if u.mem + mem > node.memory_bytes {
            misses.mem += 1;
            fits = false;
        }
        if u.pods + 1 > node.max_pods {
            misses.pods += 1;
            fits = false;
        }
        // Least allocated by pod count: spreads pods as the default scheduler tends to.
        if fits && chosen.is_none_or(|(_, c)| u.pods < c) {
            chosen = Some((&node.name, u.pods));
        }
    }
    chosen.map(|(name, _)| name.to_owned()).ok_or(misses)
}

/// Binds a placed pod (as parsed at its revision) and hands it, as bound,
/// to a task of its own.
fn start(kubelet: &Kubelet, state: &mut State, key: PodKey, pod: (u64, Value), bound: Bound) {
    let node = bound.node.clone();
    state.unschedulable.remove(&key);
    let u = state.usage.entry(node.clone()).or_default();
    u.cpu += bound.cpu;
    u.mem += bound.mem;
    u.pods += 1;
    if let Some(old) = state.bound.insert(key.clone(), bound) {
        // Bound twice (never expected): the earlier placement's room goes.
        if let Some(u) = state.usage.get_mut(&old.node) {
            u.cpu -= old.cpu;
            u.mem -= old.mem;
            u.pods -= 1;
        }
    }
    state.next_ip += 1;
    let ip = format!(
        "10.244.{}.{}",
        (state.next_ip >> 8) & 0xff,
        state.next_ip & 0xff
    );
    let host_ip = node_ip(&kubelet.config, &node);
    let bound = bind(&kubelet.cluster, pod, &node, &host_ip);
    let (tx, rx) = watch::channel(None);
    state.running.insert(key.clone(), tx);
    tokio::spawn(run_pod(kubelet.clone(), key, ip, bound, rx));
}

/// The default scheduler's FailedScheduling message.
fn unschedulable_message(total: usize, misses: &Misses) -> String {
    let mut reasons = Vec::new();
    if misses.cpu > 0 {
        reasons.push(format!("{} Insufficient cpu", misses.cpu));
    }
    if misses.mem > 0 {
        reasons.push(format!("{} Insufficient memory", misses.mem));
    }
    if misses.pods > 0 {
        reasons.push(format!("{} Too many pods", misses.pods));
    }
    if misses.affinity > 0 {
        reasons.push(format!(
            "{} node(s) didn't match Pod's node affinity/selector",
            misses.affinity
        ));
    }
    format!(
        "0/{total} nodes are available: {}. preemption: 0/{total} nodes are available: \
         {total} Preemption is not helpful for scheduling.",
        reasons.join(", ")
    )
}

fn node_ip(config: &KubeletConfig, node: &str) -> String {
    let i = config
        .nodes
        .iter()
        .position(|n| n.name == node)
        .unwrap_or(0);
    format!("192.0.2.{}", i + 10)
}

fn mark_unschedulable(cluster: &Cluster, pod: &Value, message: &str) {
    let (ns, name) = ns_name(pod);
    let now = cluster.clock.now_rfc3339();
    let _ = cluster.update_status_with(Kind::Pod, &ns, &name, |p| {
        let before = p["status"]["conditions"].clone();
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
        p["status"]["conditions"] != before
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

/// Sets the pod's node and its status as bound; the pod as written.
fn bind(
    cluster: &Cluster,
    (rev, pod): (u64, Value),
    node: &str,
    host_ip: &str,
) -> Option<(u64, Value)> {
    let (ns, name) = ns_name(&pod);
    let now = cluster.clock.now_rfc3339();
    let containers = container_names(&pod, "containers");
    let init = container_names(&pod, "initContainers");
    let bound = cluster.update_status_kept(Kind::Pod, &ns, &name, Some((rev, pod)), |p| {
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
        // A new nodeName and startTime.
        true
    });
    let bound = bound.ok()?;
    let message = format!("Successfully assigned {ns}/{name} to {node}");
    cluster.record_event(
        Kind::Pod,
        &bound.1,
        "Normal",
        "Scheduled",
        &message,
        "default-scheduler",
    );
    Some(bound)
}
