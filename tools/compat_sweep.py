"""Compatibility sweep: does Runway render each Dagster minor line's Jobs as that line does.

    .venv/bin/python tools/compat_sweep.py [--count 300] [--versions 1.1.21,1.13.27] [--seed N]
                                           [--runway-bin PATH] [--no-install]

For the last patch of every Dagster minor line from 1.1 to 1.13 (SWEEP, from the research's
version table):
1. a venv target/compat/<version>/ (pyenv's Python 3.10.13), with the Dagster trio
   (dagster, dagster-k8s, dagster-celery-k8s) pinned exactly, dagster-celery at the same library
   version, pip resolving the rest, plus the old-dependency pins that line needs (EXTRA_PINS,
   the same kind as python/constraints-1.1.9.txt). A venv whose .sweep-installed stamp matches is
   reused, so an interrupted sweep resumes where it stopped;
2. a corpus for that version (tests/parity/gen_cases.py): the 1.1.9 generator mode for lines up to
   1.1, the 1.13 mode for 1.13, and for the lines in between the intersection (only inputs both
   1.1.9 and 1.13 accept); run args and Celery kwargs computed by that version's real Dagster;
3. every case rendered by that version's real packages (tests/parity/dagster_batch.py), and by
   `runway render` with the case's top-level "dagster_version" set to that version (Runway
   applies that release's rules; its profile, from `runway render --profiles`, is reported);
   lines between 1.1 and 1.13 also get the full 1.13 corpus, whose newer keys they must refuse;
4. a markdown table (stdout and target/compat-sweep.md): per version the share of cases where
   runway's outcome equals Dagster's: the same Job (byte-identical after key sorting, step args
   decoded; `app.kubernetes.io/version`, which every Dagster sets to its own version, set aside;
   before dagster 1.5.3 the hash-ordered lists of K8sRunLauncher Jobs as multisets) or both refuse.

Not part of `make test` (it installs 13 Dagster versions): `make compat-sweep`.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PARITY = os.path.join(ROOT, "tests", "parity")
sys.path.insert(0, PARITY)

import dagster_batch  # noqa: E402
import gen_cases  # noqa: E402
import parity_jobs  # noqa: E402

# Last patch of every minor line and its library version (dagster-k8s / -celery-k8s / -celery).
SWEEP = [
    ("1.1.21", "0.17.21"), ("1.2.7", "0.18.7"), ("1.3.14", "0.19.14"), ("1.4.17", "0.20.17"),
    ("1.5.14", "0.21.14"), ("1.6.14", "0.22.14"), ("1.7.16", "0.23.16"), ("1.8.13", "0.24.13"),
    ("1.9.13", "0.25.13"), ("1.10.21", "0.26.21"), ("1.11.16", "0.27.16"), ("1.12.22", "0.28.22"),
    ("1.13.27", "0.29.27"),
]
BASE_PYTHON = os.path.expanduser("~/.pyenv/versions/3.10.13/bin/python")
COMPAT_DIR = os.path.join(ROOT, "target", "compat")
TABLE_PATH = os.path.join(ROOT, "target", "compat-sweep.md")
# dagster-k8s < 0.21.3 (dagster < 1.5.3) orders some de-duplicated lists by str hash.
HASH_ORDERED_BEFORE = (1, 5, 3)

# Old-dependency pins, only where a line needs them: Dagster before 1.5 leaves pendulum (3.x
# breaks it), pydantic and sqlalchemy unbounded, so those lines get their era's releases (the
# 1.1/1.2 lines the early-2023 set of python/constraints-1.1.9.txt); dagster-k8s before 0.29 cannot
# read kubernetes >= 33's `dict[str, str]` model types.
EARLY_2023 = ["pendulum==2.1.2", "sqlalchemy==1.4.46", "pydantic==1.10.4", "celery==5.2.7",
              "kombu==5.2.4", "kubernetes==25.3.0", "urllib3==1.26.14"]


def extra_pins(version: str) -> list[str]:
    line = gen_cases.parse_version(version)[:2]
    if line <= (1, 2):
        return list(EARLY_2023)
    if line <= (1, 4):
        return ["pendulum<3", "pydantic<2", "sqlalchemy<2", "kubernetes<33"]
    if line <= (1, 12):
        return ["kubernetes<33"]
    return []


def requirements(version: str, lib: str) -> list[str]:
    return [f"dagster=={version}", f"dagster-k8s=={lib}", f"dagster-celery-k8s=={lib}",
            f"dagster-celery=={lib}", *extra_pins(version)]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def ensure_venv(version: str, lib: str, install: bool) -> str:
    """target/compat/<version>/bin/python with that version's packages (reused when stamped)."""
    venv = os.path.join(COMPAT_DIR, version)
    python = os.path.join(venv, "bin", "python")
    stamp = os.path.join(venv, ".sweep-installed")
    reqs = requirements(version, lib)
    if os.path.exists(stamp):
        with open(stamp, encoding="utf-8") as f:
            if f.read().split() == reqs:
                return python
    if not install:
        raise RuntimeError(f"no venv for {version} at {venv} (run without --no-install)")
    if not os.path.exists(python):
        log(f"[{version}] creating {venv}")
        subprocess.run([BASE_PYTHON, "-m", "venv", venv], check=True)
    log(f"[{version}] pip install {' '.join(reqs)}")
    t0 = time.monotonic()
    proc = subprocess.run([python, "-m", "pip", "install", "--disable-pip-version-check", "-q", *reqs],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"pip install failed for {version}:\n{proc.stderr[-3000:]}")
    with open(stamp, "w", encoding="utf-8") as f:
        f.write("\n".join(reqs) + "\n")
    log(f"[{version}] installed in {time.monotonic() - t0:.0f}s")
    return python


