"""Speed of the paper profile's shapes on a GPU: epoch time, GPU busy share, memory, concurrent runs.

How to run it on a GPU node (about 5 minutes on one H200, under 8 by its ``--budget``; it needs python with torch,
torchvision, torchaudio, scikit-learn and numpy, nothing else, and gapkit need not be installed):

    cp -r <checkout> /some/where && cd /some/where        # or any copy of the repository
    python3 benchmarks/bench_gpu.py                        # -> benchmarks/results/gpu_cuda.json and .md
    python3 benchmarks/bench_gpu.py --amp --concurrency 1,2,4 --out out/gpu_bf16.json

A tiny CPU run of the same program (the test suite's; seconds):

    python3 benchmarks/bench_gpu.py --device cpu --clips 64 --width 4 --frames 1 --frame-size 32 \\
        --set sample_rate=8000 clip_seconds=1.0 n_fft=62 hop_length=125 --batch-size 8 --steps 2 \\
        --seconds 1 --concurrency 1,2 --out out/gpu_cpu.json

The script puts the repository root on ``sys.path`` itself. gapkit's data package imports media decoders at module
level (``gapkit/data/__init__.py`` -> ``cache`` -> ``media``: PyAV and soundfile; ``cache`` and the trainer: tqdm);
where one of those is not installed, an empty stand-in module is put into ``sys.modules`` before gapkit is imported
(:func:`install_stand_ins`; nothing benchmarked decodes media, and the trainer's progress bar is off), and the JSON
lists which (``stand_ins``).

The data: a CREMA-D-sized corpus made in memory (``--clips`` training clips, default 6000, 6 classes; validation
and test splits of a ninth and an eighth of that, as CREMA-D's 9:1 splits), random uint8 frames and float16
spectrograms at the paper profile's shapes (``gapkit.profiles`` ``paper``: ResNet-18 width 64, batch 64, 3 frames
of 224 x 224 with the profile's augmentation; spectrogram 1 x 257 x 188 from n_fft 512, hop 353 at 22,050 Hz for
3 s, shape by ``gapkit.data.media.expected_shapes``). Labels are random: this measures speed, not learning. The data
lie where gapkit's trainer leaves them, in host memory, unless ``--data-on device``.

What is measured, for each method (``--methods``, default concat and adaptive), in this order (the first section
also warms the device up for the trainer's: cuDNN's kernel choice, the allocator's pools):

* ``fixed_batch``: the ceiling of one process. The method's training step (``Method.training_step``, gapkit's
  model and losses), backward and SGD step on one mini-batch already on the device, ``--steps`` steps after
  ``--warmup-steps``, with no host sync in the loop (the GMM's parameters are copied to the device once, at the
  first step). ``clips_per_second`` = batch * steps / wall seconds.
* ``trainer``: the real code path, ``gapkit.training.Trainer.fit`` with ``out_dir=None`` (no checkpoints): for
  concat ``--epochs`` epochs; for adaptive one adaptive step of ``--epochs`` epochs without warm-up (a warm-up
  epoch costs what a concat epoch costs), so its epochs include the gap collection over the training set and the
  GMM fit that start an adaptive step, and the fit after the last epoch is timed too (``final_gmm_seconds``), as
  is the test evaluation after training (``test_seconds``, the mean of one; a run evaluates its selected and its
  last model).
  Per epoch: ``seconds`` (the trainer's own wall time of the epoch: training pass + validation
  evaluation + GMM), ``train_seconds`` (the training pass alone, device synchronised at both ends),
  ``eval_seconds`` (the validation), ``gmm_seconds`` (gap collection and fit), ``data_wait_seconds`` (the trainer's time waiting
  for mini-batches: gather, augmentation, copy to the device); ``train_clips_per_second`` = training clips /
  train_seconds; ``epoch_clips_per_second`` = training clips / seconds; ``gmm_fit_seconds``: the mean of one gap
  collection and fit (the table's "GMM fit s"). ``peak_memory_bytes``:
  ``torch.cuda.max_memory_allocated`` over the fit (data on the device included under ``--data-on device``).
* ``real_loop``: ``--steps`` mini-batches of the trainer's own training pass (its private ``Trainer._train_epoch``
  on the first steps * batch training clips, after the fit: warm), timed, then run again under ``torch.profiler``
  (CUDA activity). ``gpu_busy_share`` = union of the device's kernel, memcpy and memset intervals in the profiled
  run / wall time of the unprofiled run (the profiler slows the host, not the kernels); under 1 means the GPU
  waits for the host (batch preparation, augmentation, per-step host syncs). ``fixed_batch`` gets the same share.
  ``null`` on the CPU.
* ``concurrency``: the throughput of 1, 2, 4, 8 (``--concurrency``) runs training at once on the one device,
  each a separate process (multiprocessing spawn, started once; the first N of them take part in the level-N
  measurement), each training the method on its own pool of ``--pool-clips`` clips with gapkit's batch path
  (``iterate_batches``: gather, the profile's augmentation, copy, normalisation), the method's training step,
  backward and SGD step and one host sync per step (``loss.item()``, as the trainer's loop had before it kept its
  sums on the device: a conservative measure): after
  ``--warmup-steps`` steps, a barrier, then steps for ``--seconds``. ``clips_per_second`` = sum over processes of
  their clips / the span from the first start to the last end; ``x_one`` its ratio to one process.
  ``peak_memory_bytes`` per process.

``projection``: the paper profile's run time from these numbers, at this corpus size: concat 70 epochs; adaptive
30 warm-up epochs at concat's epoch time + 40 adaptive epochs (4 steps of 10) at the adaptive epoch time without
its GMM + 5 gap collections and fits; each + 2 test evaluations. Sequential, one run at a time, no checkpoint writing.

The ``trainer`` and ``real_loop`` sections run gapkit's trainer as it is: its ``precision`` setting (the
profile's; ``auto``: bf16 autocast and channels_last on CUDA, float32 on the CPU; ``--set precision=float32``
to turn it off) covers its training steps, evaluation and gap collection, and the JSON records it per method
(``trainer_precision``). ``--amp``: bf16 autocast around the methods' training steps (forward and loss;
backward outside) in the ``fixed_batch`` and ``concurrency`` sections, which call the steps themselves (and in
the trainer's, where its own precision is float32). ``--channels-last``: the model in channels_last memory format
in those sections (the trainer sets it itself on CUDA). Both off by default.

The whole run stays inside ``--budget`` seconds (default 420): a section that would not fit is skipped and says
so (``skipped``). Results: ``--out`` (default ``benchmarks/results/gpu_<device>.json``) and the Markdown table
next to it (``.md``), written atomically, with the machine and the command; the table is printed.
Nothing is asserted: timings are reported.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import importlib.machinery
import json
import math
import multiprocessing
import os
import queue
import sys
import tempfile
import time
import types
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for _path in (ROOT, ROOT / "benchmarks"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))


class _NoProgress:
    """What gapkit asks of ``tqdm.auto.tqdm`` (the trainer makes its bar with ``disable=True`` here): nothing."""

    def __init__(self, iterable=None, *args, **kwargs) -> None:
        self.iterable = iterable

    def __iter__(self):
        return iter(self.iterable if self.iterable is not None else ())

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def update(self, n=1) -> None: ...

    def close(self) -> None: ...

    def set_postfix(self, *args, **kwargs) -> None: ...

    def set_description(self, *args, **kwargs) -> None: ...


def _absent(name: str):
    def attribute(attr: str):
        raise AttributeError(f"{name} is not installed here; bench_gpu.py put an empty stand-in for it into "
                             f"sys.modules because the benchmark never decodes media (asked for {name}.{attr})")
    return attribute


def stand_in_module(name: str) -> types.ModuleType:
    """An empty module with a spec of no origin: ``importlib.util.find_spec`` answers for it (torch._dynamo asks it
    about tqdm, among others, when torchvision is imported; a module without ``__spec__`` makes that a ValueError)."""
    module = types.ModuleType(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, None)
    module.__bench_gpu_stand_in__ = True
    return module


def install_stand_ins() -> list[str]:
    """Put stand-ins into ``sys.modules`` for the packages gapkit imports at module level that the benchmarked code
    never calls, where they are not installed; return their names.

    * ``av``, ``soundfile``: imported by ``gapkit.data.media`` (reached through ``gapkit/data/__init__.py`` by any
      ``gapkit.data.*`` import, e.g. the trainer's ``gapkit.data.base``); used only to decode media files. The
      stand-in is an empty module whose every attribute raises, naming itself.
    * ``tqdm`` (``tqdm.auto``): the trainer's epoch bar and the cache's decoding bar; the bar is off here
      (``progress=False``), so a no-op class behaves alike.
    * ``filelock``: ``gapkit.io``'s run-folder lock, never taken here (no run folder); torch depends on it, so it
      is normally there.
    """
    made = []
    for name in ("av", "soundfile", "tqdm", "filelock"):
        try:
            importlib.import_module(name)
            continue
        except ImportError:
            pass
        module = stand_in_module(name)
        if name == "tqdm":
            auto = stand_in_module("tqdm.auto")
            auto.tqdm = module.tqdm = _NoProgress
            module.auto = auto
            sys.modules["tqdm.auto"] = auto
        elif name == "filelock":
            class Timeout(Exception):
                pass

            class FileLock:
                def __init__(self, *args, **kwargs) -> None:
                    raise RuntimeError("filelock is not installed here (bench_gpu.py stand-in): no run folders")
            module.Timeout, module.FileLock = Timeout, FileLock
        else:
            module.__getattr__ = _absent(name)
        sys.modules[name] = module
        made.append(name)
    return made


STAND_INS = install_stand_ins()

import numpy as np  # noqa: E402  (after the stand-ins: gapkit's imports need them)
import torch  # noqa: E402

from _bench_common import load_average, machine, write_atomic  # noqa: E402
from gapkit.data.base import AVData, AVSplit  # noqa: E402
from gapkit.data.batches import iterate_batches  # noqa: E402
from gapkit.data.media import expected_shapes  # noqa: E402
from gapkit.methods import Context, make_method  # noqa: E402
from gapkit.mixture import GapMixture  # noqa: E402
from gapkit.models import AVClassifier  # noqa: E402
from gapkit.profiles import get_profile, parse_override  # noqa: E402
from gapkit.training import Trainer, make_optimizer  # noqa: E402

NUM_CLASSES = 6  # CREMA-D's emotions
#: the methods this benchmark drives (others have per-epoch hooks its fixed-step loops do not call)
METHODS_BENCHED = ("concat", "adaptive")
#: kernel, copy and fill intervals on the device in a chrome trace of torch.profiler
DEVICE_CATEGORIES = ("kernel", "gpu_memcpy", "gpu_memset")
#: seconds a concurrent-run process may take to start (import, CUDA context, model, data) before the run gives up
START_TIMEOUT = 240.0
GIB = 2 ** 30


# -- settings ---------------------------------------------------------------------------------------------------
def bench_profile(args):
    """The paper profile with the command line's overrides (``--set`` first, then the named flags)."""
    profile = get_profile("paper")
    overrides = dict(parse_override(text, profile) for text in args.set)
    for name in ("width", "frames", "frame_size", "batch_size"):
        value = getattr(args, name)
        if value is not None:
            overrides[name] = value
    return profile.replace(**overrides) if overrides else profile


def train_config(profile, method: str, epochs: int):
    """The profile's training settings for ``method``; concat trains ``epochs`` epochs, adaptive one adaptive step
    of ``epochs`` epochs without warm-up (see the module docstring)."""
    config = profile.train_config(method, seed=0)
    if make_method(method).two_stage:
        return dataclasses.replace(config, warmup_epochs=0, adaptive_steps=1, adaptive_epochs=epochs)
    return dataclasses.replace(config, warmup_epochs=epochs, adaptive_steps=0, adaptive_epochs=1)


def random_split(n: int, audio_shape, visual_shape, seed: int, device, bank: int = 256) -> AVSplit:
    """``n`` clips of random uint8 frames and float16 spectrograms (a bank of at most ``bank`` distinct clips, tiled:
    content does not change the speed), random labels; on ``device``."""
    g = torch.Generator().manual_seed(seed)
    k = min(n, bank)
    visual = torch.randint(0, 256, (k, *visual_shape), generator=g, dtype=torch.uint8)
    audio = torch.randn((k, *audio_shape), generator=g).to(torch.float16)
    tile = torch.arange(n) % k
    labels = torch.randint(0, NUM_CLASSES, (n,), generator=g)
    split = AVSplit(audio[tile].to(device), visual[tile].to(device), labels.to(device), [f"clip{i}" for i in range(n)])
    return split


def random_data(n_train: int, n_val: int, n_test: int, audio_shape, visual_shape, device) -> AVData:
    data = AVData(random_split(n_train, audio_shape, visual_shape, 1, device),
                  random_split(n_val, audio_shape, visual_shape, 2, device),
                  random_split(n_test, audio_shape, visual_shape, 3, device),
                  classes=[f"class{i}" for i in range(NUM_CLASSES)], info={"dataset": "bench_gpu random"})
    # the identity would hash every tensor (seconds at this size, and impossible on the device): a name suffices
    data.info["identity"] = {"dataset": "bench_gpu random", "content_digest": f"{n_train}-{n_val}-{n_test}"}
    return data


def random_mixture(seed: int = 0) -> GapMixture:
    """A GMM (Eq. 8) fitted to gaps like a warm-up's (a balanced component near 0, an imbalanced one at 0.6)."""
    rng = np.random.default_rng(seed)
    return GapMixture(seed=seed).fit(np.concatenate([rng.normal(0.0, 0.1, 700), rng.normal(0.6, 0.2, 300)]))


def autocast_step(step, device: torch.device):
    """``step`` (a method's training_step) under bf16 autocast: forward and loss; backward stays outside."""
    def wrapped(*args, **kwargs):
        with torch.autocast(device.type, dtype=torch.bfloat16):
            return step(*args, **kwargs)
    return wrapped


def make_model(profile, device, channels_last: bool, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = AVClassifier(NUM_CLASSES, width=profile.width).to(device)
    return model.to(memory_format=torch.channels_last) if channels_last else model


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory(device: torch.device) -> dict:
    if device.type != "cuda":
        return {"peak_memory_bytes": None, "peak_reserved_bytes": None}
    return {"peak_memory_bytes": torch.cuda.max_memory_allocated(device),
            "peak_reserved_bytes": torch.cuda.max_memory_reserved(device)}


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


# -- GPU busy share ---------------------------------------------------------------------------------------------
def busy_seconds(events: list[dict], categories=DEVICE_CATEGORIES) -> float:
    """Seconds covered by the union of the ``categories`` intervals of a chrome trace's events (``ts``, ``dur`` in
    microseconds): overlapping kernels (several streams) count once."""
    spans = sorted((float(e["ts"]), float(e["ts"]) + float(e["dur"])) for e in events
                   if e.get("cat") in categories and "ts" in e and "dur" in e)
    total, end = 0.0, -math.inf
    for start, stop in spans:
        if stop <= end:
            continue
        total += stop - max(start, end)
        end = stop
    return total / 1e6


def profiled(run, device: torch.device) -> dict:
    """Run ``run()`` under torch.profiler (CUDA activity) and return its wall seconds and the device's busy seconds
    (:func:`busy_seconds`); ``None`` values off CUDA. A profiler failure is reported, not raised."""
    if device.type != "cuda":
        return {"profiled_seconds": None, "device_busy_seconds": None, "kernels": None}
    from torch.profiler import ProfilerActivity, profile
    tries = ([ProfilerActivity.CUDA], [ProfilerActivity.CPU, ProfilerActivity.CUDA])
    out = {}
    for activities in tries:  # CUDA alone is the lighter; some builds record kernels only with CPU activity too
        try:
            with profile(activities=activities) as prof:
                synchronize(device)
                t0 = time.perf_counter()
                run()
                synchronize(device)
                wall = time.perf_counter() - t0
            fd, path = tempfile.mkstemp(suffix=".json")
            os.close(fd)
            try:
                prof.export_chrome_trace(path)
                with open(path) as f:
                    trace = json.load(f)
            finally:
                os.unlink(path)
            events = trace["traceEvents"] if isinstance(trace, dict) else trace
            kernels = sum(1 for e in events if e.get("cat") == "kernel")
            out = {"profiled_seconds": wall, "device_busy_seconds": busy_seconds(events), "kernels": kernels,
                   "profiler_activities": [str(a).split(".")[-1] for a in activities]}
            if kernels:
                return out
        except Exception as err:  # noqa: BLE001  (a profiler problem must not cost the other numbers)
            out = {"profiled_seconds": None, "device_busy_seconds": None, "kernels": None,
                   "profiler_error": f"{type(err).__name__}: {err}"}
    return out


def busy_share(timed_seconds: float, prof: dict) -> float | None:
    busy = prof.get("device_busy_seconds")
    if not busy or not timed_seconds:
        return None
    return min(1.0, busy / timed_seconds)


# -- in-process sections ----------------------------------------------------------------------------------------
class TimedTrainer(Trainer):
    """gapkit's trainer with its training pass and evaluations timed (device synchronised at both ends)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.eval_seconds: list[float] = []

    def _train_epoch(self, *args, **kwargs) -> dict:
        synchronize(self.device)
        t0 = time.perf_counter()
        record = super()._train_epoch(*args, **kwargs)
        synchronize(self.device)
        return {**record, "train_seconds": time.perf_counter() - t0}

    def evaluate(self, split: str):
        t0 = time.perf_counter()
        out = super().evaluate(split)
        self.eval_seconds.append(time.perf_counter() - t0)
        return out


def fixed_batch(model, method, config, data: AVData, device, steps: int, warmup_steps: int, amp: bool) -> dict:
    """The ceiling: the method's step, backward and SGD step on one batch already on the device, no host sync."""
    audio, visual, y, index = next(iterate_batches(data.train, config.batch_size, device))
    ctx = Context(epoch=0, phase="adaptive" if method.two_stage else "train", seed=0, total_epochs=1,
                  mixture=random_mixture() if method.fits_gmm else None, batches_per_epoch=steps, batch_index=index)
    ctx.train_gaps = torch.zeros(len(data.train), device=device) if method.fits_gmm else None
    optimizer = make_optimizer(model, config)
    training_step = autocast_step(method.training_step, device) if amp else method.training_step
    model.train()

    def run(n: int) -> None:
        for _ in range(n):
            out = training_step(model, audio, visual, y, ctx)
            optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            method.after_backward(model, out, y, ctx)
            optimizer.step()

    run(warmup_steps)
    synchronize(device)
    t0 = time.perf_counter()
    run(steps)
    synchronize(device)
    wall = time.perf_counter() - t0
    prof = profiled(lambda: run(steps), device)
    return {"steps": steps, "seconds": wall, "clips_per_second": steps * len(y) / wall,
            "gpu_busy_share": busy_share(wall, prof), **prof}


def trainer_epochs(trainer: TimedTrainer, device) -> tuple[dict, object]:
    """``Trainer.fit`` (no out_dir), per epoch: the trainer's seconds, its training pass, evaluation, GMM, waits."""
    reset_peak(device)
    t0 = time.perf_counter()
    result = trainer.fit()
    synchronize(device)
    wall = time.perf_counter() - t0
    n = len(trainer.data.train)
    epochs = []
    for i, e in enumerate(result.history["epochs"]):
        eval_seconds = trainer.eval_seconds[i]  # the epoch's validation; the test evaluations come after the last
        epochs.append({"epoch": e["epoch"], "phase": e["phase"], "seconds": e["seconds"],
                       "train_seconds": e["train_seconds"], "eval_seconds": eval_seconds,
                       "gmm_seconds": e.get("gmm_seconds", 0.0), "data_wait_seconds": e["data_wait_seconds"],
                       "train_clips_per_second": n / e["train_seconds"], "epoch_clips_per_second": n / e["seconds"]})
    final_gmm = [g["seconds"] for g in result.history["gmm"] if g["label"] == "after adaptive training"]
    fits = [e["gmm_seconds"] for e in epochs if e["gmm_seconds"] > 0] + final_gmm
    mean = lambda key: float(np.mean([e[key] for e in epochs]))  # noqa: E731
    out = {"epochs": epochs, "fit_wall_seconds": wall, "final_gmm_seconds": final_gmm[0] if final_gmm else None,
           "test_seconds": float(np.mean(trainer.eval_seconds[len(epochs):])),
           "epoch_seconds": mean("seconds"), "train_seconds": mean("train_seconds"),
           "eval_seconds": mean("eval_seconds"), "gmm_seconds_per_epoch": mean("gmm_seconds"),
           "gmm_fit_seconds": float(np.mean(fits)) if fits else None,
           "data_wait_share": sum(e["data_wait_seconds"] for e in epochs) / sum(e["train_seconds"] for e in epochs),
           "train_clips_per_second": n * len(epochs) / sum(e["train_seconds"] for e in epochs),
           "epoch_clips_per_second": n * len(epochs) / sum(e["seconds"] for e in epochs),
           "torch_threads_during_fit": torch.get_num_threads(), **peak_memory(device)}
    return out, result


def real_loop(trainer: TimedTrainer, result, steps: int) -> dict:
    """``steps`` mini-batches of the trainer's own training pass, timed, then profiled (see the module docstring)."""
    cfg, method, device = trainer.config, trainer.method, trainer.device
    steps = max(1, min(steps, len(trainer.data.train) // cfg.batch_size))
    clips = torch.arange(min(steps * cfg.batch_size, len(trainer.data.train)))
    fits = method.fits_gmm and bool(result.history["gmm"])
    ctx = Context(epoch=cfg.total_epochs - 1, phase="adaptive" if method.two_stage else "train",
                  adaptive_epoch=cfg.adaptive_epochs - 1 if method.two_stage else 0, step=0,
                  step_epoch=cfg.adaptive_epochs - 1 if method.two_stage else 0, seed=cfg.seed,
                  total_epochs=cfg.total_epochs,
                  mixture=GapMixture.from_dict(result.history["gmm"][-1], seed=cfg.seed) if fits else None,
                  train_gaps=torch.from_numpy(result.gaps[-1]).to(device) if fits else None,
                  train_clips=clips, batches_per_epoch=steps)
    optimizer = make_optimizer(trainer.model, cfg)
    ctx.optimizer = optimizer
    generator = torch.Generator().manual_seed(cfg.seed)
    record = trainer._train_epoch(optimizer, generator, ctx)
    wall = record["train_seconds"]
    prof = profiled(lambda: trainer._train_epoch(optimizer, generator, ctx), device)
    return {"steps": steps, "seconds": wall, "clips_per_second": len(clips) / wall,
            "data_wait_share": record["data_wait_seconds"] / wall, "gpu_busy_share": busy_share(wall, prof), **prof}


def bench_method(name: str, profile, args, data: AVData, device) -> dict:
    """One method's in-process sections: fixed batch (which also warms the device up), trainer, trainer loop."""
    config = train_config(profile, name, args.epochs)
    trainer = TimedTrainer(make_model(profile, device, args.channels_last), data, config, device=device,
                           out_dir=None, progress=False)
    out = {"config": config.to_dict(), "trainer_precision": trainer.precision,
           "trainer_channels_last": trainer.channels_last}
    reset_peak(device)
    out["fixed_batch"] = {**fixed_batch(trainer.model, trainer.method, config, data, device, args.steps,
                                        args.warmup_steps, args.amp), **peak_memory(device)}
    if args.amp:
        trainer.method.training_step = autocast_step(trainer.method.training_step, device)
    out["trainer"], result = trainer_epochs(trainer, device)
    out["real_loop"] = real_loop(trainer, result, args.steps)
    return out


# -- concurrent runs --------------------------------------------------------------------------------------------
def _worker(rank: int, spec: dict, commands, results, barriers) -> None:
    """One concurrent run: set up once, then for each command ``(method, processes, seconds)`` train that method
    for ``--warmup-steps`` steps, meet the others at the level's barrier and train for ``seconds``."""
    try:
        device = torch.device(spec["device"])
        if device.type == "cuda":
            torch.cuda.set_device(device)
        profile = get_profile("paper").replace(**spec["profile_overrides"])
        audio_shape, visual_shape = expected_shapes(profile.preprocessing)
        data_device = device if spec["data_on"] == "device" else torch.device("cpu")
        pool = random_split(spec["pool_clips"], audio_shape, visual_shape, 100 + rank, data_device)
        runs = {}
        for name in spec["methods"]:
            config = train_config(profile, name, 1)
            model = make_model(profile, device, spec["channels_last"], seed=rank)
            method = make_method(config.method, **config.method_options)
            method.setup(model)
            ctx = Context(epoch=0, phase="adaptive" if method.two_stage else "train", seed=rank, total_epochs=1,
                          mixture=random_mixture(rank) if method.fits_gmm else None,
                          train_gaps=torch.zeros(len(pool), device=device) if method.fits_gmm else None)
            step = autocast_step(method.training_step, device) if spec["amp"] else method.training_step
            runs[name] = (model, config, method, ctx, step)
        torch.set_num_threads(runs[spec["methods"][0]][1].threads)  # the trainer's thread count (the profile's)
        results.put({"rank": rank, "ready": True})
    except BaseException as err:  # noqa: BLE001
        results.put({"rank": rank, "ready": False, "error": f"{type(err).__name__}: {err}"})
        return

    def batches(config, generator):
        while True:
            yield from iterate_batches(pool, config.batch_size, device, shuffle=True, generator=generator,
                                       augment=config.augment)

    while True:
        command = commands.get()
        if command is None:
            return
        name, processes, seconds = command
        barrier = barriers[f"{name}:{processes}"]
        try:
            model, config, method, ctx, training_step = runs[name]
            optimizer = make_optimizer(model, config)
            stream = batches(config, torch.Generator().manual_seed(rank))
            reset_peak(device)

            def step() -> float:
                audio, visual, y, index = next(stream)
                ctx.batch_index = index
                out = training_step(model, audio, visual, y, ctx)
                optimizer.zero_grad(set_to_none=True)
                out.loss.backward()
                method.after_backward(model, out, y, ctx)
                optimizer.step()
                return out.loss.item()  # the trainer's loop syncs with the host every step; so does this one

            model.train()
            for _ in range(spec["warmup_steps"]):
                step()
            synchronize(device)
            barrier.wait(timeout=START_TIMEOUT)
            start, t0, steps = time.time(), time.perf_counter(), 0
            while time.perf_counter() - t0 < seconds:
                step()
                steps += 1
            synchronize(device)
            elapsed = time.perf_counter() - t0
            results.put({"rank": rank, "method": name, "processes": processes, "steps": steps, "seconds": elapsed,
                         "clips": steps * config.batch_size, "clips_per_second": steps * config.batch_size / elapsed,
                         "window_start": start, "window_end": time.time(), **peak_memory(device)})
        except BaseException as err:  # noqa: BLE001  (report, and release the others from the barrier)
            barrier.abort()
            results.put({"rank": rank, "method": name, "processes": processes,
                         "error": f"{type(err).__name__}: {err}"})


def _collect(results, procs, count: int, timeout: float) -> list[dict]:
    rows, deadline = [], time.monotonic() + timeout
    while len(rows) < count:
        try:
            rows.append(results.get(timeout=1.0))
        except queue.Empty:
            dead = [p.exitcode for p in procs if p.exitcode is not None]
            if dead or time.monotonic() > deadline:
                raise RuntimeError(f"a process exited (exit codes {dead})" if dead
                                   else f"no answer within {timeout:.0f} s")
    return rows


def _level(rows: list[dict]) -> dict:
    """One level's processes' rows -> their total throughput over the span from the first start to the last end."""
    span = max(r["window_end"] for r in rows) - min(r["window_start"] for r in rows)
    overlap = min(r["window_end"] for r in rows) - max(r["window_start"] for r in rows)
    for r in rows:
        del r["window_start"], r["window_end"]
    peaks = [r["peak_memory_bytes"] for r in rows if r.get("peak_memory_bytes") is not None]
    return {"processes": len(rows), "clips_per_second": sum(r["clips"] for r in rows) / span,
            "timed_window_overlap_share": overlap / span if span > 0 else 1.0,
            "peak_memory_bytes_max": max(peaks) if peaks else None, "per_process": rows}


def bench_concurrency(spec: dict, levels: list[int], seconds: float, step_seconds: float, deadline: float) -> dict:
    """The concurrent-runs section for every method and level (see the module docstring). A level that would overrun
    ``deadline`` is skipped; a failed or stuck level ends the section, keeping the levels measured before it."""
    methods = spec["methods"]
    out: dict = {"levels": levels, **{name: [] for name in methods}}
    most = max(levels)
    if time.monotonic() + 60 + seconds > deadline:
        out["skipped"] = "time budget"
        return out
    context = multiprocessing.get_context("spawn")
    barriers = {f"{name}:{n}": context.Barrier(n) for name in methods for n in levels}
    results = context.Queue()
    commands = [context.Queue() for _ in range(most)]
    procs = [context.Process(target=_worker, args=(rank, spec, commands[rank], results, barriers), daemon=True)
             for rank in range(most)]
    t0 = time.perf_counter()
    for p in procs:
        p.start()
    try:
        ready = _collect(results, procs, most, min(START_TIMEOUT, max(30.0, deadline - time.monotonic())))
        errors = [r["error"] for r in ready if not r.get("ready")]
        if errors:
            raise RuntimeError(f"a process failed to start: {errors[0]}")
        out["start_seconds"] = time.perf_counter() - t0
        for name in methods:
            for n in levels:
                # the level's warm-up steps run n times slower when n processes share the device
                estimate = seconds + 5 + n * spec["warmup_steps"] * step_seconds
                if time.monotonic() + estimate > deadline:
                    out[name].append({"processes": n, "skipped": "time budget"})
                    continue
                for rank in range(n):
                    commands[rank].put((name, n, seconds))
                rows = sorted(_collect(results, procs, n, max(estimate, deadline - time.monotonic()) + 30),
                              key=lambda r: r["rank"])
                errors = [r["error"] for r in rows if "error" in r]
                out[name].append({"processes": n, "error": errors[0]} if errors else _level(rows))
            one = next((r for r in out[name] if r["processes"] == 1 and "clips_per_second" in r), None)
            for r in out[name]:
                if one and "clips_per_second" in r:
                    r["x_one"] = r["clips_per_second"] / one["clips_per_second"]
    except RuntimeError as err:
        out["error"] = f"concurrent runs stopped: {err}"
    finally:
        for q in commands:
            q.put(None)
        for p in procs:
            p.join(timeout=20)
            if p.is_alive():
                p.terminate()
                p.join()
    return out


# -- report -----------------------------------------------------------------------------------------------------
def projection(methods: dict, profile) -> dict:
    """The paper profile's run time at this corpus size, from the measured epochs (see the module docstring)."""
    out, schedule = {}, profile.training
    concat = methods.get("concat", {}).get("trainer")
    if concat:
        out["concat_seconds"] = schedule.total_epochs * concat["epoch_seconds"] + 2 * concat["test_seconds"]
    adaptive = methods.get("adaptive", {}).get("trainer")
    if adaptive:
        epochs = adaptive["epochs"]
        per_epoch = float(np.mean([e["seconds"] - e["gmm_seconds"] for e in epochs]))
        fit = adaptive["gmm_fit_seconds"] or 0.0
        warmup_epoch = concat["epoch_seconds"] if concat else per_epoch
        out["adaptive_seconds"] = (schedule.warmup_epochs * warmup_epoch
                                   + schedule.adaptive_steps * schedule.adaptive_epochs * per_epoch
                                   + (schedule.adaptive_steps + 1) * fit + 2 * adaptive["test_seconds"])
    out["schedule"] = {"warmup_epochs": schedule.warmup_epochs, "adaptive_steps": schedule.adaptive_steps,
                       "adaptive_epochs": schedule.adaptive_epochs}
    return out


def duration(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def gib(value) -> str:
    return "-" if value is None else f"{value / GIB:.1f}"


def num(value, fmt: str = ".1f") -> str:
    return "-" if value is None else format(value, fmt)


def markdown(report: dict) -> str:
    s, m = report["settings"], report["machine"]
    lines = [f"# GPU benchmark at the paper profile's shapes ({s['device']})", "",
             f"- Device {s['device']} ({m.get('gpu') or 'no GPU'}); data on {s['data_on']}; amp {s['amp']}; "
             f"channels_last {s['channels_last']}; torch {m.get('torch')}, Python {m.get('python')}; "
             f"CPU {m.get('cpu')}, {m.get('cores_usable')} cores usable; load average at start "
             f"{report['load_average_start']}, at end {report['load_average_end']}",
             f"- Model width {s['width']}, batch {s['batch_size']}, augment {s['augment']}; audio {s['audio_shape']}, "
             f"frames {s['visual_shape']}; {s['clips']} training clips ({s['val_clips']} validation, "
             f"{s['test_clips']} test), {NUM_CLASSES} classes, random content",
             f"- Trainer: {s['epochs']} epoch(s) per method (adaptive: one adaptive step, no warm-up); "
             f"windows of {s['steps']} steps after {s['warmup_steps']}; "
             + (f"concurrent runs ({', '.join(map(str, s['concurrency']))} processes) for {s['seconds']} s each"
                if s["concurrency"] else "no concurrent runs")
             + (f"; stand-ins for missing packages: {', '.join(report['stand_ins'])}" if report["stand_ins"] else ""),
             f"- {report['date']}, `{report['command']}`, {report['wall_seconds']:.0f} s in all", "",
             "| method | epoch s | train pass s | eval s | GMM fit s | train clips/s | epoch clips/s | data wait | "
             "GPU busy (trainer loop) | fixed-batch clips/s | GPU busy (fixed batch) | peak GiB (fit) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, row in report["methods"].items():
        if "skipped" in row or "error" in row:
            lines.append(f"| {name} | {row.get('skipped') or row.get('error')} |" + " |" * 10)
            continue
        t, r, f = row["trainer"], row["real_loop"], row["fixed_batch"]
        lines.append(f"| {name} | {t['epoch_seconds']:.2f} | {t['train_seconds']:.2f} | {t['eval_seconds']:.2f} | "
                     f"{num(t['gmm_fit_seconds'], '.2f')} | {t['train_clips_per_second']:.1f} | "
                     f"{t['epoch_clips_per_second']:.1f} | "
                     f"{t['data_wait_share']:.0%} | {num(r['gpu_busy_share'], '.0%')} | {f['clips_per_second']:.1f} | "
                     f"{num(f['gpu_busy_share'], '.0%')} | {gib(t['peak_memory_bytes'])} |")
    p = report["projection"]
    if "concat_seconds" in p or "adaptive_seconds" in p:
        sched = p["schedule"]
        lines += ["", f"Projected paper-profile run ({sched['warmup_epochs']} warm-up + {sched['adaptive_steps']} x "
                      f"{sched['adaptive_epochs']} adaptive epochs, this corpus size, one run at a time): "
                  + "; ".join(f"{k.removesuffix('_seconds')} {duration(v)}" for k, v in p.items()
                              if k.endswith("_seconds"))]
    conc = report.get("concurrency") or {}
    if conc:
        lines += ["", "## Concurrent runs (separate processes on one device"
                  + (f"; started in {conc['start_seconds']:.0f} s)" if "start_seconds" in conc else ")"), ""]
        if conc.get("skipped") or conc.get("error"):
            lines += [f"{conc.get('skipped') or conc.get('error')}", ""]
        lines += ["| method | processes | total clips/s | x one process | per process clips/s | "
                  "peak GiB per process |", "|---|---|---|---|---|---|"]
        for name in report["methods"]:
            for r in conc.get(name, []):
                if "clips_per_second" not in r:
                    lines.append(f"| {name} | {r['processes']} | {r.get('skipped') or r.get('error')} | | | |")
                    continue
                per = [x["clips_per_second"] for x in r["per_process"]]
                lines.append(f"| {name} | {r['processes']} | {r['clips_per_second']:.1f} | "
                             f"{num(r.get('x_one'), '.2f')} "
                             f"| {min(per):.1f}-{max(per):.1f} | {gib(r['peak_memory_bytes_max'])} |")
    return "\n".join(lines) + "\n"


def out_paths(out: str | None, device: torch.device) -> tuple[Path, Path]:
    tag = device.type if device.index in (None, 0) else f"{device.type}{device.index}"
    if out is None:
        path = ROOT / "benchmarks" / "results" / f"gpu_{tag}.json"
    else:
        path = Path(out)
        if path.is_dir() or out.endswith(("/", os.sep)):
            path = path / f"gpu_{tag}.json"
        elif path.suffix != ".json":
            path = path.with_suffix(".json")
    return path, path.with_suffix(".md")


def levels_arg(text: str) -> list[int]:
    if text.strip() in ("", "0", "none"):
        return []
    try:
        levels = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected process counts separated by commas (1,2,4,8), got {text!r}")
    if any(n < 1 for n in levels):
        raise argparse.ArgumentTypeError("process counts must be at least 1")
    return levels


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    parser.add_argument("--methods", default="concat,adaptive",
                        help="concat and/or adaptive, comma-separated (default both)")
    parser.add_argument("--clips", type=int, default=6000, help="training clips (default 6000, CREMA-D's size)")
    parser.add_argument("--val-clips", type=int, default=None, help="default: clips / 9")
    parser.add_argument("--test-clips", type=int, default=None, help="default: clips / 8")
    parser.add_argument("--epochs", type=int, default=1, help="trainer epochs per method (default 1)")
    parser.add_argument("--steps", type=int, default=20,
                        help="timed steps of the fixed-batch and trainer-loop windows (default 20)")
    parser.add_argument("--warmup-steps", type=int, default=3, help="untimed steps before a window (default 3)")
    parser.add_argument("--seconds", type=float, default=10.0, help="timed seconds per concurrency level (10)")
    parser.add_argument("--concurrency", type=levels_arg, default=[1, 2, 4, 8],
                        help="process counts, comma-separated (1,2,4,8); 0: leave the section out")
    parser.add_argument("--pool-clips", type=int, default=256, help="clips in each concurrent run's pool (256)")
    parser.add_argument("--data-on", choices=("host", "device"), default="host",
                        help="where the clips lie: host (gapkit's trainer, default) or device")
    parser.add_argument("--amp", action="store_true", help="bf16 autocast around the training steps")
    parser.add_argument("--channels-last", action="store_true", help="the model in channels_last memory format")
    parser.add_argument("--width", type=int, default=None, help="ResNet-18 width (paper profile: 64)")
    parser.add_argument("--frames", type=int, default=None, help="frames per clip (paper profile: 3)")
    parser.add_argument("--frame-size", type=int, default=None, help="frame side in pixels (paper profile: 224)")
    parser.add_argument("--batch-size", type=int, default=None, help="mini-batch (paper profile: 64)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="other paper-profile overrides (sample_rate, n_fft, hop_length, clip_seconds, augment...)")
    parser.add_argument("--budget", type=float, default=420.0,
                        help="seconds the whole run may take; sections that would not fit are skipped (420)")
    parser.add_argument("--out", default=None,
                        help="JSON path or folder (default benchmarks/results/gpu_<device>.json)")
    args = parser.parse_args(argv)
    if args.clips < 2 or args.epochs < 1 or args.steps < 1 or args.warmup_steps < 0 or args.seconds <= 0 \
            or args.pool_clips < 2:
        parser.error("--clips and --pool-clips must be at least 2, --epochs and --steps at least 1, "
                     "--warmup-steps at least 0, --seconds positive")
    started, t_start = datetime.now(timezone.utc), time.monotonic()
    deadline = t_start + args.budget
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda":
        if device.index is None:  # torch.cuda.set_device and friends want an index
            device = torch.device("cuda", torch.cuda.current_device())
        torch.cuda.set_device(device)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if not methods or set(methods) - set(METHODS_BENCHED):
        parser.error(f"--methods: expected some of {', '.join(METHODS_BENCHED)}, got {args.methods!r}")
    profile = bench_profile(args)
    paper = get_profile("paper").to_dict()
    overrides = {k: v for k, v in profile.to_dict().items() if v != paper[k]}
    audio_shape, visual_shape = expected_shapes(profile.preprocessing)
    n_val = args.val_clips or max(2, round(args.clips / 9))
    n_test = args.test_clips or max(2, round(args.clips / 8))
    json_path, md_path = out_paths(args.out, device)
    load_start = load_average()

    data_device = device if args.data_on == "device" else torch.device("cpu")
    t0 = time.perf_counter()
    data = random_data(args.clips, n_val, n_test, audio_shape, visual_shape, data_device)
    data_seconds = time.perf_counter() - t0
    torch.set_num_threads(profile.training.threads)  # every section with the profile's threads, as the trainer does

    report = {
        "benchmark": "bench_gpu", "date": started.strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python benchmarks/bench_gpu.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "settings": {"device": str(device), "methods": methods, "clips": args.clips, "val_clips": n_val,
                     "test_clips": n_test, "classes": NUM_CLASSES, "width": profile.width,
                     "batch_size": profile.training.batch_size, "augment": profile.training.augment,
                     "threads": profile.training.threads,
                     "audio_shape": list(audio_shape), "visual_shape": list(visual_shape),
                     "preprocessing": profile.preprocessing.to_dict(), "profile": "paper",
                     "profile_overrides": overrides, "epochs": args.epochs, "steps": args.steps,
                     "warmup_steps": args.warmup_steps, "seconds": args.seconds, "concurrency": args.concurrency,
                     "pool_clips": args.pool_clips, "data_on": args.data_on, "amp": args.amp,
                     "channels_last": args.channels_last, "budget": args.budget},
        "machine": {**machine(), "cuda": torch.version.cuda,
                    "cudnn": torch.backends.cudnn.version() if torch.cuda.is_available() else None,
                    "gpu_memory_bytes": torch.cuda.get_device_properties(device).total_memory
                    if device.type == "cuda" else None},
        "stand_ins": STAND_INS, "data_seconds": data_seconds, "methods": {}, "projection": {}, "concurrency": None,
        "load_average_start": load_start, "load_average_end": None, "wall_seconds": None,
    }

    def publish() -> str:
        report["load_average_end"], report["wall_seconds"] = load_average(), time.monotonic() - t_start
        report["projection"] = projection(report["methods"], profile)
        table = markdown(report)
        write_atomic(json.dumps(report, indent=1, default=str), json_path)
        write_atomic(table, md_path)
        return table

    method_seconds = []
    for name in methods:
        if method_seconds and time.monotonic() + 1.5 * max(method_seconds) > deadline:
            report["methods"][name] = {"skipped": "time budget"}
            continue
        t0 = time.perf_counter()
        try:
            report["methods"][name] = bench_method(name, profile, args, data, device)
        except Exception as err:  # noqa: BLE001  (one method's failure, e.g. out of memory, keeps the others)
            report["methods"][name] = {"error": f"{type(err).__name__}: {str(err).strip().splitlines()[0]}"}
        method_seconds.append(time.perf_counter() - t0)
        if device.type == "cuda":
            torch.cuda.empty_cache()
        publish()  # what is measured so far is on disk, should a later section fail
    del data
    if device.type == "cuda":
        torch.cuda.empty_cache()

    if args.concurrency:
        spec = {"device": str(device), "profile_overrides": overrides, "data_on": args.data_on,
                "pool_clips": args.pool_clips, "channels_last": args.channels_last, "amp": args.amp,
                "warmup_steps": args.warmup_steps, "methods": methods}
        per_step = [r["real_loop"]["seconds"] / r["real_loop"]["steps"] for r in report["methods"].values()
                    if "real_loop" in r] or [1.0]
        report["concurrency"] = bench_concurrency(spec, args.concurrency, args.seconds, max(per_step), deadline)
    table = publish()
    print(table)
    print(f"written to {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
