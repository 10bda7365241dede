"""The headline comparisons, Table 2 and the whole claims table at every seed of the profile, each seed
re-trained under one of two perturbations, against the profile's own runs: how far each number moved, and
which statuses of the claims table changed against how many its re-run chances predicted.

``perturbation.py`` compares two settings for the same seeds. The default profile's headline rows have fifteen
seeds; their perturbed twins were trained in two batches, each the same experiment with other rounding:

    python benchmarks/perturbation.py --seeds 0,1,2,3,4 --table3      # seeds 0-4 with 2 threads
    ATEN_CPU_CAPABILITY=default python benchmarks/perturbation.py --threads 1 --tag=-isa-default \\
        --seeds 5,6,7,8,9,10,11,12,13,14                              # seeds 5-14, vector kernels off

(a 2-thread process on two cores shared with other work is several times slower than two 1-thread ones,
which is why the second batch switches torch's vector kernels off instead, as ``probe_chaos.py`` does).
This script reads the three results folders and reports, for each headline comparison and each Table 2
row (Ours against its ablations and weight controls), the committed value, the perturbed value, how far it
moved and whether its sign verdict is the same; then the whole claims table, built from each set of runs as
notebook 06 builds it (:func:`gapkit.reevaluate.claim_inputs`; Table 3 has the study seeds 0-4, in
the first batch): each status on the committed runs with its re-run chance, the status on the perturbed
ones, and the number of statuses that changed beside the number the chances predict. It trains nothing: a
missing run is an error.

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
from gapkit import reevaluate  # noqa: E402
from gapkit.paper import FULL_MODEL  # noqa: E402
from gapkit.paths import results_dir  # noqa: E402
from gapkit.profiles import get_profile  # noqa: E402
from gapkit.report import claims  # noqa: E402
from gapkit.results import mean_interval, read_runs  # noqa: E402
from gapkit.runs import load_data  # noqa: E402

BATCHES = {"perturbation-threads2": (0, 1, 2, 3, 4),
           "perturbation-isa-default-threads1": (5, 6, 7, 8, 9, 10, 11, 12, 13, 14)}
DESCRIPTION = ("seeds 0-4 trained with 2 threads, seeds 5-14 with 1 thread and torch's vector kernels off "
               "(`ATEN_CPU_CAPABILITY=default`)")

def plan(profile, seeds) -> list:
    """The headline rows, Table 2 (its full model is the headline's Ours) and Table 3 for the study seeds."""
    return (studies.plan_table1(profile, seeds, methods=HEADLINE) + studies.plan_ablations(profile, seeds)
            + studies.plan_optimizers(profile, [s for s in seeds if s in profile.study_seeds]))


def claims_of(runs: pd.DataFrame, profile, data) -> pd.DataFrame:
    """The claims table of these runs, as notebook 06 builds it."""
    t1, t2, t3 = (runs[runs["study"] == study] for study in ("table1", "table2", "table3"))
    return claims.claims_table(table1=t1, table2=t2, table3=t3, profile=profile.name,
                               **reevaluate.claim_inputs(t1, t2, profile, data)).data


def cell(text: str) -> str:
    """Text for a Markdown table cell (``|g|`` would end the cell)."""
    return text.replace("|", "\\|")


def main() -> int:
    profile = get_profile("default")
    seeds = sorted(s for batch in BATCHES.values() for s in batch)
    if seeds != sorted(profile.seeds):
        raise SystemExit(f"the batches cover seeds {seeds}, the profile has {list(profile.seeds)}")
    own = read_runs(plan(profile, seeds), profile)
    parts = []
    for folder, batch in BATCHES.items():
        prof = profile.replace(threads=2) if folder.endswith("threads2") else profile
        parts.append(read_runs(plan(prof, list(batch)), prof, results_root=results_dir() / folder))
    perturbed = pd.concat(parts, ignore_index=True)
    a, b = (summarize(runs[(runs["variant"] != FULL_MODEL) & (runs["study"] != "table3")])
            for runs in (own, perturbed))
    lines = [f"# Tables 1-3 and the claims, {len(seeds)} seeds: committed runs vs the same seeds perturbed",
             "", f"Perturbed: {DESCRIPTION}.", "",
             "| comparison (points, paired) | committed | perturbed | moved | same sign verdict |",
             "| --- | --- | --- | --- | --- |"]
    for key in a["paired"]:
        x, y = a["paired"][key], b["paired"][key]
        same = verdict(x) == verdict(y)
        lines.append(f"| {cell(key)} | {x['mean']:+.2f} [{x['ci_low']:+.2f}, {x['ci_high']:+.2f}] | "
                     f"{y['mean']:+.2f} [{y['ci_low']:+.2f}, {y['ci_high']:+.2f}] | {y['mean'] - x['mean']:+.2f} | "
                     f"{'yes' if same else 'NO'} ({verdict(x)}{'' if same else ' -> ' + verdict(y)}) |")
    for runs, summary in ((own, a), (perturbed, b)):  # Table 3's rows beside them (its study seeds)
        for variant, group in runs[runs["study"] == "table3"].groupby("variant", sort=False):
            summary["means"][f"Table 3: {variant}"] = mean_interval(100 * group["test_acc"])
    lines += ["", "| row mean (%) | committed | perturbed | moved | committed half-width |",
              "| --- | --- | --- | --- | --- |"]
    for key in a["means"]:
        x, y = a["means"][key], b["means"][key]
        lines.append(f"| {cell(key)} | {x['mean']:.2f} ± {x['std']:.2f} | {y['mean']:.2f} ± {y['std']:.2f} | "
                     f"{y['mean'] - x['mean']:+.2f} | {(x['ci_high'] - x['ci_low']) / 2:.2f} |")

    data = load_data(profile)
    mine, theirs = claims_of(own, profile, data), claims_of(perturbed, profile, data)
    if list(mine["claim"]) != list(theirs["claim"]):
        differ = set(mine["claim"]) ^ set(theirs["claim"])
        raise SystemExit(f"the two claims tables hold different rows: {', '.join(sorted(differ))}")
    statuses = [{"claim": x.claim, "committed": x.status, "rerun": None if pd.isna(x.rerun) else x.rerun,
                 "perturbed": y.status, "same": x.status == y.status}
                for x, y in zip(mine.itertuples(), theirs.itertuples())]
    changed = sum(not s["same"] for s in statuses)
    expected = sum(1 - s["rerun"] for s in statuses if s["rerun"] is not None)
    with_chance = sum(s["rerun"] is not None for s in statuses)
    lines += ["", "| claim | committed status | re-run chance | perturbed status | same |",
              "| --- | --- | --- | --- | --- |"]
    lines += [f"| {cell(s['claim'])} | {s['committed']} | "
              f"{'-' if s['rerun'] is None else format(s['rerun'], '.2f')} | {s['perturbed']} | "
              f"{'yes' if s['same'] else 'NO'} |" for s in statuses]
    lines += ["", f"{changed} of {len(statuses)} statuses changed; the re-run chances of the {with_chance} rows that "
                  f"have one predict {expected:.1f} changes among them."]
    report = {"seeds": seeds, "batches": {k: list(v) for k, v in BATCHES.items()}, "committed": a,
              "perturbed": b, "claims": statuses, "changed": changed, "expected_changes": round(expected, 2),
              "machine": machine()}
    out = Path(__file__).resolve().parent / "results" / "perturbation_default_mixed"
    write_atomic(json.dumps(report, indent=1, default=str), out.with_suffix(".json"))
    write_atomic("\n".join(lines) + "\n", out.with_suffix(".md"))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
