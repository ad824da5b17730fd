"""Regenerate the committed render fixtures from the real Dagster packages.

    .venv/bin/python tests/parity/make_fixtures.py [--check]

Writes, for each name in gen_cases.FIXTURE_NAMES:
    tests/fixtures/cases/<name>.json   the case file (`runway render --case` input)
    tests/fixtures/jobs/<name>.json    the Job Dagster renders for it (sorted keys, indent 2)
The fixture cases need no environment variables (asserted here). With --check nothing is
written; the command fails if a committed file differs from what it would write.
Never edit the fixtures by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

import dagster_render  # noqa: E402
import gen_cases  # noqa: E402

CASES_DIR = os.path.join(REPO_ROOT, "tests", "fixtures", "cases")
JOBS_DIR = os.path.join(REPO_ROOT, "tests", "fixtures", "jobs")


def fixture_files() -> dict[str, str]:
    """{absolute path: content} for every fixture file."""
    import kubernetes_validate

    entries = {e["name"]: e for e in gen_cases.fixed_entries()}
    files = {}
    for name in gen_cases.FIXTURE_NAMES:
        entry = entries[name]
        if entry["env"]:
            raise SystemExit(f"fixture {name} needs env {sorted(entry['env'])}; fixtures must not")
        out = dagster_render.render(entry, with_traceback=True)
        if not out["ok"]:
            raise SystemExit(f"fixture {name}: Dagster rejected it: {out['error']}\n{out.get('traceback')}")
        kubernetes_validate.validate(out["job"], "1.36.0", strict=True)
        files[os.path.join(CASES_DIR, name + ".json")] = (
            json.dumps(entry["case"], indent=2, ensure_ascii=False) + "\n"
        )
        files[os.path.join(JOBS_DIR, name + ".json")] = (
            json.dumps(out["job"], indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        )
    return files


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="regenerate tests/fixtures from real Dagster")
    parser.add_argument("--check", action="store_true", help="only compare, write nothing")
    args = parser.parse_args(argv)
    files = fixture_files()
    stale = []
    for path, content in sorted(files.items()):
        rel = os.path.relpath(path, REPO_ROOT)
        current = None
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                current = f.read()
        if current == content:
            print(f"unchanged {rel}")
            continue
        stale.append(rel)
        if args.check:
            print(f"STALE     {rel}")
        else:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w", encoding="utf-8") as f:
                f.write(content)
            print(f"wrote     {rel}")
    if args.check and stale:
        print("fixtures are stale; run: .venv/bin/python tests/parity/make_fixtures.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
