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
    parser.add_argument("--out", help="also write one JSON line per case here (make bench's summary)")
    parser.add_argument("--callgrind", action="store_true",
                        help="count instructions per Job with valgrind (repeatable on a noisy machine)")
    args = parser.parse_args()
    rows = []

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
        row = {"bench": "render", "case": case, "runway_us": rust["per_job_us"],
               "runway_median_us": rust["median_us"], "runway_p99_us": rust["p99_us"],
               "python_us": py["per_job_us"], "ratio": ratio}
        if args.callgrind:
            row["instructions_per_job"] = instructions_per_job(args.runway, path)
            print(f"{'':<22} {row['instructions_per_job']:>14,.0f} instructions per Job (callgrind)")
        rows.append(row)
    print(f"slowest ratio: {worst:.0f}x (goal: >= 100x)")
    if args.out:
        with open(args.out, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
    return 0


def instructions(runway: str, case: str, iterations: int) -> int:
    """Instructions of one `runway bench render` process under callgrind."""
    out = os.path.join(ROOT, "target", f"callgrind.{os.getpid()}.{iterations}")
    try:
        run = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", runway, "bench",
             "render", "--case", case, "--iterations", str(iterations)],
            check=True, capture_output=True, text=True)
        # callgrind's summary line: "==pid== Collected : <instructions>"
        for line in run.stderr.splitlines():
            if "Collected :" in line:
                return int(line.rsplit(":", 1)[1].strip())
        raise RuntimeError(f"no instruction count in callgrind's output: {run.stderr[-500:]}")
    finally:
        if os.path.exists(out):
            os.remove(out)


def instructions_per_job(runway: str, case: str) -> float:
    """Two runs that differ only in iteration count: the difference is the
    Jobs alone (start-up, parsing and warm-up cancel out)."""
    return (instructions(runway, case, 400) - instructions(runway, case, 200)) / 200


if __name__ == "__main__":
    sys.exit(main())
