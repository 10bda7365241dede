"""Where a default-profile epoch's time goes on the CPU, and what the levers on it save.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_epoch_parts.py [--profile default] [--repeats 3]

One thread, as each of the studies' two runs at once has. Timed, each the median of ``--repeats`` rounds
(one model, seed 0, data already cached), in torch's default memory layout and in channels_last:

- ``train``: one epoch of concat training (the trainer's own one-epoch run, its validation evaluation and its
  one test evaluation subtracted);
- ``val``, ``test``: one evaluation of the split (the trainer evaluates val after every epoch, test once for
  the selected model and once for the last);
- ``gaps``: one pass over the training split in eval mode (what each adaptive step does before its GMM fit).

From these it projects the seconds of a concat epoch (``train + val`` and the test evaluations spread over
the run's epochs) under four settings: test evaluated after every epoch (as the trainer did before it
tested only the selected and the last model); as the trainer runs now (two test evaluations per run);
channels_last on the CPU (the trainer takes it on CUDA only); both. channels_last is a lead with a catch:
with torch 2.11.0's CPU kernels the smoke profile's model (width 4) corrupts the heap in its backward pass
(the process aborts), while the default profile's (width 8) trains; and it changes the rounding of every
convolution, so every committed run would have to be trained again. Testing only the selected and the last
model keeps every number a run computes. Nothing is asserted: timings are reported, with the machine, in
``benchmarks/results/epoch_parts.{json,md}``.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from _bench_common import machine, write_atomic
from gapkit.profiles import get_profile
from gapkit.runs import build_model, load_data
from gapkit.training import Trainer

LAYOUTS = ("default", "channels_last")


def trainer_for(profile, data, layout: str) -> Trainer:
    """A one-epoch concat trainer on the CPU, in ``layout``."""
    config = dataclasses.replace(profile.train_config("concat", seed=0), warmup_epochs=1, adaptive_steps=0, threads=1)
    trainer = Trainer(build_model(profile, data.num_classes, seed=0), data, config, device="cpu")
    if layout == "channels_last":  # as the trainer does on CUDA: the model and each batch's spectrograms
        trainer.channels_last = True
        trainer.model = trainer.model.to(memory_format=torch.channels_last)
        trainer.step_model = trainer.model
    return trainer


def seconds(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def measure(profile, data, layout: str, repeats: int) -> dict:
    """Median seconds of each part over ``repeats`` rounds."""
    rounds = {"train": [], "val": [], "test": [], "gaps": []}
    for _ in range(repeats):
        trainer = trainer_for(profile, data, layout)
        epoch = seconds(trainer.fit)
        val, test = seconds(lambda: trainer.evaluate("val")), seconds(lambda: trainer.evaluate("test"))
        rounds["val"].append(val)
        rounds["test"].append(test)
        rounds["train"].append(epoch - val - test)
        rounds["gaps"].append(seconds(lambda: trainer.evaluate("train")))
    return {part: statistics.median(values) for part, values in rounds.items()}


def projections(parts: dict, epochs: int) -> dict:
    """Seconds of an average concat epoch of a run of ``epochs`` epochs under each setting (those of the measured
    layouts)."""
    test_twice = 2 / epochs  # the selected and the last model
    out = {}
    for layout, p in parts.items():
        name = "default layout, test every epoch (before)" if layout == "default" else f"{layout}, test every epoch"
        out[name] = p["train"] + p["val"] + p["test"]
        name = "default layout, test for the selected and last model (now)" if layout == "default" else layout
        out[name] = p["train"] + p["val"] + p["test"] * test_twice
    return out


def markdown(result: dict) -> str:
    parts, proj = result["parts_seconds"], result["epoch_seconds"]
    base = next(iter(proj.values()))
    layouts = list(parts)
    lines = [f"# Where a {result['profile']} epoch's time goes (1 thread, median of {result['repeats']})", "",
             f"Machine: {result['machine']['cpu']}, {result['machine']['cores']} cores, torch "
             f"{result['machine']['torch']}; load average {result['machine']['load_average_1_5_15min']}.", "",
             "| part | " + " | ".join(f"{layout} (s)" for layout in layouts) + " |",
             "| --- |" + " --- |" * len(layouts)]
    for part in ("train", "val", "test", "gaps"):
        lines.append(f"| {part} | " + " | ".join(f"{parts[layout][part]:.2f}" for layout in layouts) + " |")
    lines += ["", f"A concat epoch of a {result['epochs']}-epoch run:", "",
              "| setting | s/epoch | speed-up over the first |", "| --- | --- | --- |"]
    lines += [f"| {name} | {value:.2f} | {base / value:.2f}x |" for name, value in proj.items()]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="default")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--layouts", default=",".join(LAYOUTS),
                        help="comma-separated, of: default, channels_last (on torch 2.11's CPU kernels channels_last "
                             "corrupts the heap in the backward pass of the smoke profile's width-4 model)")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    layouts = args.layouts.split(",")
    if not layouts or not set(layouts) <= set(LAYOUTS):
        parser.error(f"--layouts {args.layouts!r}: expected a comma-separated choice of {', '.join(LAYOUTS)}")
    torch.set_num_threads(1)
    profile = get_profile(args.profile)
    data = load_data(profile)
    parts = {layout: measure(profile, data, layout, args.repeats) for layout in layouts}
    result = {"profile": profile.name, "repeats": args.repeats, "epochs": profile.training.total_epochs,
              "split_sizes": {k: len(v) for k, v in data.splits().items()}, "parts_seconds": parts,
              "epoch_seconds": projections(parts, profile.training.total_epochs), "machine": machine()}
    out = Path(args.out)
    name = "epoch_parts" if profile.name == "default" else f"epoch_parts_{profile.name}"
    write_atomic(json.dumps(result, indent=1), out / f"{name}.json")
    text = markdown(result)
    write_atomic(text, out / f"{name}.md")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
