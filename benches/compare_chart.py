"""`make compare`'s report (compare_workers.py): the Markdown table and the timeline chart
(matplotlib, Agg) drawn from compare.json's figures."""
from __future__ import annotations

import statistics


def _last(side: dict, job: str) -> dict:
    runs = [k for k in side["runs"] if k.startswith(job + "#")]
    return side["runs"][sorted(runs, key=lambda k: int(k.split("#")[1]))[-1]]


def _stats(values) -> tuple[float, float]:
    values = list(values)
    return (statistics.median(values), max(values)) if values else (float("nan"),) * 2


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.1f}x" if b else "-"


def rows(result: dict, jobs: dict) -> list[dict]:
    """Per job and figure: stock, Runway and their ratio, from the last run of each."""
    out = []
    sides = result["sides"]
    for job in jobs:
        s, r = _last(sides["stock"], job), _last(sides["runway"], job)
        figures = [("wall time, RUN_START to RUN_SUCCESS", "s", s["wall_s"], r["wall_s"])]
        for key, what in (("dependency_overhead_s", "dependency"), ("slot_overhead_s", "slot")):
            if s[key]:
                (sp, sm), (rp, rm) = _stats(s[key].values()), _stats(r[key].values())
                n = f"{len(s[key])} step{'s' if len(s[key]) > 1 else ''}"
                figures += [(f"{what} overhead p50 ({n})", "s", sp, rp),
                            (f"{what} overhead max", "s", sm, rm)]
        sp, _ = _stats(s["event_gap_s"].values())
        rp, _ = _stats(r["event_gap_s"].values())
        figures.append(("STEP_SUCCESS -> next STEP_START p50", "s", sp, rp))
        for k, what in (("rss_peak_mib", "workers' RSS peak"),
                        ("rss_mean_mib", "workers' RSS mean"),
                        ("pss_peak_mib", "workers' PSS peak")):
            figures.append((what, "MiB", s["memory"][k], r["memory"][k]))
        for what, unit, a, b in figures:
            out.append({"job": job, "figure": what, "unit": unit, "stock": a, "runway": b,
                        "ratio": a / b if b else None})
    return out


def markdown(result: dict, jobs: dict, labels: dict) -> str:
    m = result["machine"]
    sides = result["sides"]
    procs = {k: _last(sides[k], next(iter(jobs)))["memory"]["processes"] for k in sides}
    lines = [
        f"Measured {result['date']} on {m['arch']}, {m['cores']} cores ({m['cpu']},"
        f" {m['memory_gib']} GiB), shared with other work; Dagster"
        f" {result['versions']['dagster']}, dagster-celery-k8s"
        f" {result['versions']['dagster-celery-k8s']}, Celery {result['versions']['celery']}"
        f" (prefork, {procs['stock']} processes) vs `runway worker` ({procs['runway']} process),"
        f" both at concurrency {result['concurrency']}. Each job ran {result['runs_per_job']}"
        " times per side; the figures are from the last run.", ""]
    for job in jobs:
        lines += [f"**{job}**", "", "| figure | stock Celery | Runway | stock / Runway |",
                  "|---|---:|---:|---:|"]
        for row in rows(result, jobs):
            if row["job"] != job:
                continue
            fmt = "{:.0f} " if row["unit"] == "MiB" else "{:.2f} "
            ratio = f"{row['ratio']:.1f}x" if row["ratio"] else "-"
            lines.append(f"| {row['figure']} | {fmt.format(row['stock'])}{row['unit']} |"
                         f" {fmt.format(row['runway'])}{row['unit']} | {ratio} |")
        lines.append("")
    return "\n".join(lines)


def timeline(result: dict, jobs: dict, labels: dict, path: str) -> None:
    """Per job, one panel per side on the same time scale: a bar per step from its Job's
    creation to its pod's exit (light), the op's own STEP_START..STEP_SUCCESS inside it
    (dark), and the run's end (dashed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sides = list(result["sides"])
    colors = {"stock": ("#f4b183", "#c55a11"), "runway": ("#9dc3e6", "#2e75b6")}
    heights = [len(steps) for steps in jobs.values() for _ in sides]
    tall = 0.19 * sum(heights) + 2.6
    fig, axes = plt.subplots(len(heights), 1, figsize=(10, tall),
                             gridspec_kw={"height_ratios": heights, "hspace": 0.3})
    fig.subplots_adjust(top=1 - 0.75 / tall, bottom=0.6 / tall)
    i = 0
    for job, deps in jobs.items():
        runs = {side: _last(result["sides"][side], job) for side in sides}
        end = max(max(r["wall_s"], max(s["pod_exit"] for s in r["steps"].values()))
                  for r in runs.values())
        for side in sides:
            ax, run = axes[i], runs[side]
            i += 1
            order = list(deps)
            for y, key in enumerate(order):
                s = run["steps"][key]
                ax.barh(y, s["pod_exit"] - s["created"], left=s["created"], height=0.7,
                        color=colors[side][0])
                ax.barh(y, s["step_success"] - s["step_start"], left=s["step_start"],
                        height=0.35, color=colors[side][1])
            ax.axvline(run["wall_s"], color="black", linestyle="--", linewidth=0.8)
            ax.set_xlim(0, end * 1.02)
            ax.set_ylim(len(order) - 0.4, -0.6)
            ax.set_yticks(range(len(order)))
            ax.set_yticklabels(order, fontsize=6 if len(order) > 10 else 7)
            dep = run["dependency_overhead_s"]
            ax.set_title(f"{job}, {labels[side]}: {run['wall_s']:.1f} s,"
                         f" dependency overhead p50 {statistics.median(dep.values()):.2f} s,"
                         f" RSS peak {run['memory']['rss_peak_mib']:.0f} MiB",
                         fontsize=8.5, loc="left")
            ax.tick_params(axis="x", labelsize=7)
            ax.grid(axis="x", linewidth=0.3)
    axes[-1].set_xlabel("seconds since RUN_START; light: step Job created -> pod exit,"
                        " dark: the op (STEP_START -> STEP_SUCCESS), dashed: RUN_SUCCESS",
                        fontsize=7.5)
    m = result["machine"]
    fig.suptitle(f"celery_k8s_job_executor, stock Celery vs Runway workers (concurrency"
                 f" {result['concurrency']}), {result['date']}, {m['arch']} {m['cores']} cores",
                 fontsize=9.5)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
