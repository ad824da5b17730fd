//! Simulated containers: nothing runs; each container "runs" for its
//! script's duration on the cluster clock (virtual in tests) and exits with
//! its script's code, or plays out a scripted failure.

use super::pod::{crash_loop_back_off, restart_wanted, wait_or_deleted};
use super::pod::{Containers, DeleteRx, PodRun, Script};
use super::status::CState;

const EVICTION_MESSAGE: &str =
    "The node was low on resource: memory. Threshold quantity: 100Mi, available: 50Mi.";

/// Plays the pod's containers out until they end for good or the pod is deleted.
pub(super) async fn simulate(
    run: &PodRun,
    script: &Script,
    c: &mut Containers,
    deleted: &mut DeleteRx,
) {
    let scenario = script.scenario.as_deref().unwrap_or("");
    if scenario == "CreateContainerConfigError" {
        missing_secret(run, c);
        return;
    }
    complete_init(run, c);
    let mut restarts = 0;
    loop {
        start(run, script, c, restarts);
        let duration = script
            .duration_ms
            .unwrap_or(run.kubelet.config.default_duration_ms);
        let end = run.cluster().clock.now_ms() + duration;
        if run_until(run, scenario, end, deleted).await {
            // Deleted while running: SIGTERM's exit code.
            stop(run, c, 143, "Error");
            run.publish(&c.main, &c.init, None);
            return;
        }
        if scenario == "Evicted" {
            stop(run, c, 137, "ContainerStatusUnknown");
            run.event("Warning", "Evicted", EVICTION_MESSAGE);
            run.publish(&c.main, &c.init, Some(EVICTION_MESSAGE));
            return;
        }
        let (code, reason) = exit_of(scenario, script);
        stop(run, c, code, reason);
        let restart = restart_wanted(&run.pod, code) || scenario == "CrashLoopBackOff";
        if !restart {
            run.publish(&c.main, &c.init, None);
            return;
        }
        restarts += 1;
        if crash_loop_back_off(run, c, restarts, deleted).await {
            return;
        }
    }
}

fn missing_secret(run: &PodRun, c: &mut Containers) {
    for s in c.main.iter_mut() {
        s.state = CState::Waiting {
            reason: "CreateContainerConfigError".into(),
            message: Some("secret \"missing\" not found".into()),
        };
    }
    run.event("Warning", "Failed", "Error: secret \"missing\" not found");
    run.publish(&c.main, &c.init, None);
}

fn complete_init(run: &PodRun, c: &mut Containers) {
    let clock = &run.cluster().clock;
    for s in c.init.iter_mut() {
        s.state = CState::Terminated {
            code: 0,
            reason: "Completed".into(),
            started: clock.now_rfc3339(),
            finished: clock.now_rfc3339(),
            message: None,
        };
    }
}

/// Every container Running, with its scripted log written at once.
fn start(run: &PodRun, script: &Script, c: &mut Containers, restarts: i64) {
    let (cluster, logs, (ns, pod)) = (run.cluster(), &run.kubelet.logs, &run.key);
    let now = cluster.clock.now_rfc3339();
    for s in c.main.iter_mut() {
        s.id = format!("runway://{pod}-{}-{restarts}", s.name);
        s.state = CState::Running {
            started: now.clone(),
        };
        logs.open(ns, pod, &s.name);
        for line in script.log.iter().flat_map(|text| text.lines()) {
            logs.append(ns, pod, &s.name, cluster.clock.now_ms(), line.to_owned());
        }
    }
    run.publish(&c.main, &c.init, None);
}

/// Waits until the clock reaches `end` (never for the `Never` scenario);
/// true when the pod was deleted first.
async fn run_until(run: &PodRun, scenario: &str, end: i64, deleted: &mut DeleteRx) -> bool {
    // Poll the clock: virtual time moves by hand in tests.
    loop {
        if scenario != "Never" && run.cluster().clock.now_ms() >= end {
            return false;
        }
        if wait_or_deleted(run.kubelet.config.tick, deleted).await {
            return true;
        }
    }
}

/// The exit code and reason a finished run ends with.
fn exit_of(scenario: &str, script: &Script) -> (i32, &'static str) {
    match scenario {
        "OOMKilled" => (137, "OOMKilled"),
        "CrashLoopBackOff" => (1, "Error"),
        _ => {
            let code = script.exit_code.unwrap_or(0);
            (code, if code == 0 { "Completed" } else { "Error" })
        }
    }
}

/// Every running container terminates with `code` and `reason`; its log ends.
fn stop(run: &PodRun, c: &mut Containers, code: i32, reason: &str) {
    let finished = run.cluster().clock.now_rfc3339();
    let (ns, pod) = &run.key;
    for s in c.main.iter_mut() {
        if let CState::Running { started } = &s.state {
            s.state = CState::Terminated {
                code,
                reason: reason.into(),
                started: started.clone(),
                finished: finished.clone(),
                message: None,
            };
        }
        run.kubelet.logs.close(ns, pod, &s.name);
    }
}
