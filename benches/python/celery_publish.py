#!/usr/bin/env python3
"""Publish rate of the Python peer: dagster-celery-k8s's own task object
publishing `execute_step_k8s_job` with `.si(**kwargs).apply_async(priority,
queue, routing_key)`, exactly as `_submit_task_k8s_job` does, from a Celery
app made by dagster-celery's `make_app` (Celery's defaults: no publisher
confirms). The kwargs have the shape and body size `runway bench publish` uses.

Usage: celery_publish.py --broker URL --queue Q --messages N --size BYTES
Prints one JSON line.
"""
from __future__ import annotations

import argparse
import json
import time


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--broker", required=True)
    p.add_argument("--queue", required=True)
    p.add_argument("--messages", type=int, default=2000)
    p.add_argument("--size", type=int, default=1024)
    args = p.parse_args()

    from dagster_celery.make_app import make_app
    from dagster_celery_k8s.executor import create_k8s_job_task
    from kombu import serialization

    app = make_app({"broker": args.broker, "backend": "rpc://", "include": [],
                    "config_source": None, "retries": None})
    task = create_k8s_job_task(app)

    def kwargs(pad):
        return {"execute_step_args_packed": {"__class__": "ExecuteStepArgs", "pad": "x" * pad},
                "job_config_dict": {}, "job_namespace": "dagster", "load_incluster_config": True,
                "job_wait_timeout": 86400.0}

    def body_len(kw):
        msg = app.amqp.as_task_v2("00000000-0000-4000-8000-000000000000",
                                  "execute_step_k8s_job", args=(), kwargs=kw)
        return len(serialization.dumps(msg.body, serializer="json")[2])

    kw = kwargs(max(0, args.size - body_len(kwargs(0))))
    sig = task.si(**kw)
    # Connect and declare outside the timing.
    sig.apply_async(priority=5, queue=args.queue, routing_key=f"{args.queue}.execute_step_k8s_job")
    started = time.perf_counter()
    for _ in range(args.messages):
        sig.apply_async(priority=5, queue=args.queue,
                        routing_key=f"{args.queue}.execute_step_k8s_job")
    took = time.perf_counter() - started
    print(json.dumps({"bench": "publish", "impl": "python celery",
                      "what": "apply_async as the celery-k8s executor publishes (no confirms)",
                      "messages": args.messages, "body_bytes": body_len(kw),
                      "publishes_per_s": args.messages / took}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
