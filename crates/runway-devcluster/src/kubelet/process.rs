//! Containers as local processes: one process group per container, with the
//! container's environment and working dir; stdout and stderr become its
//! log; a memory limit is enforced by watching the group's RSS; deletion
//! sends SIGTERM, then SIGKILL when the grace period ends.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Child;

use super::env::{expand, resolve_env};
use super::pod::{config_error, crash_loop_back_off, restart_wanted};
use super::pod::{Containers, DeleteRx, PodRun};
use super::scheduler::parse_quantity;
use super::status::{container_spec, CState};
use super::{Kubelet, PodKey};
use crate::clock::Clock;
use crate::validate::Kind;

/// How one container process ended.
#[derive(Debug)]
struct Exit {
    code: i32,
    oom: bool,
}

/// One container process to run, with everything its task owns.
#[derive(Debug, Clone)]
struct Launch {
    kubelet: Kubelet,
    key: PodKey,
    spec: Value,
    env: Vec<(String, String)>,
    /// Where it runs when its workingDir does not exist here.
    pod_dir: PathBuf,
}

/// Runs the init containers one after the other, then the containers
/// together, restarting them as the restartPolicy says, until they end for
/// good or the pod is deleted.
pub(super) async fn run_processes(run: &PodRun, c: &mut Containers, deleted: &mut DeleteRx) {
    // Env needs the pod as bound (nodeName, IPs).
    let mut bound = run
        .cluster()
        .get(Kind::Pod, &run.key.0, &run.key.1)
        .map(|p| p.value())
        .unwrap_or_else(|_| run.pod.clone());
    bound["status"]["podIP"] = json!(run.ip);
    let pod_dir = run.kubelet.config.root.join(&run.key.0).join(&run.key.1);
    let _ = std::fs::create_dir_all(&pod_dir);
    let launch = |spec: Value, env: Vec<(String, String)>| Launch {
        kubelet: run.kubelet.clone(),
        key: run.key.clone(),
        spec,
        env,
        pod_dir: pod_dir.clone(),
    };

    // Init containers, one after the other.
    for i in 0..c.init.len() {
        let spec = container_spec(&bound, &c.init[i].name).clone();
        let env = match resolve_env(run.cluster(), &bound, &spec) {
            Ok(env) => env,
            Err(msg) => return config_error(run, c, &msg, deleted).await,
        };
        let started = run.cluster().clock.now_rfc3339();
        c.init[i].state = CState::Running {
            started: started.clone(),
        };
        run.publish(&c.main, &c.init, None);
        let exit = run_one(&launch(spec, env), deleted.clone()).await;
        c.init[i].state = terminated(&run.cluster().clock, &exit, started);
        if exit.code != 0 {
            run.publish(&c.main, &c.init, None);
            return;
        }
    }

    let mut launches = Vec::new();
    for s in &c.main {
        let spec = container_spec(&bound, &s.name).clone();
        match resolve_env(run.cluster(), &bound, &spec) {
            Ok(env) => launches.push(launch(spec, env)),
            Err(msg) => return config_error(run, c, &msg, deleted).await,
        }
    }
    let mut restarts = 0;
    loop {
        let any_failed = run_containers(run, &launches, c, restarts, deleted).await;
        let deleting = deleted.borrow().is_some();
        if deleting || !restart_wanted(&run.pod, if any_failed { 1 } else { 0 }) {
            return;
        }
        restarts += 1;
        if crash_loop_back_off(run, c, restarts, deleted).await {
            return;
        }
    }
}

/// Starts every container at once and publishes each end as it happens;
/// true when any of them failed.
async fn run_containers(
    run: &PodRun,
    launches: &[Launch],
    c: &mut Containers,
    restarts: i64,
    deleted: &DeleteRx,
) -> bool {
    let started = run.cluster().clock.now_rfc3339();
    let (done_tx, mut done_rx) = tokio::sync::mpsc::channel(launches.len().max(1));
    for (i, launch) in launches.iter().enumerate() {
        let status = &mut c.main[i];
        status.state = CState::Running {
            started: started.clone(),
        };
        status.id = format!("runway://{}-{}-{restarts}", run.key.1, status.name);
        let (launch, del, done_tx) = (launch.clone(), deleted.clone(), done_tx.clone());
        tokio::spawn(async move {
            let exit = run_one(&launch, del).await;
            let _ = done_tx.send((i, exit)).await;
        });
        let name = &status.name;
        let image = launch_image(&launches[i]);
        let pulled = format!("Container image \"{image}\" already present on machine");
        run.event("Normal", "Pulled", &pulled);
        run.event("Normal", "Created", &format!("Created container: {name}"));
        run.event("Normal", "Started", &format!("Started container {name}"));
    }
    drop(done_tx);
    run.publish(&c.main, &c.init, None);
    let mut any_failed = false;
    while let Some((idx, exit)) = done_rx.recv().await {
        any_failed |= exit.code != 0;
        c.main[idx].state = terminated(&run.cluster().clock, &exit, started.clone());
        run.publish(&c.main, &c.init, None);
    }
    any_failed
}

