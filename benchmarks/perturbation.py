"""Perturbation check: do the headline conclusions survive a change that moves floating-point results only?

Trains the headline rows (Concat, Ours, the two warm-up controls, and the Table 2 ablations of
Ours) for the given seeds twice, with ``threads=1`` and with ``threads=2`` (another reduction order
in every convolution: the same experiment, other rounding), each into its own results folder, and
reports for each thread count the mean of each row and each paired difference with its 95%
interval, then how far each mean and each paired difference moved and whether each verdict
(the interval's sign: above 0, below 0, or containing 0) is the same.

    python benchmarks/perturbation.py                               # the default profile, its seeds
    python benchmarks/perturbation.py --seeds 0,1,2 --set lr=0.005  # a candidate profile
    python benchmarks/perturbation.py --no-ablations                # Table 1 rows only
    python benchmarks/perturbation.py --seeds 0,1,2,3,4 --table3    # Table 3's runs too (trained, not reported)

``--table3`` also trains Table 3's runs (for the seeds among the profile's ``study_seeds``), so that
``perturbation_mixed.py`` can decide the whole claims table on the perturbed runs; this report leaves them out.

Writes ``benchmarks/results/perturbation_<profile>.json`` and ``.md``. The runs of ``threads=1`` are
the profile's own runs when the profile's ``threads`` is 1 (``results/<profile>/...``: reused, not
retrained); those of the other thread count go to ``results/perturbation-threads<N>/``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_common import machine, write_atomic  # noqa: E402

from gapkit import studies  # noqa: E402
from gapkit.runs import load_data  # noqa: E402
from gapkit.paths import results_dir  # noqa: E402
from gapkit.profiles import get_profile, parse_override  # noqa: E402
from gapkit.results import mean_interval, paired_differences  # noqa: E402

HEADLINE = ("concat", "adaptive", "warmup-only", "warmup-reset")
REFERENCE = "Ours"


def verdict(interval: dict) -> str:
    if interval["ci_low"] > 0:
        return "above 0"
    if interval["ci_high"] < 0:
        return "below 0"
    return "contains 0"


def one_setting(profile, data, seeds, ablations: bool, table3: bool, results_root) -> pd.DataFrame:
    """Train (or reuse) the runs of one setting; the run table of the headline rows and Table 2."""
    specs = studies.plan_table1(profile, seeds, methods=HEADLINE)
    if ablations:
        specs += [s for s in studies.plan_ablations(profile, seeds) if s.options]
    if table3:
        specs += studies.plan_optimizers(profile, [s for s in seeds if s in profile.study_seeds])
    runs = studies.execute(specs, profile, data, results_root=results_root, log=None)
    return runs[runs["study"] != "table3"]


def summarize(runs: pd.DataFrame) -> dict:
    out = {"means": {}, "paired": {}}
    for variant, group in runs.groupby("variant", sort=False):
        out["means"][variant] = {**mean_interval(100 * group["test_acc"]), "seeds": group["seed"].tolist()}
    for variant in out["means"]:
        if variant == REFERENCE:
            continue
        diff = 100 * paired_differences(runs, REFERENCE, variant)
        out["paired"][f"{REFERENCE} - {variant}"] = {**mean_interval(diff), "per_seed": diff.round(2).tolist()}
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="default")
    parser.add_argument("--seeds", default=None, help="comma-separated (default: the profile's)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="profile override")
    parser.add_argument("--threads", default="1,2", help="the thread counts to compare (default 1,2)")
    parser.add_argument("--no-ablations", action="store_true")
    parser.add_argument("--table3", action="store_true", help="also train Table 3's runs (not reported here)")
    parser.add_argument("--tag", default="", help="suffix of the output files and result folders")
    args = parser.parse_args(argv)

    profile = get_profile(args.profile)
    profile = profile.replace(**dict(parse_override(t, profile) for t in args.set))
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else list(profile.seeds)
    data = load_data(profile)
    settings, started = {}, time.time()
    for threads in (int(t) for t in args.threads.split(",")):
        prof = profile.replace(threads=threads, workers=max(1, profile.workers * profile.training.threads // threads))
        own = threads == profile.training.threads and not args.set and not args.tag
        root = None if own else results_dir() / f"perturbation{args.tag}-threads{threads}"
        t0 = time.time()
        runs = one_setting(prof, data, seeds, not args.no_ablations, args.table3, root)
        settings[threads] = {**summarize(runs), "seconds": round(time.time() - t0, 1)}
        print(f"threads={threads}: {len(runs)} runs in {settings[threads]['seconds']} s", flush=True)

    first, *others = settings
    moves = {}
    for other in others:
        a, b = settings[first], settings[other]
        moves[f"{first}->{other}"] = {
            "means": {k: round(b["means"][k]["mean"] - a["means"][k]["mean"], 2) for k in a["means"]},
            "paired": {k: {"moved": round(b["paired"][k]["mean"] - a["paired"][k]["mean"], 2),
                           "verdicts": [verdict(a["paired"][k]), verdict(b["paired"][k])],
                           "same_verdict": verdict(a["paired"][k]) == verdict(b["paired"][k])}
                       for k in a["paired"]},
        }
    report = {"profile": args.profile, "overrides": args.set, "seeds": seeds, "settings": settings, "moves": moves,
              "seconds": round(time.time() - started, 1), "machine": machine()}
    out = Path(__file__).resolve().parent / "results" / f"perturbation_{args.profile}{args.tag}"
    write_atomic(json.dumps(report, indent=1, default=str), out.with_suffix(".json"))
    lines = [f"# Perturbation check: profile {args.profile} {' '.join(args.set)}, seeds {seeds}", "",
             "| comparison (points) | " + " | ".join(f"threads={t}" for t in settings) + " | moved | same verdict |",
             "| --- | " + " | ".join("---" for _ in settings) + " | --- | --- |"]
    for key in settings[first]["paired"]:
        cells = [f"{s['paired'][key]['mean']:+.2f} [{s['paired'][key]['ci_low']:+.2f}, {s['paired'][key]['ci_high']:+.2f}]"
                 for s in settings.values()]
        move = [m["paired"][key] for m in moves.values()]
        lines.append(f"| {key} | " + " | ".join(cells) + f" | {', '.join(format(m['moved'], '+.2f') for m in move)} | "
                     f"{'yes' if all(m['same_verdict'] for m in move) else 'NO'} |")
    lines += ["", "| row mean (%) | " + " | ".join(f"threads={t}" for t in settings) + " | moved |",
              "| --- | " + " | ".join("---" for _ in settings) + " | --- |"]
    for key in settings[first]["means"]:
        cells = [f"{s['means'][key]['mean']:.2f} ± {s['means'][key]['std']:.2f}" for s in settings.values()]
        lines.append(f"| {key} | " + " | ".join(cells) + " | "
                     + ", ".join(f"{m['means'][key]:+.2f}" for m in moves.values()) + " |")
    write_atomic("\n".join(lines) + "\n", out.with_suffix(".md"))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
