"""Speed of one full run (warm-up + adaptive) per profile on this machine.

    python benchmarks/bench_training.py --profile smoke default [--threads 2] [--out benchmarks/results]
    OMP_NUM_THREADS=1 python benchmarks/bench_training.py --profile smoke --parallel-seconds 1 --out out/bench

Reports, per profile: the wall time of a complete adaptive run and of a concat run
(data already cached), training throughput in samples per second (training clips per second of
epoch time, the epoch's validation evaluation included), the share of an
adaptive step spent collecting the training set's gaps and fitting the GMM, and the
share of training time spent waiting for mini-batches. Results are printed and written
as JSON with the machine they ran on. Nothing here is asserted: timings are reported.

Section "parallel" (``--skip-parallel`` leaves it out): the claim of :func:`gapkit.studies.execute`
that on the CPU ``workers`` runs at once, each in its own process with ``threads // workers`` threads,
get more done than one run with all the threads. The
profile's model (``AVClassifier(num_classes, width=profile.width)``) trains on one fixed mini-batch
of ``profile.training.batch_size`` training clips as the trainer feeds them (the first batch of the loaded
training split, shapes checked against the preprocessing's), cross-entropy on the fused logits,
backward and the profile's SGD step: (a) in one fresh process with N threads (``--parallel-threads``,
default ``os.cpu_count()``), then (b) in W fresh processes (spawn) with ``max(1, N // W)`` threads
each, all timed over the same window (a barrier after ``--parallel-warmup-steps`` untimed steps,
then steps until ``--parallel-seconds`` have passed). W is ``--parallel-workers``, default the
profile's ``workers`` (2 where the profile trains one run at a time). Reported: clips per second of
(a), of each process of (b) and their sum, and the ratio (b) / (a). Only the training step is timed
(no data loading, evaluation or GMM fit), and the other load on the machine counts against both.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import queue
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from _bench_common import load_average, machine, write_atomic
from gapkit.data.batches import iterate_batches
from gapkit.data.media import expected_shapes
from gapkit.runs import build_model, load_data
from gapkit.profiles import Profile, get_profile
from gapkit.training import Trainer, make_optimizer

#: seconds a parallel-throughput process may take to start, import and warm up before the others give up
PARALLEL_START_TIMEOUT = 300.0


def training_batch(profile: Profile, data) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The first training mini-batch as the trainer feeds it (float32 audio, normalised float32 frames, labels),
    as numpy arrays (to hand to spawned processes); its shapes are checked against the preprocessing's."""
    audio, visual, y, _ = next(iterate_batches(data.train, profile.training.batch_size))
    audio_shape, visual_shape = expected_shapes(profile.preprocessing)
    if tuple(audio.shape[1:]) != audio_shape or tuple(visual.shape[1:]) != visual_shape:
        raise ValueError(f"batch shapes {tuple(audio.shape)}, {tuple(visual.shape)} disagree with the profile's "
                         f"preprocessing: (B, {audio_shape}), (B, {visual_shape})")
    return audio.numpy(), visual.numpy(), y.numpy()


