"""What must hold after each fault, read from the stores themselves: the Redis
results (and how many times each was published), the Jobs the cluster added,
Dagster's event log rows, and the broker's queues."""
from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field

import psycopg2

from fleet import READY, Step


@dataclass
class Outcome:
    """What a task's stored result says the step did."""
    kind: str  # succeeded | failed | vanished | timeout | no-step-events | error | missing
    detail: str = ""


def outcome_of(meta: bytes | None, step: str) -> Outcome:
    from dagster._core.events import DagsterEvent
    from dagster._serdes import deserialize_value

    if not meta:
        return Outcome("missing")
    m = json.loads(meta)
    if m["status"] not in READY:
        return Outcome("missing", m["status"])
    if m["status"] != "SUCCESS":
        return Outcome("error", f"{m['status']}: {str(m.get('result'))[:300]}")
    events = [deserialize_value(s, DagsterEvent) for s in m["result"]]
    mine = [(e.event_type_value, e) for e in events if e.step_key == step]
    kinds = [t for t, _ in mine]
    failures = [e for t, e in mine if t == "STEP_FAILURE"]
    if "STEP_SUCCESS" in kinds and not failures:
        return Outcome("succeeded")
    if failures and "STEP_SUCCESS" not in kinds:
        f = failures[0].event_specific_data
        text = f.error.message if f and f.error else ""
        label = f.user_failure_data.label if f and f.user_failure_data else ""
        if "Timed out" in text:
            return Outcome("timeout", text[:300])
        if "could not be found" in text:
            return Outcome("vanished", text[:300])
        if label == "K8sError" and "Encountered failed job pods" in text:
            return Outcome("failed", text[:300])
        return Outcome("error", f"{label}: {text[:300]}")
    if not kinds or kinds == ["STEP_START"]:
        return Outcome("no-step-events", str([e.event_type_value for e in events]))
    return Outcome("error", f"both or neither: {kinds}")


def event_rows(dsn: dict, run_id: str) -> dict[str, list[tuple[str, str]]]:
    """Event-log rows of the run by step key: (event type, message)."""
    conn = psycopg2.connect(**dsn)
    try:
        cur = conn.cursor()
        cur.execute("SELECT step_key, dagster_event_type, event FROM event_logs "
                    "WHERE run_id = %s ORDER BY id", (run_id,))
        out: dict[str, list[tuple[str, str]]] = {}
        for step, ty, body in cur.fetchall():
            entry = json.loads(body)
            ev = entry.get("dagster_event") or {}
            out.setdefault(step, []).append((ty, ev.get("message") or entry.get("user_message")
                                             or ""))
        return out
    finally:
        conn.close()


# A designed outcome of a cluster restart: the worker created the step's Job on the
# stopping cluster and the test's watch never saw it (the ADDED event died with it).
UNSEEN_JOB = "Job created as the cluster stopped"

ANNOUNCED = re.compile(r"Executing step \"[^\"]*\" in Kubernetes job (\S+?)\.?$")


def announced_job(rows: list[tuple[str, str]]) -> str:
    """The Job name the worker's "Executing step ... in Kubernetes job <job>." row gives."""
    for ty, msg in rows:
        m = ANNOUNCED.search(msg) if ty == "ENGINE_EVENT" else None
        if m:
            return m.group(1)
    return ""


def shape(rows: list[tuple[str, str]], step: str, job: str) -> set[tuple[str, str]]:
    """Rows with the step key and Job name abstracted, failure reasons cut at the first ':'."""
    out = set()
    for ty, msg in rows:
        msg = msg.replace(job, "<job>") if job else msg
        msg = msg.replace(step, "<step>")
        if ty == "STEP_FAILURE":
            msg = msg.split(":", 1)[0]
        out.add((ty, re.sub(r"\s+", " ", msg)))
    return out


@dataclass
class Verdict:
    """A round's tallies, and the broken invariants in words."""
    fault: str
    tasks: int
    seconds: float = 0.0
    outcomes: Counter = field(default_factory=Counter)
    lost: int = 0
    duplicates: int = 0
    false_failures: int = 0
    jobs_recreated: int = 0
    missing_events: int = 0
    queue_left: int = 0
    designed: Counter = field(default_factory=Counter)
    evidence: Counter = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)

    def bad(self, what: str):
        if len(self.problems) < 25:
            self.problems.append(what)

    def row(self) -> dict:
        return {"fault": self.fault, "tasks": self.tasks, "seconds": round(self.seconds, 1),
                "lost": self.lost, "duplicates": self.duplicates,
                "false_failures": self.false_failures, "jobs_recreated": self.jobs_recreated,
                "missing_engine_events": self.missing_events, "queue_left": self.queue_left,
                "outcomes": dict(self.outcomes), "designed": dict(self.designed),
                "evidence": dict(self.evidence),
                "problems": self.problems}


def judge(v: Verdict, steps: list[Step], run_id: str, metas: dict[str, bytes | None],
          published: dict[str, int], jobs, rows, expected_shape, allowed=None):
    """Fills `v`. `allowed(step, outcome)` returns a reason when the fault makes an
    outcome other than the scripted one the designed result, else None."""
    for s in steps:
        falsely_failed = False
        o = outcome_of(metas.get(s.task_id), s.key)
        v.outcomes[o.kind] += 1
        scripted = "failed" if s.fails else "succeeded"
        mine = rows.get(s.key, [])
        watched = jobs.steps.get(f"{run_id}/{s.key}", "")
        job = watched or announced_job(mine)
        why = None
        if o.kind == "missing":
            v.lost += 1
            v.bad(f"{s.key}: no ready result ({o.detail})")
        elif o.kind != scripted:
            why = allowed(s, o, job) if allowed else None
            if why:
                v.designed[why] += 1
            else:
                falsely_failed = not s.fails
                v.bad(f"{s.key}: scripted {scripted}, result says {o.kind} {o.detail}")
        if published.get(s.task_id, 0) > 1:
            v.duplicates += 1
            v.bad(f"{s.key}: {published[s.task_id]} ready results published")
        if not watched:
            if why != UNSEEN_JOB:
                v.bad(f"{s.key}: no step Job was ever added")
        elif len(jobs.uids.get(job, ())) != 1:
            v.jobs_recreated += 1
            v.bad(f"{s.key}: Job {job} added {len(jobs.uids[job])} times")
        failure_rows = [m for t, m in mine if t == "STEP_FAILURE"]
        if not s.fails and failure_rows and o.kind == "succeeded":
            falsely_failed = True
            v.bad(f"{s.key}: succeeded but the event log has STEP_FAILURE {failure_rows[0][:200]}")
        want = expected_shape["failed" if s.fails else "succeeded"]
        if o.kind == "vanished":
            want = {w for w in want if w[0] != "STEP_FAILURE"}
        missing = want - shape(mine, s.key, job)
        if missing and o.kind not in ("missing",):
            v.missing_events += 1
            v.bad(f"{s.key}: event log lacks {sorted(missing)}")
        if len(failure_rows) > 1:
            v.bad(f"{s.key}: {len(failure_rows)} STEP_FAILURE rows")
        v.false_failures += falsely_failed


def queue_leftovers(rabbit) -> list[dict]:
    return [q for q in rabbit.queues()
            if q.get("messages", 0) or q.get("messages_unacknowledged", 0)]
