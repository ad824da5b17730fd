#!/usr/bin/env python3
"""Celery wire fixtures, produced by the real celery/kombu 5.7 code paths:

- messages.json: task messages as a Dagster run worker publishes them
  (`as_task_v2` for `execute_step_k8s_job` with the kwargs of the step case,
  serialized by kombu), plus the same task under other serializers, which a
  Runway worker must refuse.
- results.json: result metas as the Redis backend stores them
  (`store_result` into a real Redis, read back byte for byte).

Usage: gen_celery_fixtures.py [--check]   (--check compares with the committed files)
Needs Redis on 127.0.0.1:6379.
"""
from __future__ import annotations

import base64
import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OUT = os.path.join(ROOT, "tests", "fixtures", "celery")
TASK_ID = "5f8e3c1a-9d2b-4c7e-8f1a-0b2c3d4e5f6a"
ORIGIN = "gen4242@runway-fixture"


def messages() -> list[dict]:
    from celery import Celery
    from kombu import serialization

    app = Celery("dagster", broker="memory://", backend="redis://127.0.0.1:6379/0")
    with open(os.path.join(ROOT, "tests", "fixtures", "cases", "step_basic.json")) as f:
        kwargs = json.load(f)["task_kwargs"]
    msg = app.amqp.as_task_v2(TASK_ID, "execute_step_k8s_job", args=(), kwargs=kwargs, origin=ORIGIN)
    out = []
    for name, serializer in [("json", "json"), ("pickle", "pickle"), ("yaml", "yaml")]:
        content_type, encoding, data = serialization.dumps(msg.body, serializer=serializer)
        if isinstance(data, str):
            data = data.encode(encoding or "utf-8")
        out.append({
            "name": name,
            "content_type": content_type,
            "content_encoding": encoding,
            "headers": msg.headers,
            "properties": {k: v for k, v in msg.properties.items()},
            "body_base64": base64.b64encode(data).decode("ascii"),
        })
    return out


def results() -> list[dict]:
    import redis
    from celery import Celery
    from celery.app.task import Context
    from celery.exceptions import TaskRevokedError

    app = Celery("dagster", broker="memory://", backend="redis://127.0.0.1:6379/0")
    r = redis.Redis(host="127.0.0.1", port=6379)
    event = json.dumps({"__class__": "DagsterEvent", "event_type_value": "STEP_SUCCESS",
                        "message": "caf\u00e9 \u2713 \"quoted\"\n", "step_key": "my_op"})
    cases = [
        ("success", [event, "{}"], "SUCCESS", None),
        ("success_empty", [], "SUCCESS", None),
        ("failure", ValueError("step pod failed: ImagePullBackOff"), "FAILURE",
         "Traceback (most recent call last):\n  File \"x\", line 1\nValueError: boom\n"),
        ("revoked", TaskRevokedError("revoked"), "REVOKED", None),
    ]
    out = []
    for name, result, state, tb in cases:
        task_id = f"{TASK_ID[:-4]}{len(out):04d}"
        app.backend.store_result(task_id, result, state, traceback=tb,
                                 request=Context(id=task_id, children=[]))
        key = f"celery-task-meta-{task_id}"
        stored = r.get(key).decode("utf-8")
        out.append({"name": name, "task_id": task_id, "state": state, "ttl": r.ttl(key),
                    "traceback": tb, "result": result if isinstance(result, list) else None,
                    "error": None if isinstance(result, list) else {
                        "exc_type": type(result).__name__,
                        "exc_message": list(result.args),
                        "exc_module": type(result).__module__},
                    "stored": stored})
        r.delete(key)
    return out


def step_log() -> dict:
    """A step pod's log as `dagster api execute_step` prints it, with the
    noise around it, and what the celery-k8s task returns from it."""
    from dagster._core.events import DagsterEvent, DagsterEventType
    from dagster._core.events.utils import filter_dagster_events_from_cli_logs
    from dagster._core.execution.plan.objects import StepSuccessData
    from dagster._serdes import serialize_value

    start = DagsterEvent(event_type_value=DagsterEventType.STEP_START.value, job_name="example_job",
                         step_key="my_op", message="Started execution of step \"my_op\".")
    done = DagsterEvent(event_type_value=DagsterEventType.STEP_SUCCESS.value, job_name="example_job",
                        step_key="my_op", message="Finished caf\u00e9 \u2713",
                        event_specific_data=StepSuccessData(duration_ms=12.5))
    long_line = serialize_value(done)
    lines = [
        "2026-12-02 00:00:00 +0000 - dagster - DEBUG - example_job - starting",
        serialize_value(start),
        '{"not": "an event"}',
        "{broken json",
        "still broken}",
        long_line[:40],  # a line the container runtime split in three
        long_line[40:90],
        long_line[90:],
        '{"__class__": "NotAnEvent", "x": 1}',
        "   " + serialize_value(start) + "   ",
        "done",
    ]
    events = filter_dagster_events_from_cli_logs(lines)
    return {"log": "\n".join(lines) + "\n", "returned": [serialize_value(e) for e in events]}


def normalise(doc):
    # date_done differs on every run; the committed value is what Rust reproduces.
    text = json.dumps(doc, indent=1, sort_keys=True)
    return re.sub(r'date_done\\": \\"[^\\]*\\"', 'date_done\\": \\"<date>\\"', text)


def main() -> int:
    docs = {"messages.json": messages(), "results.json": results(), "step_log.json": step_log()}
    check = "--check" in sys.argv
    stale = []
    for name, doc in docs.items():
        path = os.path.join(OUT, name)
        if check:
            with open(path) as f:
                committed = json.load(f)
            if normalise(committed) != normalise(doc):
                stale.append(name)
        else:
            with open(path, "w") as f:
                json.dump(doc, f, indent=1, sort_keys=True)
                f.write("\n")
    if stale:
        print(f"stale: {stale}; run tools/gen_celery_fixtures.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
