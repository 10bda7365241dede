"""Speed of one full run (warm-up + adaptive) per profile on this machine.

    python benchmarks/bench_training.py --profile smoke default [--threads 2] [--out benchmarks/results]

Reports, per profile: the wall time of a complete adaptive run and of a concat run
(data already cached), training throughput in samples per second (training clips per second of
epoch time, the epoch's validation and test evaluation included), the share of an
adaptive step spent collecting the training set's gaps and fitting the GMM, and the
share of training time spent waiting for mini-batches. Results are printed and written
as JSON with the machine they ran on. Nothing here is asserted: timings are reported.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from _bench_common import machine, write_atomic
from gapkit.experiments import build_model, load_data
from gapkit.profiles import get_profile
from gapkit.training import Trainer


def bench_profile(name: str) -> dict:
    profile = get_profile(name)
    t0 = time.perf_counter()
    data = load_data(profile, "synthetic")
    prepare_seconds = time.perf_counter() - t0
    out = {"profile": name, "prepare_seconds_incl_generation_if_missing": prepare_seconds,
           "train_clips": len(data.train), "val_clips": len(data.val), "test_clips": len(data.test)}
    for method in ("adaptive", "concat"):
        model = build_model(profile, data.num_classes, seed=0)
        config = profile.train_config(method, seed=0)
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            result = Trainer(model, data, config, device=profile.device, out_dir=tmp).fit()
            wall = time.perf_counter() - t0
        epochs = result.history["epochs"]
        train_seconds = sum(e["seconds"] for e in epochs)
        row = {"wall_seconds": wall, "epochs": len(epochs),
               "samples_per_second_train_epoch": len(data.train) * len(epochs) / train_seconds,
               "data_wait_share": sum(e["data_wait_seconds"] for e in epochs) / train_seconds,
               "test_acc": result.summary()["test_acc"]}
        if method == "adaptive":
            gmm_seconds = sum(g["seconds"] for g in result.history["gmm"][:profile.adaptive_steps])
            step_seconds = sum(e["seconds"] for e in epochs if e["phase"] == "adaptive")
            row["gap_collection_and_gmm_share_of_adaptive_steps"] = gmm_seconds / step_seconds
        out[method] = row
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", nargs="+", default=["smoke", "default"])
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    report = {"machine": machine(), "profiles": [bench_profile(p) for p in args.profile]}
    path = write_atomic(json.dumps(report, indent=1), Path(args.out) / "training.json")
    json.dump(report, sys.stdout, indent=1)
    print(f"\nwritten to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
