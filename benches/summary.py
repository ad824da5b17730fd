#!/usr/bin/env python3
"""`make bench`'s one table: every figure of the run beside its Python peer (measured in
the same run), their ratio, the goal of issue 20 and whether it is met.

Reads the JSON lines the benches wrote into a directory (render.jsonl, launch.jsonl,
publish.jsonl, worker.jsonl, devcluster.jsonl) and prints a Markdown table, also written to summary.md there.

Usage: benches/summary.py target/bench
"""
import json
import math
import os
import platform
import sys
import time


def lines(folder: str, name: str) -> list[dict]:
    path = os.path.join(folder, name + ".jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(x) for x in f if x.strip().startswith("{")]


def find(rows: list[dict], **match) -> dict:
    for r in rows:
        if all(r.get(k) == v for k, v in match.items()):
            return r
    return {}


class Table:
    def __init__(self):
        self.rows: list[tuple] = []

    def add(self, figure, runway, peer=None, unit="", goal=None, higher=True, ratio=None,
            comparable=True):
        """`goal` is a number compared with `runway` (higher or lower is better);
        `comparable=False` shows the peer's figure without a ratio."""
        if ratio is None and peer and comparable:
            ratio = runway / peer if higher else peer / runway
        met = "-"
        if goal is not None and runway is not None and not math.isnan(runway):
            met = "yes" if (runway >= goal if higher else runway <= goal) else "no"
        goal_text = "-" if goal is None else f"{'≥' if higher else '≤'} {fmt(goal)}{unit}"
        self.rows.append((figure, fmt(runway, unit), fmt(peer, unit),
                          "-" if ratio is None else f"{ratio:.1f}x", goal_text, met))

    def markdown(self) -> list[str]:
        out = ["| figure | Runway | peer | ratio | goal | met |", "|---|---|---|---|---|---|"]
        out += ["| " + " | ".join(r) + " |" for r in self.rows]
        return out


def fmt(x, unit="") -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    text = f"{x:,.0f}" if abs(x) >= 100 else f"{x:.2f}" if abs(x) < 10 else f"{x:.1f}"
    return text + unit


def criterion_us(folder: str, bench: str) -> float | None:
    """Criterion's estimate (µs per Job) of `cargo bench -p runway-core --bench render`,
    when it ran in this `make bench` run: after the render comparison wrote render.jsonl."""
    crit = os.path.join(os.path.dirname(os.path.abspath(folder)), "criterion", bench, "new",
                        "estimates.json")
    ours = os.path.join(folder, "render.jsonl")
    if not (os.path.exists(crit) and os.path.exists(ours)):
        return None
    if os.path.getmtime(crit) < os.path.getmtime(ours):
        return None
    with open(crit) as f:
        est = json.load(f)
    # What criterion prints as `time:` (the slope when it sampled linearly).
    point = (est.get("slope") or est["mean"])["point_estimate"]
    return point / 1000.0


def render(t: Table, rows: list[dict], folder: str):
    goals = {"seed_k8s_run_tags": ("render one run Job", 15.0, "render_seed_run_with_tags"),
             "step_basic": ("render one step Job", 25.0, "render_step")}
    for case, (figure, goal, bench) in goals.items():
        r = find(rows, case=case)
        crit = criterion_us(folder, bench)
        if crit is not None:
            # The issue states the render goals in `cargo bench`.
            t.add(f"{figure}, cargo bench (criterion) µs", crit, unit=" µs", goal=goal,
                  higher=False)
        if r:
            t.add(f"{figure}, mean µs", r["runway_us"], r["python_us"], " µs", goal, higher=False)
            t.add(f"{figure}, p99 / median", r["runway_p99_us"] / r["runway_median_us"],
                  goal=3.0, higher=False)
            if "instructions_per_job" in r:
                t.add(f"{figure}, instructions (callgrind)", r["instructions_per_job"])


def launch(t: Table, rows: list[dict]):
    burst = next((r for r in rows if str(r.get("what", "")).startswith("LaunchRun burst")), {})
    seq = find(rows, what="LaunchRun sequential")
    peer = find(rows, impl="python")
    if burst:
        t.add("LaunchRun burst (saturation), launches/s", burst["launches_per_s"],
              peer.get("launches_per_s"), "/s", 2000)
    if seq:
        t.add("sequential launch p50, ms", seq["p50_ms"], peer.get("p50_ms"), " ms",
              higher=False)
        if peer:
            t.add("sequential launch p50, Python over Runway", peer["p50_ms"] / seq["p50_ms"],
                  unit="x", goal=10.0)
        t.add("Runway CPU per launch (serve threads), µs", seq.get("runway_cpu_us_per_op"),
              peer.get("own_cpu_us_per_op"), " µs", 50.0, higher=False)
    for r in rows:
        if r.get("what") == "LaunchRun paced":
            rate = r["rate_per_s"]
            top = rate >= 500
            t.add(f"LaunchRun paced {rate:.0f}/s, p99 ms", r["p99_ms"], unit=" ms",
                  goal=20.0 if top else None, higher=False)
            t.add(f"Job Complete -> WatchRuns, paced {rate:.0f}/s, p99 ms",
                  r["watch_completion_p99_ms"], unit=" ms", goal=50.0 if top else None,
                  higher=False)
            t.add(f"Runway CPU per launch at {rate:.0f}/s, µs", r.get("runway_cpu_us_per_op"),
                  unit=" µs", goal=50.0, higher=False)
    health = find(rows, what="CheckRunWorkerHealth")
    if health:
        t.add("CheckRunWorkerHealth, checks/s", health["checks_per_s"], unit="/s", goal=50000)
        t.add("Runway CPU per health check, µs", health.get("runway_cpu_us_per_op"), unit=" µs",
              goal=20.0, higher=False)


def publish(t: Table, rows: list[dict]):
    raw = find(rows, impl="lapin raw")
    ours = find(rows, impl="runway")
    py = next((r for r in rows if "python" in str(r.get("impl", ""))), {})
    if ours:
        t.add("publish with confirms (SubmitStep's path), /s", ours["publishes_per_s"],
              py.get("publishes_per_s"), "/s")
        t.add("  ... as a share of the fastest raw lapin publisher", ours["ratio_to_raw"] * 100,
              unit=" %", goal=90.0)


def worker(t: Table, rows: list[dict]):
    ours = find(rows, impl="runway")
    peer = next((r for r in rows if "python" in str(r.get("impl", ""))), {})
    if ours:
        t.add("worker steps/s end to end (saturation)", ours["steps_per_s"],
              peer.get("steps_per_s"), "/s", 2000)
        peer_ms = peer.get("completion_to_result_p99_s")
        # Queueing, not a speed: it grows with how many steps wait (the bench
        # queues thousands for Runway, a few for the Python peer), so no ratio.
        t.add("step Job complete -> stored result p99 (saturation; queueing), ms",
              ours["completion_to_result_p99_ms"], None if peer_ms is None else peer_ms * 1e3,
              " ms", higher=False, comparable=False)
        t.add("Runway CPU per step (worker threads), µs", ours.get("runway_cpu_us_per_op"),
              peer.get("own_cpu_us_per_op"), " µs", 300.0, higher=False)
    for r in rows:
        if r.get("what") == "steps paced":
            rate = r["rate_per_s"]
            t.add(f"step Job complete -> stored result, paced {rate:.0f}/s, p99 ms",
                  r["completion_to_result_p99_ms"], unit=" ms", goal=50.0, higher=False)
            t.add(f"Runway CPU per step at {rate:.0f}/s, µs", r.get("runway_cpu_us_per_op"),
                  unit=" µs", goal=300.0, higher=False)


# Bytes per stored object the dev cluster held with serde_json maps (its bench,
# 2026-12-06, before the compact store): the goal is 5x less.
DEVCLUSTER_BYTES_BEFORE = 28_626


def devcluster(t: Table, rows: list[dict]):
    r = find(rows, bench="devcluster")
    if not r:
        return
    t.add("dev cluster Job creates/s, a watch open, every pod completing", r["creates_per_s"],
          unit="/s", goal=10_000)
    t.add("dev cluster Jobs completed/s (every pod done)", r["jobs_completed_per_s"], unit="/s")
    if r.get("devcluster_cpu_us_per_job"):
        # Its own threads' CPU over each Job's whole life (create, pod created,
        # scheduled, run, completed, Job completed, events, watch events), apart
        # from the client loading it on the same cores.
        t.add("dev cluster CPU per Job, create to completion (its threads), µs",
              r["devcluster_cpu_us_per_job"], unit=" µs")
        t.add("  ... Job creates/s one free core would take at that cost",
              r["devcluster_jobs_per_core_s"], unit="/s", goal=10_000)
        t.add("load generator CPU per Job (kube-rs creates, the watch), µs",
              r.get("load_cpu_us_per_job"), unit=" µs")
    now = r["bytes_per_stored_object"]
    t.add(f"dev cluster bytes per stored object (RSS; {DEVCLUSTER_BYTES_BEFORE:,} with serde_json maps)",
          now, unit=" B", goal=DEVCLUSTER_BYTES_BEFORE / 5, higher=False,
          ratio=DEVCLUSTER_BYTES_BEFORE / now if now else None)


def breakdown(folder: str) -> list[str]:
    """Per-component CPU per operation of every phase that has it."""
    out = ["", "CPU per operation by component, µs (Runway's own threads, the dev cluster, "
           "the load generator, the stores):"]
    for name in ("launch", "worker"):
        for r in lines(folder, name):
            parts = r.get("cpu_us_per_op")
            if parts:
                label = r.get("what") or r.get("impl")
                if r.get("rate_per_s"):
                    label += f" {r['rate_per_s']:.0f}/s"
                shown = ", ".join(f"{k} {v:,.1f}" for k, v in sorted(parts.items()))
                out.append(f"- {name}: {label}: {shown}")
    return out


def main() -> int:
    folder = sys.argv[1] if len(sys.argv) > 1 else "target/bench"
    t = Table()
    render(t, lines(folder, "render"), folder)
    launch(t, lines(folder, "launch"))
    publish(t, lines(folder, "publish"))
    worker(t, lines(folder, "worker"))
    devcluster(t, lines(folder, "devcluster"))
    # When the run's last bench wrote its figures (the table may be made again later).
    written = [os.path.getmtime(os.path.join(folder, n + ".jsonl"))
               for n in ("render", "launch", "publish", "worker", "devcluster")
               if os.path.exists(os.path.join(folder, n + ".jsonl"))]
    at = time.gmtime(max(written)) if written else time.gmtime()
    stamp = (f"measured {time.strftime('%Y-%m-%d %H:%M UTC', at)} on "
             f"{platform.machine()}, {os.cpu_count()} cores")
    text = ["Runway vs the Python peer, one `make bench` run; " + stamp, ""]
    text += t.markdown() + breakdown(folder)
    print("\n".join(text))
    with open(os.path.join(folder, "summary.md"), "w") as f:
        f.write("\n".join(text) + "\n")
    return 0 if t.rows else 1


if __name__ == "__main__":
    sys.exit(main())
