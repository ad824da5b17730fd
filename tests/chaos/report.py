"""The chaos suite's figures: one row per fault and per attack, printed as tables at
the end of the run (conftest.py) and written to target/chaos-report.json."""
from __future__ import annotations

import json
import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PATH = os.path.join(ROOT, "target", "chaos-report.json")
FAULTS: list[dict] = []
ATTACKS: list[dict] = []


def tables(wall_secs: float) -> list[str]:
    out = []
    if FAULTS:
        out.append("worker faults: tasks / results lost / duplicate results / false failures / "
                   "Jobs created twice / tasks missing engine events / messages left")
        out.append(f"{'fault':<22}{'tasks':>6}{'lost':>6}{'dup':>5}{'false-fail':>11}"
                   f"{'job-x2':>7}{'ev-miss':>8}{'left':>6}{'secs':>7}  designed outcomes")
        for r in FAULTS:
            designed = ", ".join(f"{k}: {n}" for k, n in r["designed"].items()) or "-"
            out.append(f"{r['fault']:<22}{r['tasks']:>6}{r['lost']:>6}{r['duplicates']:>5}"
                       f"{r['false_failures']:>11}{r['jobs_recreated']:>7}"
                       f"{r['missing_engine_events']:>8}{r['queue_left']:>6}{r['seconds']:>7}"
                       f"  {designed}")
            seen = ", ".join(f"{k} {n}" for k, n in r["evidence"].items() if k != "tasks")
            out.append(f"    what the fault did: {seen or '-'}")
            for p in r["problems"][:5]:
                out.append(f"    ! {p}")
    if ATTACKS:
        out.append("serve attacks: RSS in MiB (limit 512) and CheckRunWorkerHealth meanwhile")
        out.append(f"{'attack':<34}{'base':>6}{'peak':>7}{'after':>7}{'health n':>9}"
                   f"{'p50 ms':>8}{'p99 ms':>8}{'errors':>7}")
        for a in ATTACKS:
            out.append(f"{a['attack']:<34}{a['base_mib']:>6.0f}{a['peak_mib']:>7.0f}"
                       f"{a['after_mib']:>7.0f}{a['health_calls']:>9}{a['p50_ms']:>8.1f}"
                       f"{a['p99_ms']:>8.1f}{a['health_errors']:>7}")
    out.append(f"chaos suite wall time: {wall_secs:.0f} s")
    return out


def write(wall_secs: float):
    os.makedirs(os.path.dirname(PATH), exist_ok=True)
    with open(PATH, "w") as f:
        json.dump({"faults": FAULTS, "attacks": ATTACKS, "wall_secs": round(wall_secs, 1)}, f,
                  indent=1)
