"""The hostile callers of test_chaos_serve.py, each run as its own process (so its
Python work never competes for the test's GIL with the health probe, and so it can
be killed as a client dies):

    python serve_attacks.py streams  ADDR COUNT CHANNELS
    python serve_attacks.py configs  ADDR COUNT CONCURRENCY BYTES SEED_JSON
    python serve_attacks.py oversize ADDR ROUNDS CONCURRENCY CONFIG_LIMIT REQUEST_LIMIT SEED_JSON

`configs` and `oversize` build their requests first, print `ready` and wait for a line
on stdin, so the measured window holds the attack alone. Each prints one JSON line of
what the server answered (status code names and counts); `streams` then holds its
streams open, never reading them, until it is killed.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import time
import types
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import grpc

# Only the stubs (not dagster_runway's __init__, which imports Dagster).
_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_pkg = types.ModuleType("dagster_runway")
_pkg.__path__ = [os.path.join(_ROOT, "python", "dagster-runway", "dagster_runway")]
sys.modules.setdefault("dagster_runway", _pkg)

from dagster_runway._proto import launcher_pb2 as pb  # noqa: E402
from dagster_runway._proto import launcher_pb2_grpc as pb_grpc  # noqa: E402

LAUNCHER = "K8sRunLauncher"


def channel(addr: str) -> grpc.Channel:
    # Its own connection each (no shared subchannel), no client-side size limits: the
    # server's limits are what is under test.
    return grpc.insecure_channel(addr, [("grpc.use_local_subchannel_pool", 1),
                                        ("grpc.max_send_message_length", -1),
                                        ("grpc.max_receive_message_length", -1)])


def launcher_config(config: dict) -> pb.LauncherConfig:
    text = json.dumps(config, sort_keys=True)
    return pb.LauncherConfig(launcher_class=LAUNCHER, config_json=text,
                             digest=hashlib.sha256(text.encode()).hexdigest())


def run_message(seed: dict, run_id: str, pod_ms: int) -> pb.Run:
    """The seed run; its pod runs `pod_ms` on the simulated kubelet."""
    run = seed["run"]
    tags = dict(run["tags"], **{"dagster-k8s/config": json.dumps({"pod_template_spec_metadata": {
        "annotations": {"runway.dev/duration-ms": str(pod_ms)}}})})
    return pb.Run(run_id=run_id, job_name=run["job_name"], location_name=run["location_name"],
                  image=run["image"], container_context_json=json.dumps(run["container_context"]),
                  tags=tags, args=run["args"])


def launch_request(seed: dict, run_id: str, config: dict | None = None,
                   pod_ms: int = 100) -> pb.LaunchRunRequest:
    return pb.LaunchRunRequest(run=run_message(seed, run_id, pod_ms),
                               launcher=launcher_config(config or seed["launcher"]))


def padded(seed: dict, n: int, size: int) -> dict:
    """The seed launcher config, made `size` bytes (give or take one entry) by env vars
    of its own: distinct configs (distinct digests) that parse and render."""
    config = json.loads(json.dumps(seed["launcher"]))
    base = len(json.dumps(config, sort_keys=True))
    entry = 1000
    value = f"{n:06d}" + "p" * (entry - 20)
    config["env_vars"] = [f"PAD_ID={n}"] + [f"PAD_{i:05d}={value}"
                                            for i in range(max(0, (size - base) // entry))]
    return config


def ready():
    print("ready", flush=True)
    sys.stdin.readline()


def code_of(fn) -> str:
    try:
        fn()
        return "OK"
    except grpc.RpcError as e:
        return e.code().name


def streams(addr: str, count: int, channels: int):
    """`count` WatchRuns(include_current) over `channels` connections, never read."""
    chans = [channel(addr) for _ in range(channels)]
    stubs = [pb_grpc.RunLauncherStub(c) for c in chans]
    calls = [stubs[i % channels].WatchRuns(pb.WatchRunsRequest(include_current=True))
             for i in range(count)]
    # A refused call ends at once (headers and status together); an accepted one has
    # its headers and stays open.
    for c in calls:
        c.initial_metadata()
    time.sleep(1)
    codes = Counter(c.code().name if c.done() else "OPEN" for c in calls)
    print(json.dumps(dict(codes)), flush=True)
    while True:  # hold every stream until killed; read none
        time.sleep(3600)


def configs(addr: str, count: int, concurrency: int, size: int, seed: dict):
    """`count` launches, each with a distinct launcher config of about `size` bytes."""
    stubs = [pb_grpc.RunLauncherStub(channel(addr)) for _ in range(concurrency)]
    reqs = [launch_request(seed, str(uuid.uuid4()), padded(seed, i, size)) for i in range(count)]

    def one(i: int) -> str:
        return code_of(lambda: stubs[i % concurrency].LaunchRun(reqs[i], timeout=120))

    ready()
    with ThreadPoolExecutor(concurrency) as pool:
        codes = Counter(pool.map(one, range(count)))
    print(json.dumps(dict(codes)), flush=True)


def oversize(addr: str, rounds: int, concurrency: int, config_limit: int, request_limit: int,
             seed: dict):
    """Per round: a config twice the config limit, a request past the request limit, a 1 MB
    run id, and three malformed protobuf bodies; answers counted by kind."""
    chans = [channel(addr) for _ in range(concurrency)]
    stubs = [pb_grpc.RunLauncherStub(c) for c in chans]
    raw = [c.unary_unary("/runway.v1.RunLauncher/CheckRunWorkerHealth") for c in chans]
    big_config = launch_request(seed, str(uuid.uuid4()), padded(seed, 0, 2 * config_limit))
    huge = launch_request(seed, str(uuid.uuid4()), padded(seed, 1, request_limit + (1 << 20)))
    long_id = launch_request(seed, "r" * (1 << 20))
    garbage = [b"\x0a\xff\x01", b"\x0a\x02\xff\xfe", b"\xff\xff\xff\xff\x0f"]

    def one(i: int) -> tuple[str, str]:
        s, r = stubs[i % concurrency], raw[i % concurrency]
        kind = ("config", "request", "run_id", "proto")[i % 4]
        if kind == "config":
            return kind, code_of(lambda: s.LaunchRun(big_config, timeout=60))
        if kind == "request":
            return kind, code_of(lambda: s.LaunchRun(huge, timeout=60))
        if kind == "run_id":
            return kind, code_of(lambda: s.LaunchRun(long_id, timeout=60))
        return kind, code_of(lambda: r(garbage[(i // 4) % 3], timeout=60))

    ready()
    with ThreadPoolExecutor(concurrency) as pool:
        answers = Counter(f"{k} {c}" for k, c in pool.map(one, range(4 * rounds)))
    print(json.dumps(dict(answers)), flush=True)


if __name__ == "__main__":
    what, addr, *rest = sys.argv[1:]
    if what == "streams":
        streams(addr, int(rest[0]), int(rest[1]))
    elif what == "configs":
        configs(addr, int(rest[0]), int(rest[1]), int(rest[2]), json.load(open(rest[3])))
    elif what == "oversize":
        oversize(addr, int(rest[0]), int(rest[1]), int(rest[2]), int(rest[3]),
                 json.load(open(rest[4])))
    else:
        raise SystemExit(f"unknown attack {what}")
