"""What `make compare` (compare_workers.py) reads while the runs go: the dev cluster's step Jobs
and pods seen through watches (sub-second times, since the dev cluster, like Kubernetes, writes
its timestamps to the second), the workers' memory sampled from /proc, and afterwards each
run's Dagster event log; then the per-step timings derived from all three."""
from __future__ import annotations

import os
import re
import statistics
import threading
import time


class ClusterWatch:
    """Watches the namespace's Jobs and pods from this process and records, in this machine's
    clock (the one Dagster's event timestamps use too), when each Job was first seen (its
    creation) and when each pod's container was first seen terminated (the pod's exit)."""

    def __init__(self, kube_client, namespace: str):
        self.api = kube_client
        self.namespace = namespace
        self.job_seen: dict[str, float] = {}  # Job name -> first seen
        self.job_labels: dict[str, dict] = {}  # Job name -> its labels
        self.pod_done: dict[str, float] = {}  # Job name -> its pod first seen terminated
        self.pod_started: dict[str, float] = {}  # Job name -> its pod first seen running
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._loop, args=(kind,), daemon=True)
                        for kind in ("jobs", "pods")]

    def __enter__(self) -> "ClusterWatch":
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        for t in self.threads:
            t.join(timeout=10)

    def _loop(self, kind: str) -> None:
        from kubernetes import client, watch

        if kind == "jobs":
            lister = client.BatchV1Api(self.api).list_namespaced_job
        else:
            lister = client.CoreV1Api(self.api).list_namespaced_pod
        rv = None
        while not self.stopping.is_set():
            w = watch.Watch()
            try:
                kw = {"timeout_seconds": 2, "_request_timeout": 10}
                if rv:
                    kw["resource_version"] = rv
                for ev in w.stream(lister, self.namespace, **kw):
                    now = time.time()
                    obj = ev["object"]
                    self._record(kind, obj, now)
                    rv = w.resource_version
                    if self.stopping.is_set():
                        break
            except Exception:  # noqa: BLE001 - 410 Gone or a dropped stream: list again
                rv = None
                time.sleep(0.05)

    def _record(self, kind: str, obj, now: float) -> None:
        if kind == "jobs":
            self.job_seen.setdefault(obj.metadata.name, now)
            self.job_labels.setdefault(obj.metadata.name, obj.metadata.labels or {})
            return
        job = (obj.metadata.labels or {}).get("job-name")
        if not job:
            return
        for c in (obj.status.container_statuses or []) if obj.status else []:
            if c.state and c.state.running:
                self.pod_started.setdefault(job, now)
            if c.state and c.state.terminated:
                self.pod_done.setdefault(job, now)


def _children(pid: int) -> list[int]:
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(p) for p in f.read().split()]
    except OSError:
        pass
    return out


def _kb(path: str, key: str) -> int:
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class MemorySampler:
    """Samples, every `interval` seconds, the RSS and PSS summed over a worker process and all
    its descendants (Celery's prefork pool children included). RSS counts pages shared by
    several processes once per process; PSS divides them among the sharers."""

    def __init__(self, pid: int, interval: float = 0.25):
        self.pid = pid
        self.interval = interval
        self.label = None
        self.samples: list[tuple[str, int, int, int]] = []  # label, rss kB, pss kB, processes
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> "MemorySampler":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        self.thread.join(timeout=5)

    def tree(self) -> list[int]:
        pids, todo = [], [self.pid]
        while todo:
            p = todo.pop()
            pids.append(p)
            todo += _children(p)
        return pids

    def _loop(self) -> None:
        while not self.stopping.wait(self.interval):
            if self.label is None:
                continue
            pids = self.tree()
            rss = sum(_kb(f"/proc/{p}/status", "VmRSS:") for p in pids)
            pss = sum(_kb(f"/proc/{p}/smaps_rollup", "Pss:") for p in pids)
            self.samples.append((self.label, rss, pss, len(pids)))

    def summary(self, label: str) -> dict:
        got = [s for s in self.samples if s[0] == label]
        if not got:
            return {}
        rss = [s[1] / 1024 for s in got]
        pss = [s[2] / 1024 for s in got]
        return {"samples": len(got), "processes": max(s[3] for s in got),
                "rss_peak_mib": max(rss), "rss_mean_mib": statistics.fmean(rss),
                "pss_peak_mib": max(pss), "pss_mean_mib": statistics.fmean(pss)}