def _throughput_process(rank: int, profile: Profile, num_classes: int, batch, threads: int, warmup_steps: int,
                        seconds: float, barrier, results) -> None:
    """One process of the parallel measurement: train the profile's model on ``batch`` with ``threads`` threads,
    wait for the others at ``barrier``, then time SGD steps for ``seconds``; put the counts on ``results``."""
    try:
        torch.set_num_threads(threads)
        audio, visual, y = (torch.from_numpy(a) for a in batch)
        model = build_model(profile, num_classes, seed=rank)
        model.train()
        optimizer = make_optimizer(model, profile.train_config("concat", seed=rank))

        def step() -> float:
            logits, _, _ = model(audio, visual)
            loss = F.cross_entropy(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            return loss.item()

        for _ in range(warmup_steps):
            step()
        barrier.wait(timeout=PARALLEL_START_TIMEOUT)
        start, t0, steps = time.time(), time.perf_counter(), 0
        while True:
            loss = step()
            steps += 1
            elapsed = time.perf_counter() - t0
            if elapsed >= seconds:
                break
        results.put({"rank": rank, "threads": torch.get_num_threads(), "steps": steps, "seconds": elapsed,
                     "clips_per_second": steps * len(y) / elapsed, "window_start": start, "window_end": time.time(),
                     "last_loss": loss})
    except BaseException as err:  # report, and release the others from the barrier
        barrier.abort()
        results.put({"rank": rank, "error": f"{type(err).__name__}: {err}"})


def run_processes(profile: Profile, num_classes: int, batch, processes: int, threads: int, warmup_steps: int,
                  seconds: float) -> dict:
    """``processes`` fresh (spawned) processes with ``threads`` threads each, training at once: their results."""
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(processes), context.Queue()
    procs = [context.Process(target=_throughput_process, daemon=True,
                             args=(rank, profile, num_classes, batch, threads, warmup_steps, seconds, barrier, results))
             for rank in range(processes)]
    for p in procs:
        p.start()
    rows, deadline = [], time.monotonic() + PARALLEL_START_TIMEOUT + 20 * seconds + 60
    try:
        while len(rows) < processes:
            try:
                rows.append(results.get(timeout=1.0))
            except queue.Empty:
                dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
                if dead or time.monotonic() > deadline:
                    raise RuntimeError(f"parallel throughput: a process died (exit codes {dead}) or timed out")
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.terminate()
                p.join()
    errors = [r["error"] for r in rows if "error" in r]
    if errors:
        raise RuntimeError(f"parallel throughput: {errors[0]}")
    rows.sort(key=lambda r: r["rank"])
    overlap = min(r["window_end"] for r in rows) - max(r["window_start"] for r in rows)
    span = max(r["window_end"] for r in rows) - min(r["window_start"] for r in rows)
    for r in rows:
        del r["window_start"], r["window_end"]
    return {"processes": processes, "threads_per_process": threads,
            "clips_per_second": sum(r["clips_per_second"] for r in rows),
            "timed_window_overlap_share": overlap / span if span > 0 else 1.0, "per_process": rows}


def bench_parallel(profile: Profile, data, threads: int | None = None, workers: int | None = None,
                   seconds: float = 3.0, warmup_steps: int = 3) -> dict:
    """Training throughput of one process with N threads against ``workers`` processes with N // workers each."""
    threads = threads or os.cpu_count() or 1
    workers_source = "option" if workers else "profile"
    if not workers:
        workers = profile.workers
        if workers < 2:
            workers, workers_source = 2, f"2 (the profile trains {profile.workers} run at a time)"
    batch = training_batch(profile, data)
    load_start = load_average()
    one = run_processes(profile, data.num_classes, batch, 1, threads, warmup_steps, seconds)
    many = run_processes(profile, data.num_classes, batch, workers, max(1, threads // workers), warmup_steps, seconds)
    return {
        "claim": "gapkit.studies.execute: on the CPU, `workers` runs at once with threads // workers threads each "
                 "get more done than one run with all threads",
        "timed": "forward, cross-entropy on the fused logits, backward and SGD step of the profile's model on one "
                 "fixed training mini-batch; after warm-up steps, all processes of a measurement timed over the "
                 "same window",
        "threads": threads, "workers": workers, "workers_source": workers_source,
        "batch_size": int(batch[2].shape[0]), "width": profile.width,
        "audio_shape": list(batch[0].shape), "visual_shape": list(batch[1].shape),
        "warmup_steps": warmup_steps, "seconds_per_measurement": seconds,
        "one_process": one, "parallel_processes": many,
        "ratio_parallel_to_one_process": many["clips_per_second"] / one["clips_per_second"],
        "load_average_start": load_start, "load_average_end": load_average(),
    }


def bench_profile(name: str, parallel: dict | None = None) -> dict:
    """One profile's full-run timings; with ``parallel`` (keyword arguments of :func:`bench_parallel`) also the
    parallel-throughput section."""
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
            gmm_seconds = sum(g["seconds"] for g in result.history["gmm"][:profile.training.adaptive_steps])
            step_seconds = sum(e["seconds"] for e in epochs if e["phase"] == "adaptive")
            row["gap_collection_and_gmm_share_of_adaptive_steps"] = gmm_seconds / step_seconds
        out[method] = row
    if parallel is not None:
        out["parallel"] = bench_parallel(profile, data, **parallel)
    return out


def summary_line(row: dict) -> str:
    p = row["parallel"]
    return (f"{row['profile']}: training throughput, 1 process x {p['threads']} threads "
            f"{p['one_process']['clips_per_second']:.1f} clips/s; {p['workers']} processes x "
            f"{p['parallel_processes']['threads_per_process']} threads "
            f"{p['parallel_processes']['clips_per_second']:.1f} clips/s; ratio "
            f"{p['ratio_parallel_to_one_process']:.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", nargs="+", default=["smoke", "default"])
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--skip-parallel", action="store_true",
                        help="leave out the parallel-throughput section (one process vs the profile's workers)")
    parser.add_argument("--parallel-threads", type=int, default=None,
                        help="N: threads of the one process, split among the workers (default: os.cpu_count())")
    parser.add_argument("--parallel-workers", type=int, default=None,
                        help="processes at once (default: the profile's workers, 2 where that is 1)")
    parser.add_argument("--parallel-seconds", type=float, default=3.0, help="timed seconds per measurement (3)")
    parser.add_argument("--parallel-warmup-steps", type=int, default=3, help="untimed steps first (3)")
    args = parser.parse_args(argv)
    if (args.parallel_threads is not None and args.parallel_threads < 1) or \
            (args.parallel_workers is not None and args.parallel_workers < 1) or \
            args.parallel_seconds <= 0 or args.parallel_warmup_steps < 0:
        parser.error("--parallel-threads and --parallel-workers must be at least 1, --parallel-seconds positive, "
                     "--parallel-warmup-steps at least 0")
    if args.threads:
        torch.set_num_threads(args.threads)
    parallel = None if args.skip_parallel else {
        "threads": args.parallel_threads, "workers": args.parallel_workers, "seconds": args.parallel_seconds,
        "warmup_steps": args.parallel_warmup_steps}
    report = {"machine": machine(), "profiles": [bench_profile(p, parallel) for p in args.profile]}
    path = write_atomic(json.dumps(report, indent=1), Path(args.out) / "training.json")
    json.dump(report, sys.stdout, indent=1)
    print()
    for row in report["profiles"]:
        if "parallel" in row:
            print(summary_line(row))
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
