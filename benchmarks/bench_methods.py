"""Training time per epoch of every registered method, relative to concat, measured side by side.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_methods.py                       # default profile, all methods
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_methods.py --profile smoke --repeats 2 --out out/bench

Checks the requirement "a method may add at most the work its paper describes": in one process,
on one copy of the data, with one seed and one torch thread count, every method (``--methods a,b``
to choose; concat, the reference, is always added) trains short runs, interleaved over
``--repeats`` measured rounds after ``--warmup-rounds`` dropped ones (each round visits the methods
in a rotated order, so that machine drift and the position in a round hit them all alike).

What is timed: the wall time of each epoch of the method's own training, as the trainer records it
(``seconds`` of ``history["epochs"]``): the training pass over the training split with the method's
hooks, the validation evaluation after it, and, at the start of an adaptive step, the
collection of the training set's gaps and the GMM fit. For the two-stage methods (``adaptive`` and
the controls ``warmup-only``, ``warmup-reset``) only the adaptive-stage epochs are timed: their
warm-up is the same Eq. 7 for all of them. For the single-stage methods every epoch is timed.
The epoch is split in three: the training pass (``train_loop``), the gap collection and GMM fit
(``gmm``), and the rest (evaluation, end-of-epoch hooks).

Schedule: ``--schedule short`` (the default) trains warmup_epochs=1, adaptive_steps=2,
adaptive_epochs=1 (3 epochs; 2 timed for two-stage methods, 3 for single-stage ones) on the
profile's data, model and batch size; ``--schedule profile`` keeps the profile's own schedule;
``--set key=value`` overrides any profile setting after that. The short schedule passes
``opm:modulation_starts=0`` and ``ogm:modulation_starts=0`` (their default, 6, would leave them off in all 3 epochs);
``--option method:key=value`` sets any method option. Work a method does every N epochs counts at
the rate the timed schedule hits it: G-Blending's held-out losses at the edges of its 10-epoch
super-epoch (epoch 0 here), D&R's diagnosis and re-initialisation every 20 epochs (never here);
the mean and maximum per epoch show such epochs, the median does not.

Reported per method: median seconds per epoch over all timed epochs of the measured rounds, its
interquartile range and min-max, the mean, the ratio of the medians to concat's, the min-max over
rounds of the per-round ratio (a paired measure, insensitive to slow drift), and the same median and
ratio for the training pass alone. Results go to ``<out>/methods_<profile>.json`` and ``.md``
(default out: ``benchmarks/results``), with the machine, threads, settings and the command; the
Markdown table is printed. Nothing is asserted: timings are reported.
"""
from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from _bench_common import load_average, machine, write_atomic
from gapkit.runs import build_model, load_data
from gapkit.methods import METHODS, make_method
from gapkit.profiles import get_profile, parse_override
from gapkit.training import Trainer, resolve_device

SHORT_SCHEDULE = {"warmup_epochs": 1, "adaptive_steps": 2, "adaptive_epochs": 1}
#: method options the short schedule needs so that its timed epochs include the method's per-epoch work
SHORT_SCHEDULE_OPTIONS = {"opm": {"modulation_starts": 0}, "ogm": {"modulation_starts": 0}}
REFERENCE = "concat"


class TimedTrainer(Trainer):
    """The trainer, recording also the wall time of each epoch's training pass (``train_loop_seconds``)."""

    def _train_epoch(self, *args, **kwargs) -> dict:
        t0 = time.perf_counter()
        record = super()._train_epoch(*args, **kwargs)
        record["train_loop_seconds"] = time.perf_counter() - t0
        return record