def scrub_version_label(job):
    for meta in ((job or {}).get("metadata"), (((job or {}).get("spec") or {}).get("template") or {}).get("metadata")):
        labels = (meta or {}).get("labels")
        if isinstance(labels, dict) and "app.kubernetes.io/version" in labels:
            labels["app.kubernetes.io/version"] = "<the running Dagster's version>"
    return job


def same_outcome(dagster: dict, runway: dict, case: dict, hash_ordered: bool) -> bool:
    if runway.get("crash") or dagster.get("harness_error"):
        return False
    if dagster["ok"] != runway["ok"]:
        return False
    if not dagster["ok"]:
        return True
    mode = "1.1.9" if hash_ordered else "1.13.27"  # parity_jobs' multiset rule applies to 1.1.9

    def form(job):
        return json.dumps(scrub_version_label(parity_jobs.comparable(job, mode, case)), sort_keys=True)
    return form(dagster["job"]) == form(runway["job"])


def runway_profiles(runway_bin: str) -> list[tuple[tuple[int, int, int], str]]:
    """(first release, "Pn") of every profile, from `runway render --profiles`."""
    out = subprocess.run([runway_bin, "render", "--profiles"], capture_output=True, text=True,
                         check=True).stdout
    rows = []
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].startswith("P") and cells[0][1:].isdigit():
            rows.append((gen_cases.parse_version(cells[1]), cells[0]))
    return rows


def profile_of(version: str, profiles) -> str:
    v = gen_cases.parse_version(version)
    return [name for first, name in profiles if first <= v][-1]


def corpora(version: str) -> list:
    """The version's own generator mode, and for the lines between 1.1 and 1.13 also the full
    1.13 corpus: inputs the line does not know must be refused by Runway as by Dagster."""
    own = gen_cases.generator_mode(version)
    return [own] if own is gen_cases.ACCEPTS_1_13 else [own, gen_cases.ACCEPTS_1_13]


def sweep_corpus(version: str, python: str, accepts, args, d: str) -> dict:
    entries = gen_cases.generate(args.seed, args.count, version, python=python, drop_failed=True,
                                 accepts=accepts)
    results = dagster_batch.run_batch(python, "render", entries)
    hash_ordered = gen_cases.parse_version(version) < HASH_ORDERED_BEFORE
    paths = []
    for i, e in enumerate(entries):
        case = {**e["case"], "dagster_version": version}
        path = os.path.join(d, f"{accepts.mode}-{i:05d}.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(case, f, ensure_ascii=False)
        paths.append(path)
    rw = parity_jobs.run_runway_all(args.runway_bin, paths, [e["env"] for e in entries])
    same = [same_outcome(p, r, e["case"], hash_ordered) for e, p, r in zip(entries, results, rw)]
    misses = collections.Counter(
        ("runway refused: " + (r.get("error") or "")[:90]) if p["ok"] and not r["ok"]
        else ("runway rendered what Dagster refused" if r["ok"] and not p["ok"] else "Job differs")
        for p, r, ok in zip(results, rw, same) if not ok)
    return {"mode": accepts.mode, "cases": len(entries), "same": sum(same),
            "refused": sum(not p["ok"] for p in results), "misses": misses.most_common(3)}


def sweep_version(version: str, lib: str, args, profiles) -> dict:
    row = {"version": version, "lib": lib, "profile": profile_of(version, profiles),
           "corpora": [], "note": ""}
    try:
        python = ensure_venv(version, lib, not args.no_install)
        installed = dagster_batch.run_batch(python, "version", [])
        if installed["dagster"] != version or installed["dagster-k8s"] != lib:
            raise RuntimeError(f"venv has {installed}")
    except Exception as exc:  # noqa: BLE001 - reported in the table, the sweep goes on
        row["note"] = f"setup failed: {str(exc).splitlines()[0][:120]}"
        log(f"[{version}] {exc}")
        return row
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"compat-{version}-") as d:
        for accepts in corpora(version):
            row["corpora"].append(sweep_corpus(version, python, accepts, args, d))
    row["seconds"] = round(time.monotonic() - t0, 1)
    log(f"[{version}] " + ", ".join(f"{c['mode']} {c['same']}/{c['cases']}" for c in row["corpora"])
        + f" in {row['seconds']}s")
    return row


