"""The code location of `make compare` (benches/compare_workers.py): two jobs under
`celery_k8s_job_executor` whose ops do next to nothing, so that what a run costs is what the
executor, the Celery workers and the cluster add around each step pod.

    chain_8      op_1 -> op_2 -> ... -> op_8          (each step waits for the one before)
    fan_out_20   leaf_01 .. leaf_20 -> gather          (20 independent steps, then one)
"""
from dagster import Definitions, job, op
from dagster_celery_k8s import celery_k8s_job_executor

CHAIN_LENGTH = 8
FAN_OUT_WIDTH = 20


@op
def first() -> int:
    return 1


@op
def increment(x: int) -> int:
    return x + 1


@op
def leaf() -> int:
    return 1


@op
def gather(values: list[int]) -> int:
    if sum(values) != FAN_OUT_WIDTH:
        raise Exception(f"gather was given {values}")
    return sum(values)


@job(executor_def=celery_k8s_job_executor)
def chain_8():
    value = first.alias("op_1")()
    for i in range(2, CHAIN_LENGTH + 1):
        value = increment.alias(f"op_{i}")(value)


@job(executor_def=celery_k8s_job_executor)
def fan_out_20():
    gather([leaf.alias(f"leaf_{i:02d}")() for i in range(1, FAN_OUT_WIDTH + 1)])


defs = Definitions(jobs=[chain_8, fan_out_20])