def parse_method_option(text: str) -> tuple[str, str, object]:
    """``method:key=value``; the value is read as JSON (numbers, true/false, null), else kept as a string."""
    try:
        method, rest = text.split(":", 1)
        key, raw = rest.split("=", 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected method:key=value, got {text!r}") from None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return method, key, value


def timed_epochs(history: dict, two_stage: bool) -> list[dict]:
    """The epochs of a run that count: the adaptive stage of a two-stage method, every epoch otherwise."""
    epochs = history["epochs"]
    return [e for e in epochs if e["phase"] == "adaptive"] if two_stage else list(epochs)


def run_once(profile, data, method: str, options: dict, seed: int, device: str) -> dict:
    """One short run of ``method``; its timed epochs' seconds and the run's wall time."""
    model = build_model(profile, data.num_classes, seed=seed)
    config = profile.train_config(method, seed=seed, **options)
    trainer = TimedTrainer(model, data, config, device=device, out_dir=None)
    t0 = time.perf_counter()
    result = trainer.fit()
    wall = time.perf_counter() - t0
    epochs = timed_epochs(result.history, trainer.method.two_stage)
    rows = []
    for e in epochs:
        gmm = float(e.get("gmm_seconds", 0.0))
        loop = float(e["train_loop_seconds"])
        rows.append({"epoch": e["epoch"], "phase": e["phase"], "seconds": float(e["seconds"]),
                     "train_loop_seconds": loop, "gmm_seconds": gmm,
                     "rest_seconds": float(e["seconds"]) - loop - gmm,
                     "data_wait_seconds": float(e.get("data_wait_seconds", 0.0))})
    return {"wall_seconds": wall, "epochs_total": len(result.history["epochs"]), "timed": rows,
            "test_acc": result.summary()["test_acc"]}


def spread(values: list[float]) -> dict:
    a = np.asarray(values, dtype=float)
    q1, med, q3 = np.percentile(a, [25, 50, 75])
    return {"n": int(a.size), "median": float(med), "q1": float(q1), "q3": float(q3), "min": float(a.min()),
            "max": float(a.max()), "mean": float(a.mean())}


def summarize(runs: dict[str, list[dict]], measured_rounds: list[int]) -> dict:
    """Per method: statistics of the timed epochs over the measured rounds, and ratios to concat."""
    def pooled(method, key, rounds=measured_rounds):
        return [e[key] for r in rounds for e in runs[method][r]["timed"]]

    ref_epoch = statistics.median(pooled(REFERENCE, "seconds"))
    ref_loop = statistics.median(pooled(REFERENCE, "train_loop_seconds"))
    out = {}
    for method in runs:
        per_round = [statistics.median(pooled(method, "seconds", [r])) /
                     statistics.median(pooled(REFERENCE, "seconds", [r])) for r in measured_rounds]
        epoch = spread(pooled(method, "seconds"))
        loop = spread(pooled(method, "train_loop_seconds"))
        out[method] = {
            "two_stage": METHODS[method].two_stage,
            "timed": "adaptive-stage epochs" if METHODS[method].two_stage else "all epochs",
            "epoch_seconds": epoch, "ratio_to_concat": epoch["median"] / ref_epoch,
            "ratio_to_concat_per_round": {"min": min(per_round), "max": max(per_round), "values": per_round},
            "train_loop_seconds": loop, "train_loop_ratio_to_concat": loop["median"] / ref_loop,
            "gmm_seconds_median": statistics.median(pooled(method, "gmm_seconds")),
            "rest_seconds_median": statistics.median(pooled(method, "rest_seconds")),
            "data_wait_seconds_median": statistics.median(pooled(method, "data_wait_seconds")),
            "run_wall_seconds": [runs[method][r]["wall_seconds"] for r in measured_rounds],
        }
    return out


def markdown(report: dict) -> str:
    s = report["settings"]
    m = report["machine"]
    lines = [
        f"# Training time per epoch relative to concat ({s['profile']} profile)",
        "",
        f"- Timed: {report['timed']}",
        f"- Schedule: warmup_epochs={s['warmup_epochs']}, adaptive_steps={s['adaptive_steps']}, "
        f"adaptive_epochs={s['adaptive_epochs']} ({s['schedule']}); batch size {s['batch_size']}, "
        f"{s['train_clips']} training clips, width {s['width']}",
        f"- Rounds: {s['repeats']} measured after {s['warmup_rounds']} dropped, methods interleaved in a rotated "
        f"order; seed {s['seed']}; device {s['device']}; torch threads {s['threads']}",
        f"- Method options changed for the benchmark: "
        f"{json.dumps(s['method_options']) if s['method_options'] else 'none'}",
        f"- Machine: {m['cpu']}, {m['cores']} cores ({m['cores_usable']} usable), GPU {m['gpu'] or 'none'}, "
        f"torch {m['torch']}, Python {m['python']}; load average at start {report['load_average_start']}, "
        f"at end {report['load_average_end']}",
        f"- {report['finished']}, `{report['command']}`",
        "",
        "| method | timed epochs | median s/epoch | IQR | min-max | mean | x concat | x concat per round | "
        "training pass s | x concat | GMM s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in report["methods"].items():
        e, lp, pr = r["epoch_seconds"], r["train_loop_seconds"], r["ratio_to_concat_per_round"]
        lines.append(
            f"| {name} | {e['n']} ({'adaptive' if r['two_stage'] else 'all'}) | {e['median']:.3f} | "
            f"{e['q1']:.3f}-{e['q3']:.3f} | {e['min']:.3f}-{e['max']:.3f} | {e['mean']:.3f} | "
            f"{r['ratio_to_concat']:.2f} | {pr['min']:.2f}-{pr['max']:.2f} | {lp['median']:.3f} | "
            f"{r['train_loop_ratio_to_concat']:.2f} | {r['gmm_seconds_median']:.3f} |")
    lines += ["", "Seconds are wall time per epoch; an epoch is its training pass, the validation "
              "evaluation after it, and for the adaptive method the gap collection and GMM fit at the start of "
              "each adaptive step. \"x concat\" is the ratio of the medians; \"per round\" the min-max over "
              "rounds of the ratio within a round.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="default", help="smoke, default or paper (default: default)")
    parser.add_argument("--methods", default=",".join(METHODS),
                        help="comma-separated method names (default: all registered); concat is always added")
    parser.add_argument("--repeats", type=int, default=3, help="measured rounds (default 3)")
    parser.add_argument("--warmup-rounds", type=int, default=1, help="rounds run first and dropped (default 1)")
    parser.add_argument("--schedule", choices=("short", "profile"), default="short",
                        help="short: warmup_epochs=1, adaptive_steps=2, adaptive_epochs=1; profile: the profile's own")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="profile setting overrides")
    parser.add_argument("--option", action="append", default=[], type=parse_method_option, metavar="METHOD:KEY=VALUE",
                        help="a method option (repeatable)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: as the studies train a run, cores // the profile's workers)")
    parser.add_argument("--device", default=None, help="default: the profile's (auto: CUDA if present)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.warmup_rounds < 0:
        parser.error("--repeats must be at least 1 and --warmup-rounds at least 0")

    profile = get_profile(args.profile)
    overrides = dict(SHORT_SCHEDULE) if args.schedule == "short" else {}
    for text in args.set:
        key, value = parse_override(text, profile)
        overrides[key] = value
    profile = profile.replace(**overrides) if overrides else profile

    names = [n.strip() for n in args.methods.split(",") if n.strip()]
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        parser.error(f"unknown method(s) {unknown}; available: {', '.join(METHODS)}")
    if REFERENCE not in names:
        names.insert(0, REFERENCE)
    names = list(dict.fromkeys(names))
    options: dict[str, dict] = {}
    if args.schedule == "short":
        options.update({k: dict(v) for k, v in SHORT_SCHEDULE_OPTIONS.items() if k in names})
    for method, key, value in args.option:
        if method not in METHODS:
            parser.error(f"--option: unknown method {method!r}")
        options.setdefault(method, {})[key] = value
    for method, opts in options.items():
        make_method(method, **opts)  # unknown options fail here, before any training

    device = args.device or profile.device
    threads = args.threads or max(1, torch.get_num_threads() // max(profile.workers, 1))
    torch.set_num_threads(threads)
    load_start = load_average()
    data = load_data(profile, "synthetic")

    rounds = args.warmup_rounds + args.repeats
    runs: dict[str, list[dict]] = {n: [] for n in names}
    order = []
    started = time.perf_counter()
    for r in range(rounds):
        k = r % len(names)
        visit = names[k:] + names[:k]
        order.append(visit)
        tag = "warm-up round, dropped" if r < args.warmup_rounds else "measured"
        for method in visit:
            gc.collect()
            run = run_once(profile, data, method, options.get(method, {}), args.seed, device)
            runs[method].append(run)
            secs = [e["seconds"] for e in run["timed"]]
            print(f"round {r + 1}/{rounds} ({tag}) {method}: {len(secs)} timed epochs, "
                  f"median {statistics.median(secs):.3f} s/epoch, run {run['wall_seconds']:.1f} s",
                  file=sys.stderr, flush=True)
    measured = list(range(args.warmup_rounds, rounds))

    two_stage = [n for n in names if METHODS[n].two_stage]
    timed = ("the wall time of each epoch of the method's own training (training pass + validation "
             "evaluation + end-of-epoch hooks; the adaptive method's gap collection and GMM fit included): the "
             f"adaptive-stage epochs of the two-stage methods ({', '.join(two_stage) or 'none here'}; their warm-up "
             "is the same Eq. 7 for all), every epoch of the single-stage ones")
    report = {
        "benchmark": "training time per epoch relative to concat",
        "command": " ".join([Path(sys.executable).name, *sys.argv]) if argv is None
        else " ".join(["bench_methods.py", *argv]),
        "finished": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "timed": timed,
        "settings": {
            "profile": args.profile, "schedule": args.schedule, "overrides": overrides,
            "warmup_epochs": profile.training.warmup_epochs, "adaptive_steps": profile.training.adaptive_steps,
            "adaptive_epochs": profile.training.adaptive_epochs, "batch_size": profile.training.batch_size,
            "width": profile.width,
            "train_clips": len(data.train), "val_clips": len(data.val), "test_clips": len(data.test),
            "repeats": args.repeats, "warmup_rounds": args.warmup_rounds, "seed": args.seed,
            "threads": torch.get_num_threads(), "device": str(resolve_device(device)),
            "method_options": options, "order": order,
        },
        "machine": machine(),
        "load_average_start": load_start,
        "load_average_end": load_average(),
        "total_seconds": time.perf_counter() - started,
        "methods": summarize(runs, measured),
        "raw": {n: [{"round": r, "measured": r in measured, **run} for r, run in enumerate(rs)]
                for n, rs in runs.items()},
    }
    md = markdown(report)
    out = Path(args.out)
    json_path = write_atomic(json.dumps(report, indent=1), out / f"methods_{args.profile}.json")
    md_path = write_atomic(md, out / f"methods_{args.profile}.md")
    print(md)
    print(f"written to {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