def run_timings(instance, run_id: str, watch: ClusterWatch, deps: dict[str, list[str]],
                concurrency: int) -> dict:
    """One run's figures: its wall time (RUN_START to RUN_SUCCESS, from Dagster's run stats),
    per step its Job's creation and its pod's exit (the watches) and its STEP_START and
    STEP_SUCCESS (the event log), and the overheads:

    - dependency: a step's Job created minus the exit of the last pod it depends on;
    - slot (steps queued behind the workers' concurrency): with `concurrency` slots the n-th
      Job created (n > concurrency) could only be created once (n - concurrency) step pods had
      exited, so its slot overhead is its creation minus the (n - concurrency)-th pod exit;
    - event gap (Dagster's view, from the event log alone): a step's STEP_START minus the
      STEP_SUCCESS of the last step it depends on.
    """
    stats = instance.get_run_stats(run_id)
    run = instance.get_run_by_id(run_id)
    steps: dict[str, dict] = {key: {} for key in deps}
    for r in instance.all_logs(run_id):
        ev = r.dagster_event if r.is_dagster_event else None
        kind = ev.event_type_value if ev else ""
        if kind in ("STEP_START", "STEP_SUCCESS") and r.step_key in steps:
            steps[r.step_key][kind.lower()] = r.timestamp
        elif kind == "ENGINE_EVENT":
            m = re.search(r'Executing step "(.+)" in Kubernetes job (\S+)\.$', ev.message or "")
            if m and m.group(1) in steps:
                steps[m.group(1)]["engine_event"] = r.timestamp
    # The step Jobs carry the run and op in their labels, as dagster-k8s labels them.
    for name, labels in list(watch.job_labels.items()):
        if labels.get("dagster/run-id") == run_id and labels.get("dagster/op") in steps:
            steps[labels["dagster/op"]]["job"] = name
    t0 = stats.start_time
    for key, s in steps.items():
        job = s.get("job")
        s["created"] = watch.job_seen.get(job)
        s["pod_running"] = watch.pod_started.get(job)
        s["pod_exit"] = watch.pod_done.get(job)
        missing = [k for k in ("created", "pod_exit", "step_start", "step_success")
                   if s.get(k) is None]
        if missing:
            raise RuntimeError(f"run {run_id} step {key}: no {missing} ({s})")
    dependency, event_gap, slot = {}, {}, {}
    for key, ups in deps.items():
        if ups:
            dependency[key] = steps[key]["created"] - max(steps[u]["pod_exit"] for u in ups)
            event_gap[key] = steps[key]["step_start"] - max(steps[u]["step_success"] for u in ups)
    created = sorted(steps, key=lambda k: steps[k]["created"])
    exits = sorted(s["pod_exit"] for s in steps.values())
    for n, key in enumerate(created):
        if n >= concurrency and not deps.get(key):
            slot[key] = steps[key]["created"] - exits[n - concurrency]
    rel = {k: {f: (v - t0 if isinstance(v, float) else v) for f, v in s.items()}
           for k, s in steps.items()}
    return {"run_id": run_id, "status": run.status.value, "wall_s": stats.end_time - t0,
            "first_job_after_start_s": min(s["created"] for s in steps.values()) - t0,
            "steps": rel, "dependency_overhead_s": dependency, "slot_overhead_s": slot,
            "event_gap_s": event_gap}