def table(rows: list[dict], args) -> str:
    head = ["Dagster", "dagster-k8s / -celery-k8s", "Runway profile", "corpus: identical / cases "
            "(Dagster refused)", "identical"]
    lines = [
        "# Runway compatibility sweep",
        "",
        f"Seed {args.seed}, up to {args.count} cases per corpus. Each case is rendered by that "
        "Dagster version's real packages and by `runway render` with `dagster_version` set to the "
        "version; it counts when the outcomes are equal: the same Job (byte-identical after key "
        "sorting, step args decoded, `app.kubernetes.io/version` set aside since every Dagster "
        "stamps its own; before 1.5.3 the hash-ordered lists of K8sRunLauncher Jobs as "
        "multisets) or both refuse. Corpora: `1.1.9` = what 1.1.9 accepts plus newer-key "
        "rejections, `intersection` = inputs 1.1.9 and 1.13 both accept, `1.13` = the full 1.13 "
        "corpus (for older lines its newer keys must be refused).",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---" for _ in head) + "|",
    ]
    for r in rows:
        done = [f"{c['mode']}: {c['same']}/{c['cases']} ({c['refused']})" for c in r["corpora"]]
        total = sum(c["cases"] for c in r["corpora"])
        same = sum(c["same"] for c in r["corpora"])
        verdict = (f"{100.0 * same / total:.1f}%" if total else (r["note"] or "-"))
        lines.append("| " + " | ".join([r["version"], r["lib"], r["profile"], "; ".join(done) or "-",
                                         verdict]) + " |")
    misses = [f"- {r['version']} {c['mode']}: {m} ×{n}" for r in rows for c in r["corpora"]
              for m, n in c["misses"]]
    notes = [f"- {r['version']}: {r['note']}" for r in rows if r["note"]]
    if misses or notes:
        lines += ["", *misses, *notes]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=300, help="cases per version (default 300)")
    parser.add_argument("--seed", type=int, default=gen_cases.DEFAULT_SEED)
    parser.add_argument("--versions", help="comma-separated subset of: "
                        + ",".join(v for v, _ in SWEEP))
    parser.add_argument("--runway-bin", default=os.environ.get("RUNWAY_BIN")
                        or os.path.join(ROOT, "target", "debug", "runway"))
    parser.add_argument("--no-install", action="store_true", help="only use existing venvs")
    args = parser.parse_args(argv)
    args.runway_bin = os.path.abspath(args.runway_bin)
    if not os.access(args.runway_bin, os.X_OK):
        parser.error(f"no runway binary at {args.runway_bin}")
    wanted = set(args.versions.split(",")) if args.versions else None
    unknown = (wanted or set()) - {v for v, _ in SWEEP}
    if unknown:
        parser.error(f"not in the sweep: {sorted(unknown)}")
    profiles = runway_profiles(args.runway_bin)
    rows = [sweep_version(v, lib, args, profiles) for v, lib in SWEEP if wanted is None or v in wanted]
    text = table(rows, args)
    os.makedirs(COMPAT_DIR, exist_ok=True)
    with open(TABLE_PATH, "w", encoding="utf-8") as f:
        f.write(text)
    with open(os.path.join(COMPAT_DIR, "sweep-results.json"), "w", encoding="utf-8") as f:
        json.dump(rows, f, indent=1)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
