"""The headline comparisons and Table 2 at ten seeds, each seed re-trained under one of two perturbations,
against the profile's own runs.

``perturbation.py`` compares two settings for the same seeds. The default profile's headline rows have ten
seeds; their perturbed twins were trained in two batches, each the same experiment with other rounding:

    python benchmarks/perturbation.py --seeds 0,1,2,3,4               # seeds 0-4 with 2 threads
    ATEN_CPU_CAPABILITY=default python benchmarks/perturbation.py --threads 1 --tag=-isa-default \\
        --seeds 5,6,7,8,9                                             # seeds 5-9, vector kernels off

(a 2-thread process on two cores shared with other work is several times slower than two 1-thread ones,
which is why the second batch switches torch's vector kernels off instead, as ``probe_chaos.py`` does).
This script reads the three results folders and reports, for each headline comparison and each Table 2
row (Ours against its ablations and weight controls), the committed value, the perturbed value (seeds 0-4
from the first folder, 5-9 from the second), how far it moved and whether its verdict (the interval's sign)
is the same. It trains nothing: a missing run is an error.

    python benchmarks/perturbation_mixed.py

Writes ``benchmarks/results/perturbation_default_mixed.json`` and ``.md``.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_common import machine, write_atomic  # noqa: E402
from perturbation import HEADLINE, summarize, verdict  # noqa: E402

from gapkit import studies  # noqa: E402
from gapkit.paths import results_dir  # noqa: E402
from gapkit.profiles import get_profile  # noqa: E402
from gapkit.results import read_runs  # noqa: E402

BATCHES = {"perturbation-threads2": (0, 1, 2, 3, 4), "perturbation-isa-default-threads1": (5, 6, 7, 8, 9)}


def plan(profile, seeds) -> list:
    """The headline rows and Table 2's branches of Ours (its full model is the headline's Ours)."""
    return (studies.plan_table1(profile, seeds, methods=HEADLINE)
            + [s for s in studies.plan_ablations(profile, seeds) if s.options])


def main() -> int:
    profile = get_profile("default")
    seeds = [s for batch in BATCHES.values() for s in batch]
    own = read_runs(plan(profile, seeds), profile)
    parts = []
    for folder, batch in BATCHES.items():
        prof = profile.replace(threads=2) if folder.endswith("threads2") else profile
        parts.append(read_runs(plan(prof, list(batch)), prof, results_root=results_dir() / folder))
    perturbed = pd.concat(parts, ignore_index=True)
    a, b = summarize(own), summarize(perturbed)
    lines = ["# Headline comparisons and Table 2, 10 seeds: committed runs vs the same seeds perturbed",
             "", "Perturbed: seeds 0-4 trained with 2 threads, seeds 5-9 with 1 thread and torch's vector kernels "
             "off (`ATEN_CPU_CAPABILITY=default`).", "",
             "| comparison (points, paired) | committed | perturbed | moved | same verdict |",
             "| --- | --- | --- | --- | --- |"]
    report = {"seeds": seeds, "batches": {k: list(v) for k, v in BATCHES.items()}, "committed": a,
              "perturbed": b, "machine": machine()}
    for key in a["paired"]:
        x, y = a["paired"][key], b["paired"][key]
        same = verdict(x) == verdict(y)
        lines.append(f"| {key} | {x['mean']:+.2f} [{x['ci_low']:+.2f}, {x['ci_high']:+.2f}] | "
                     f"{y['mean']:+.2f} [{y['ci_low']:+.2f}, {y['ci_high']:+.2f}] | {y['mean'] - x['mean']:+.2f} | "
                     f"{'yes' if same else 'NO'} ({verdict(x)}{'' if same else ' -> ' + verdict(y)}) |")
    lines += ["", "| row mean (%) | committed | perturbed | moved |", "| --- | --- | --- | --- |"]
    for key in a["means"]:
        x, y = a["means"][key], b["means"][key]
        lines.append(f"| {key} | {x['mean']:.2f} ± {x['std']:.2f} | {y['mean']:.2f} ± {y['std']:.2f} | "
                     f"{y['mean'] - x['mean']:+.2f} |")
    out = Path(__file__).resolve().parent / "results" / "perturbation_default_mixed"
    write_atomic(json.dumps(report, indent=1, default=str), out.with_suffix(".json"))
    write_atomic("\n".join(lines) + "\n", out.with_suffix(".md"))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
