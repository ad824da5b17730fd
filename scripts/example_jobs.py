"""The example code location of the demo and the end-to-end tests, served by
`dagster api grpc` and loaded again by every run pod and step pod. It imports under every
Dagster the tests run, 1.1.9 (tests/dagster-1.1.9/test_dagster119_e2e.py) to 1.13.27.

    fan_in          source -+- double -+- total        (multiprocess executor)
                            +- square -+
    fan_in_celery   the same under celery_k8s_job_executor (one pod per step)
    fails           source -- explode -- after         (explode raises)
    fails_celery    the same under celery_k8s_job_executor
    held            waits until the file held_release_path(run id) exists
    held_celery     the same, as a step of celery_k8s_job_executor
    tiny            one op that returns 1 (for queueing many runs)
"""
import os
import tempfile
import time

from dagster import Definitions, OpExecutionContext, in_process_executor, job, op
from dagster_celery_k8s import celery_k8s_job_executor

HELD_SECONDS = 600


def held_started_path(run_id: str) -> str:
    return os.path.join(tempfile.gettempdir(), f"runway-held-{run_id}.started")


def held_release_path(run_id: str) -> str:
    return os.path.join(tempfile.gettempdir(), f"runway-held-{run_id}.release")


@op
def source() -> int:
    return 3


@op
def double(x: int) -> int:
    return 2 * x


@op
def square(x: int) -> int:
    return x * x


@op
def total(context: OpExecutionContext, a: int, b: int) -> int:
    # The inputs crossed processes through the filesystem IO manager.
    if (a, b) != (6, 9):
        raise Exception(f"wrong inputs {(a, b)}")
    context.log.info(f"total is {a + b}")
    return a + b


@op
def explode(x: int) -> int:
    raise Exception(f"explode was given {x} and refuses it")


@op
def after(x: int) -> int:
    return x


@op
def wait_for_release(context: OpExecutionContext) -> str:
    open(held_started_path(context.run_id), "w").close()
    release = held_release_path(context.run_id)
    deadline = time.time() + HELD_SECONDS
    while not os.path.exists(release):
        if time.time() > deadline:
            raise Exception(f"{release} did not appear in {HELD_SECONDS}s")
        time.sleep(0.2)
    return "released"


@op
def one() -> int:
    return 1


@job
def fan_in():
    s = source()
    total(double(s), square(s))


@job(executor_def=celery_k8s_job_executor)
def fan_in_celery():
    s = source()
    total(double(s), square(s))


@job(executor_def=in_process_executor)
def fails():
    after(explode(source()))


@job(executor_def=celery_k8s_job_executor)
def fails_celery():
    after(explode(source()))


@job(executor_def=in_process_executor)
def held():
    wait_for_release()


@job(executor_def=celery_k8s_job_executor)
def held_celery():
    wait_for_release()


@job(executor_def=in_process_executor)
def tiny():
    one()


defs = Definitions(jobs=[fan_in, fan_in_celery, fails, fails_celery, held, held_celery, tiny])
