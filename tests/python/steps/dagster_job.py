"""Real Dagster jobs under `celery_k8s_job_executor` for test_worker_dagster_job.py.

This file is loaded three times: by the test (an in-process code location, to
create the runs), by the run pod (`dagster api execute_run`) and by every step
pod (`dagster api execute_step`). The op tagged `dagster-celery/queue` reads its
queue from RUNWAY_TEST_Q2: the test sets it in its own environment and in the
ConfigMap the launcher's `env_config_maps` names, so the run and step pods get
the same value.

    source ──┬── double (dagster-celery/priority) ──┬── total
             ├── square (dagster-celery/queue: Q2) ─┘
             └── explode (raises) ── after_explode        (runway_fail only)
"""
import os

from dagster import Definitions, job, op
from dagster_celery_k8s import celery_k8s_job_executor

Q2 = os.environ.get("RUNWAY_TEST_Q2", "runway-test-q2")


@op
def source() -> int:
    return 3


@op(tags={"dagster-celery/priority": "8"})
def double(x: int) -> int:
    return 2 * x


@op(tags={"dagster-celery/queue": Q2})
def square(x: int) -> int:
    return x * x


@op
def total(a: int, b: int) -> int:
    # The inputs crossed processes through the fs IO manager.
    if (a, b) != (6, 9):
        raise Exception(f"wrong inputs {(a, b)}")
    print(f"total is {a + b}")
    return a + b


@op
def explode(x: int) -> int:
    raise Exception(f"explode was given {x} and refuses it")


@op
def after_explode(x: int) -> int:
    return x


@job(executor_def=celery_k8s_job_executor)
def runway_ok():
    s = source()
    total(double(s), square(s))


@job(executor_def=celery_k8s_job_executor)
def runway_fail():
    s = source()
    total(double(s), square(s))
    after_explode(explode(s))


defs = Definitions(jobs=[runway_ok, runway_fail])
