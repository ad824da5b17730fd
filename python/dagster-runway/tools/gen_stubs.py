#!/usr/bin/env python3
"""Generates the committed gRPC stubs of `dagster_runway` from `proto/runway/v1/launcher.proto`.

The stubs are committed so the package installs without grpcio-tools. The test
`test_stubs_are_current` regenerates them into a temporary folder with the pinned
grpcio-tools and fails if they differ from the committed ones; run this script to
refresh them after a proto change:

    .venv/bin/python python/dagster-runway/tools/gen_stubs.py
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGE_ROOT = os.path.dirname(HERE)
REPO_ROOT = os.path.dirname(os.path.dirname(PACKAGE_ROOT))
PROTO_ROOT = os.path.join(REPO_ROOT, "proto")
PROTO_FILE = "runway/v1/launcher.proto"
STUB_DIR = os.path.join(PACKAGE_ROOT, "dagster_runway", "_proto")
STUBS = ("launcher_pb2.py", "launcher_pb2.pyi", "launcher_pb2_grpc.py")

# protoc names the message module by its path under the proto root; inside the package
# it is a sibling module.
_ABSOLUTE_IMPORT = "from runway.v1 import launcher_pb2 as runway_dot_v1_dot_launcher__pb2"
_RELATIVE_IMPORT = "from . import launcher_pb2 as runway_dot_v1_dot_launcher__pb2"


def generate(out_dir: str) -> list[str]:
    """Writes the stubs into out_dir and returns their paths."""
    from grpc_tools import protoc

    with tempfile.TemporaryDirectory(prefix="runway-stubs-") as tmp:
        argv = [
            "grpc_tools.protoc",
            f"--proto_path={PROTO_ROOT}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
            PROTO_FILE,
        ]
        # protoc resolves paths relative to the working directory; run from the proto root
        # so nothing of this machine ends up in the output.
        cwd = os.getcwd()
        os.chdir(PROTO_ROOT)
        try:
            code = protoc.main(argv)
        finally:
            os.chdir(cwd)
        if code != 0:
            raise RuntimeError(f"grpc_tools.protoc failed with exit code {code}")
        os.makedirs(out_dir, exist_ok=True)
        written = []
        for name in STUBS:
            src = os.path.join(tmp, "runway", "v1", name)
            with open(src, encoding="utf-8") as f:
                text = f.read()
            if name.endswith("_grpc.py"):
                if _ABSOLUTE_IMPORT not in text:
                    raise RuntimeError(f"{name}: the expected import line is missing")
                text = text.replace(_ABSOLUTE_IMPORT, _RELATIVE_IMPORT)
            dst = os.path.join(out_dir, name)
            with open(dst, "w", encoding="utf-8") as f:
                f.write(text)
            written.append(dst)
        return written


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        for path in generate(tmp):
            shutil.copyfile(path, os.path.join(STUB_DIR, os.path.basename(path)))
    print(f"wrote {', '.join(STUBS)} into dagster_runway/_proto")
    return 0


if __name__ == "__main__":
    sys.exit(main())