fn launch_image(launch: &Launch) -> &str {
    launch.spec["image"].as_str().unwrap_or("")
}

fn terminated(clock: &Clock, exit: &Exit, started: String) -> CState {
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
        finished: clock.now_rfc3339(),
        message: None,
    }
}

/// Runs one container's process group to its end.
async fn run_one(launch: &Launch, deleted: DeleteRx) -> Exit {
    let (logs, clock) = (&launch.kubelet.logs, &launch.kubelet.cluster.clock);
    let (ns, pod) = &launch.key;
    let name = launch.spec["name"].as_str().unwrap_or("").to_owned();
    let log = |line: String| logs.append(ns, pod, &name, clock.now_ms(), line);
    let failed = |code| {
        logs.close(ns, pod, &name);
        Exit { code, oom: false }
    };
    let argv = argv(&launch.spec, &launch.env);
    let Some(program) = argv.first() else {
        // No image entrypoint exists to fall back on.
        log(
            "runway dev-cluster: the container has no command (images have no entrypoint here)"
                .into(),
        );
        return failed(127);
    };
    let mut child = match command(launch, &argv).spawn() {
        Ok(c) => c,
        Err(e) => {
            log(format!("exec {program}: {e}"));
            return failed(128);
        }
    };
    let pid = child.id().unwrap_or(0);
    let mut readers = Vec::new();
    if let Some(out) = child.stdout.take() {
        readers.push(spawn_reader(out, launch, &name));
    }
    if let Some(err) = child.stderr.take() {
        readers.push(spawn_reader(err, launch, &name));
    }
    let limit = launch.spec["resources"]["limits"]
        .get("memory")
        .and_then(|q| parse_quantity(q, false));
    let (status, oom) = supervise(&mut child, pid, limit, clock, deleted).await;
    // Whatever the group left behind goes with the container.
    signal_group(pid, "KILL");
    for r in readers {
        let _ = r.await;
    }
    logs.close(ns, pod, &name);
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

/// Command and args, with `$(VAR)` references expanded.
fn argv(spec: &Value, env: &[(String, String)]) -> Vec<String> {
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(|s| expand(s, env)))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut argv = strings(&spec["command"]);
    argv.extend(strings(&spec["args"]));
    argv
}

/// The process: a group of its own, only the environment given, output piped.
fn command(launch: &Launch, argv: &[String]) -> tokio::process::Command {
    let dir = match launch.spec["workingDir"].as_str() {
        Some(d) if Path::new(d).is_dir() => PathBuf::from(d),
        _ => launch.pod_dir.clone(),
    };
    let mut cmd = tokio::process::Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .env_clear()
        .envs(launch.kubelet.config.base_env.iter().cloned())
        .env("HOSTNAME", &launch.key.1)
        .envs(launch.env.iter().cloned())
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    cmd
}

/// Waits for the process, killing its group past the memory limit or once
/// a deletion's grace period ends; the exit status and whether it was OOM.
async fn supervise(
    child: &mut Child,
    pid: u32,
    limit: Option<i64>,
    clock: &Clock,
    mut deleted: DeleteRx,
) -> (std::io::Result<std::process::ExitStatus>, bool) {
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
                if kill_at.is_some_and(|t| clock.now_ms() >= t) {
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
    (status, oom)
}

fn spawn_reader(
    stream: impl AsyncRead + Unpin + Send + 'static,
    launch: &Launch,
    name: &str,
) -> tokio::task::JoinHandle<()> {
    let (clock, logs) = (
        launch.kubelet.cluster.clock.clone(),
        launch.kubelet.logs.clone(),
    );
    let ((ns, pod), name) = (launch.key.clone(), name.to_owned());
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            logs.append(&ns, &pod, &name, clock.now_ms(), line);
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
