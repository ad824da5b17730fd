#!/usr/bin/env python3
"""Times rendering per Job with Runway and with the real Python packages, in
the same run, on the same case files, and prints both and the ratio.

Usage: benches/compare_render.py --runway target/release/runway
"""
import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CASES = ["seed_k8s_run_tags", "step_basic"]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runway", default=os.path.join(ROOT, "target/release/runway"))
    parser.add_argument("--rust-iterations", type=int, default=20000)
    parser.add_argument("--python-iterations", type=int, default=300)
    args = parser.parse_args()

    python_lines = subprocess.run(
        [sys.executable, os.path.join(HERE, "python", "render_bench.py"),
         "--iterations", str(args.python_iterations), *CASES],
        check=True, capture_output=True, text=True,
    ).stdout.splitlines()
    python = {}
    for line in python_lines:
        line = line.strip()
        if line.startswith("{"):
            row = json.loads(line)
            python[row["case"]] = row

    print(f"{'case':<22} {'runway us/job':>14} {'python us/job':>14} {'ratio':>9}")
    worst = None
    for case in CASES:
        path = os.path.join(ROOT, "tests", "fixtures", "cases", case + ".json")
        out = subprocess.run(
            [args.runway, "bench", "render", "--case", path, "--name", case,
             "--iterations", str(args.rust_iterations)],
            check=True, capture_output=True, text=True,
        ).stdout
        rust = json.loads(out.strip().splitlines()[-1])
        py = python[case]
        ratio = py["per_job_us"] / rust["per_job_us"]
        worst = ratio if worst is None else min(worst, ratio)
        print(f"{case:<22} {rust['per_job_us']:>14.2f} {py['per_job_us']:>14.2f} {ratio:>8.0f}x")
    print(f"slowest ratio: {worst:.0f}x (goal: >= 100x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
