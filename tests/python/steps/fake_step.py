"""A stand-in for `dagster api execute_step` in worker tests: it decodes the
`--compressed-input-json` argument exactly as Dagster does, then behaves as
STEP_BEHAVIOUR says (succeed, fail, crash, sleep), printing real serialized
DagsterEvents for the step it was given."""
import os
import sys
import time

from dagster._core.events import DagsterEvent, DagsterEventType
from dagster._core.execution.plan.objects import StepSuccessData
from dagster._grpc.types import ExecuteStepArgs
from dagster._serdes import deserialize_value, serialize_value
import base64
import zlib


def main() -> int:
    argv = sys.argv[1:]
    assert argv[:2] == ["api", "execute_step"], argv
    packed = argv[argv.index("--compressed-input-json") + 1]
    args = deserialize_value(zlib.decompress(base64.b64decode(packed)).decode(), ExecuteStepArgs)
    step = args.step_keys_to_execute[0]
    job = args.job_origin.job_name
    behaviour = os.environ.get("STEP_BEHAVIOUR", "succeed")
    print("starting step", step, "of run", args.run_id, flush=True)
    start = DagsterEvent(event_type_value=DagsterEventType.STEP_START.value, job_name=job,
                         step_key=step, message=f'Started execution of step "{step}".')
    print(serialize_value(start), flush=True)
    if behaviour == "sleep":
        time.sleep(float(os.environ.get("STEP_SLEEP", "600")))
    if behaviour == "crash":
        return 3
    done = DagsterEvent(event_type_value=DagsterEventType.STEP_SUCCESS.value, job_name=job,
                        step_key=step, message=f'Finished execution of step "{step}".',
                        event_specific_data=StepSuccessData(duration_ms=1.0))
    print(serialize_value(done), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
