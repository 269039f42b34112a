"""Latency percentiles per system, one panel per scenario, at concurrency 1: the picture of what
each system adds to a call. Usage: plot.py results.json out.png (run by bench/run.mjs)."""

import json
import sys

import matplotlib

matplotlib.use("Agg")  # no display
import matplotlib.pyplot as plt  # noqa: E402

results = json.load(open(sys.argv[1]))
first_load = results["plan"]["loads"][0]["name"]
scenarios = results["scenarios"]
order = ["p10", "p25", "p50", "p75", "p90", "p95", "p99", "p99.9"]
rows = (len(scenarios) + 1) // 2
fig, axes = plt.subplots(rows, 2, figsize=(12, 4 * rows), sharey=True, squeeze=False)
for ax, scenario in zip(axes.flat, scenarios):
    for system_id, system in results["systems"].items():
        run = next((r for r in results["runs"] if r["system"] == system_id and r["scenario"] == scenario["id"]
                    and r.get("load") == first_load and not r.get("failed")), None)
        if run is None:
            continue
        xs = [run["latencyMs"][p] for p in order if run["latencyMs"].get(p) is not None]
        ys = [float(p[1:]) for p in order if run["latencyMs"].get(p) is not None]
        # The unmetered gateway dashed, beside the metered one.
        style = "--" if system_id == "switchyard-unmetered" else "-"
        ax.plot(xs, ys, marker="o", markersize=3, linestyle=style, label=system["label"])
    ax.set_xscale("log")
    ax.set_title(scenario["title"], fontsize=9)
    ax.set_xlabel("latency, ms (log scale)")
    ax.grid(True, which="both", alpha=0.3)
for ax in axes[:, 0]:
    ax.set_ylabel("percentile")
for ax in list(axes.flat)[len(scenarios):]:
    ax.set_visible(False)
axes.flat[0].legend(fontsize=8, loc="lower right")
m = results["machine"]
fig.suptitle(f"make bench, {m['date'][:16].replace('T', ' ')} UTC, commit {m['commit']}: latency per request at concurrency 1 "
             f"({results['plan']['loads'][0]['seconds']} s each)", fontsize=10)
fig.tight_layout()
fig.savefig(sys.argv[2], dpi=110)
