"""The training loop of Algorithm 1, shared by every method.

One run is ``total_epochs`` epochs. A two-stage method (the paper's) spends the first
``warmup_epochs`` on its warm-up loss, then ``adaptive_steps`` steps of
``adaptive_epochs`` epochs; each step begins with the modality gaps of the whole
training set (eval mode, no gradients) and a GMM fit to them. A single-stage method
(concat) trains for the same total budget.

After every epoch the model is evaluated on the validation split. Model selection uses
it alone: the selected model is the one of the epoch of best validation accuracy within
the method's final stage (the adaptive epochs of a two-stage run, every epoch of a
single-stage one; the earliest on ties); ``best.pt`` holds it. Once training ends, the
test split is evaluated for the selected model and for the last one, and their
accuracies are written into those two epochs' records: the reported test accuracy and
the last epoch's. No other epoch is tested, so nothing could be chosen by it.
The training accuracy in the history is the running accuracy of the training
mini-batches (train mode, as seen by the optimizer), which costs no extra pass.

With ``out_dir`` every epoch ends with an atomic checkpoint (``last.pt``); a killed run
restarted with the same config resumes from it and ends with the same numbers as an
uninterrupted one. Two-stage runs also keep ``warmup.pt``, the state at the end of
warm-up, from which variants branch (``init_from``). A non-finite loss stops training
with :class:`NonFiniteLossError`, leaving the last good checkpoint untouched.

Nothing inside the step loop waits for the device: the loss sum and the correct counts
accumulate there and are read once an epoch, and the non-finite check reads a device
flag every :data:`NONFINITE_EVERY` steps on a GPU (every step on the CPU) and at the
epoch's end, before anything of that epoch is written.

Started by ``torchrun``, one run trains on several processes (:mod:`gapkit.distributed`):
the training split sharded by mini-batch, the gaps gathered so that every process fits
the same GMM, evaluation and checkpoints on rank 0.
"""
from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from . import distributed
from .checkpoints import WARMUP_FIELDS, check_compatible, checkpoint, restore
from .data.base import AVData, data_key
from .data.batches import iterate_batches
from .gap import collect_outputs
from .io import atomic_save, atomic_savez, atomic_write_text
from .methods import Context, Method, make_method
from .mixture import GapMixture
from .train_config import TrainConfig, learning_rate, make_optimizer, resolve_precision


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


#: on a GPU, training steps between two reads of the non-finite flag (each read waits for the device); on the CPU,
#: where a read costs nothing, every step is checked
NONFINITE_EVERY = 25


class _NonFiniteWatch:
    """The first non-finite loss of an epoch, kept on the device: (batch, value) without a host sync per step."""

    def __init__(self, device: torch.device) -> None:
        self.batch = torch.full((), -1, dtype=torch.long, device=device)
        self.value = torch.zeros((), dtype=torch.float32, device=device)

    def add(self, loss: torch.Tensor, batch: int) -> None:
        loss = loss.detach().float()
        new = (self.batch < 0) & ~torch.isfinite(loss)
        self.batch = torch.where(new, batch, self.batch)
        self.value = torch.where(new, loss, self.value)

    def first(self, group=None) -> tuple[int, float | str] | None:
        """(batch, loss) of the first non-finite loss so far (over all ranks of ``group``), else None."""
        batch = int(self.batch) if group is None else group.first_nonfinite(self.batch)
        if batch < 0:
            return None
        return batch, float(self.value) if int(self.batch) == batch else "on another process"


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@dataclass
class TrainResult:
    """What a run produced: its history, the gap arrays of every GMM fit, the selected model."""

    config: TrainConfig
    history: dict
    gaps: list[np.ndarray]
    best_state: dict
    last_state: dict

    def summary(self) -> dict:
        return summarize(self.history)


def selected_epoch(epochs: list[dict]) -> int:
    """The epoch of best validation accuracy within the method's final stage (earliest on ties).

    A two-stage run selects among its adaptive epochs: the model the method itself produced. Selecting
    over the warm-up too would let a run report its warm-up model, and every variant branching from that
    warm-up (Tables 2 and 3) the very same number. A single-stage run selects over all its epochs.
    """
    stage = [i for i, e in enumerate(epochs) if e.get("phase") != "warmup"] or range(len(epochs))
    return max(stage, key=lambda i: (epochs[i]["val_acc"], -i))


def summarize(history: dict) -> dict:
    """Test accuracy at the selected epoch (:func:`selected_epoch`) and at the last epoch, plus the GMM fits."""
    epochs = history["epochs"]
    best = selected_epoch(epochs)
    b, last = epochs[best], epochs[-1]
    out = {
        "test_acc": b["test_acc"], "test_acc_audio": b["test_acc_audio"], "test_acc_visual": b["test_acc_visual"],
        "val_acc": b["val_acc"], "best_val_epoch": best,
        "last_test_acc": last["test_acc"], "last_test_acc_audio": last["test_acc_audio"],
        "last_test_acc_visual": last["test_acc_visual"], "last_val_acc": last["val_acc"],
        "epochs": len(epochs), "gmm": history["gmm"],
        "seconds": float(sum(e["seconds"] for e in epochs)),
    }
    return out


def _phase(config: TrainConfig, method: Method, epoch: int) -> tuple[str, int, int, int]:
    """(phase, adaptive_epoch, step, epoch within the step) of a global epoch."""
    if not method.two_stage:
        return "train", 0, -1, 0
    if epoch < config.warmup_epochs:
        return "warmup", 0, -1, 0
    t = epoch - config.warmup_epochs
    return "adaptive", t, t // config.adaptive_epochs, t % config.adaptive_epochs


def _record_split(prefix: str, outputs) -> dict:
    return {f"{prefix}_{k}": v for k, v in outputs.accuracy().items()}


class Trainer:
    """Runs Algorithm 1 for one method on one dataset; see the module docstring."""

    def __init__(self, model: torch.nn.Module, data: AVData, config: TrainConfig, *, device="auto",
                 out_dir: str | Path | None = None, progress: bool = False) -> None:
        for name, split in data.splits().items():
            if len(split) == 0:
                raise ValueError(f"the {name} split is empty")
        #: the multi-process run this trainer is part of (:mod:`gapkit.distributed`), else None
        self.dist = distributed.current()
        distributed.check_method(config.method, self.dist)
        self.device = resolve_device(device)
        if self.dist is not None and self.device.type == "cuda" and self.device.index is None:
            self.device = torch.device("cuda", torch.cuda.current_device())
        #: "float32" or "bf16" (autocast of the forward passes): the config's ``precision`` on this device
        self.precision = resolve_precision(config.precision, self.device)
        #: channels_last on CUDA, where cuDNN's convolutions are fastest in it; the CPU keeps the default layout
        self.channels_last = self.device.type == "cuda"
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed input shapes: pick the fastest kernels once
        self.model = model.to(self.device)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.data = data
        self.config = config
        self.method = make_method(config.method, **config.method_options)
        self.method.setup(self.model)
        #: what the training step calls: the model, or DDP around it
        self.step_model = self.dist.wrap(self.model, self.device) if self.dist is not None else self.model
        self.is_main = self.dist is None or self.dist.is_main
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.progress = progress
        self.data_identity = data.identity()
        self.data_key = data_key(self.data_identity)
        #: training steps between two reads of the non-finite flag (:data:`NONFINITE_EVERY` on a GPU)
        self.nonfinite_every = 1 if self.device.type == "cpu" else NONFINITE_EVERY

    # -- batches ------------------------------------------------------------------------------
    def batches(self, split: str, *, shuffle: bool = False, generator=None, clips=None):
        """A split's mini-batches; under DDP, this rank's part of the training split (:mod:`gapkit.distributed`)."""
        aug = self.config.augment and split == "train" and shuffle
        size, data = self.config.batch_size, self.data.splits()[split]
        if self.dist is not None and split == "train":
            pool = torch.arange(len(data)) if clips is None else torch.as_tensor(clips, dtype=torch.long)
            clips = (distributed.epoch_shard(pool, size, generator, self.dist) if shuffle
                     else pool[self.dist.fixed_shard(len(pool))])
            size, shuffle = self.dist.local_batch(size) if shuffle else size, False
        batches = iterate_batches(data, size, self.device, shuffle=shuffle, generator=generator, augment=aug,
                                  clips=clips)
        if not self.channels_last:
            return batches
        return ((audio.contiguous(memory_format=torch.channels_last), visual, y, index)
                for audio, visual, y, index in batches)

    def autocast(self):
        """The context of every forward pass: bf16 autocast under ``precision`` bf16, else nothing. The losses and
        the gaps cast the logits to float32 (:mod:`gapkit.losses`, :mod:`gapkit.gap`)."""
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def evaluate(self, split: str):
        """Fused and unimodal outputs over a whole split, in eval mode."""
        with self.autocast():
            return collect_outputs(self.model, self.batches(split), predict=self.method.predict)

    # -- the loop -----------------------------------------------------------------------------
    def fit(self, init_from: str | Path | None = None) -> TrainResult:
        """Train for the whole budget (resuming or branching where a checkpoint says so)."""
        cfg, method = self.config, self.method
        torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed)
        generator = torch.Generator().manual_seed(cfg.seed)
        optimizer = make_optimizer(self.model, cfg)
        history = {"config": cfg.to_dict(), "epochs": [], "gmm": []}
        gaps: list[np.ndarray] = []
        best = {"epoch": -1, "val_acc": -1.0, "state": None}
        start = 0
        last_path = self.out_dir / "last.pt" if self.out_dir else None

        if last_path is not None and last_path.exists():
            ckpt = torch.load(last_path, map_location=self.device, weights_only=False)
            check_compatible(ckpt, last_path, cfg.to_dict().keys(), cfg, self.data_identity, self.data_key, self.device)
            start, history, gaps, best = ckpt["epoch"], ckpt["history"], ckpt["gaps"], ckpt["best"]
            restore(ckpt, self.model, optimizer, method, generator)
        elif init_from is not None:
            init_from = Path(init_from)
            ckpt = torch.load(init_from, map_location=self.device, weights_only=False)
            check_compatible(ckpt, init_from, WARMUP_FIELDS, cfg, self.data_identity, self.data_key, self.device)
            if ckpt["epoch"] != cfg.warmup_epochs or not method.two_stage:
                raise ValueError(f"{init_from} is not the end of a warm-up of {cfg.warmup_epochs} epochs "
                                 f"for a two-stage method (it stops at epoch {ckpt['epoch']})")
            start, gaps, best = ckpt["epoch"], ckpt["gaps"], ckpt["best"]
            history["epochs"], history["gmm"] = ckpt["history"]["epochs"], ckpt["history"]["gmm"]
            restore(ckpt, self.model, optimizer, method, generator)

        mixture = GapMixture.from_dict(history["gmm"][-1], seed=cfg.seed) if history["gmm"] else None
        resets = cfg.reset_optimizer if method.reset_optimizer is None else method.reset_optimizer
        bar = tqdm(total=cfg.total_epochs, initial=start, desc=f"{cfg.method} seed {cfg.seed}",
                   unit="epoch", disable=not self.progress, leave=False)
        for epoch in range(start, cfg.total_epochs):
            t0 = time.perf_counter()
            phase, adaptive_epoch, step, step_epoch = _phase(cfg, method, epoch)
            record = {"epoch": epoch, "phase": phase, "step": step}
            if phase == "adaptive" and adaptive_epoch == 0 and resets:
                optimizer = make_optimizer(self.model, cfg)
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(cfg, epoch)
            record["lr"] = learning_rate(cfg, epoch)
            if method.fits_gmm and phase == "adaptive" and step_epoch == 0:
                mixture, g, fit_seconds = self._fit_mixture(mixture)
                history["gmm"].append({"step": step, "epoch": epoch, "label": f"before adaptive step {step}",
                                       **mixture.to_dict(), "seconds": fit_seconds})
                gaps.append(g)
                record["gmm_seconds"] = fit_seconds
            clips = method.training_clips(len(self.data.train), phase, cfg.seed)
            train_gaps = torch.from_numpy(gaps[-1]).to(self.device) if method.fits_gmm and phase == "adaptive" else None
            ctx = Context(epoch=epoch, phase=phase, adaptive_epoch=adaptive_epoch, step=step, step_epoch=step_epoch,
                          seed=cfg.seed, total_epochs=cfg.total_epochs, mixture=mixture, train_gaps=train_gaps,
                          train_clips=clips, batches_per_epoch=self._batches_per_epoch(clips), optimizer=optimizer)
            record.update(self._train_epoch(optimizer, generator, ctx))
            if self.dist is not None:
                self.dist.sync_buffers(self.model)  # every rank holds the model rank 0 evaluates and saves
            if self.is_main:
                record.update(_record_split("val", self.evaluate("val")))
            record.update(method.on_epoch_end(self.model, self.data, ctx))
            record["seconds"] = time.perf_counter() - t0
            if self.dist is not None:
                record = self.dist.broadcast(record)
            history["epochs"].append(record)
            if selected_epoch(history["epochs"]) == len(history["epochs"]) - 1:  # the one selection rule
                best = {"epoch": epoch, "val_acc": record["val_acc"],
                        "state": {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}}
            if self.out_dir is not None and self.is_main:
                ckpt = checkpoint(epoch + 1, cfg, self.device, self.data_identity, self.data_key, self.model,
                                  optimizer, method, history, gaps, best, generator)
                atomic_save(ckpt, last_path)
                if method.two_stage and epoch + 1 == cfg.warmup_epochs:
                    atomic_save(ckpt, self.out_dir / "warmup.pt")
            bar.set_postfix(loss=f"{record['loss']:.3f}", val=f"{record['val_acc']:.3f}")
            bar.update(1)
        bar.close()

        last_state = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
        if self.is_main:
            self._test_selected_and_last(history["epochs"], best, last_state)
        if self.dist is not None:
            history["epochs"] = self.dist.broadcast(history["epochs"])
        if method.fits_gmm:  # the mixture of the final model's gaps: Figure 3's last step
            mixture, g, fit_seconds = self._fit_mixture(mixture)
            history["gmm"].append({"step": cfg.adaptive_steps, "epoch": cfg.total_epochs,
                                   "label": "after adaptive training", **mixture.to_dict(), "seconds": fit_seconds})
            gaps.append(g)
        result = TrainResult(cfg, history, gaps, best["state"], last_state)
        if self.out_dir is not None and self.is_main:
            self._write_outputs(result)
        return result

    def _test_selected_and_last(self, epochs: list[dict], best: dict, last_state: dict) -> None:
        """The test split's accuracies of the last model (the one the trainer holds, ``last_state``) and of the
        selected one (``best``), written into their epochs' records; the model ends as the last one again."""
        epochs[-1].update(_record_split("test", self.evaluate("test")))
        if best["epoch"] == epochs[-1]["epoch"]:
            return
        self.model.load_state_dict(best["state"])
        epochs[best["epoch"]].update(_record_split("test", self.evaluate("test")))
        self.model.load_state_dict(last_state)

    def _batches_per_epoch(self, clips=None) -> int:
        """Training mini-batches per epoch over ``clips`` (default: all; a final batch of one sample is dropped)."""
        n, b = len(self.data.train) if clips is None else len(clips), self.config.batch_size
        if self.dist is not None:
            return n // b  # full global batches only (gapkit.distributed)
        return n // b + (1 if n % b > 1 else 0)

    def _fit_mixture(self, previous: GapMixture | None) -> tuple[GapMixture, np.ndarray, float]:
        """Algorithm 1's step preamble: collect the gaps of every training clip (eval mode), the method fits Eq. 8."""
        t0 = time.perf_counter()
        with self.autocast():
            g = collect_outputs(self.model, self.batches("train")).gaps().numpy().astype(np.float32)
        if self.dist is not None:  # each rank's shard, gathered with its indices: every rank fits the same gaps
            n = len(self.data.train)
            g = self.dist.gather_gaps(torch.from_numpy(g), self.dist.fixed_shard(n), n)
        mixture = self.method.fit_mixture(g, previous, self.config.seed)
        return mixture, g, time.perf_counter() - t0

    def _train_epoch(self, optimizer, generator, ctx: Context) -> dict:
        """One epoch of mini-batches. The loss sum and the correct counts stay on the device until the epoch ends;
        the non-finite check reads a device flag every :attr:`nonfinite_every` steps and at the end."""
        self.model.train()
        self.method.on_epoch_start(self.model, self.data, ctx)
        watch = _NonFiniteWatch(self.device)
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        correct = torch.zeros(3, dtype=torch.long, device=self.device)
        seen, wait = 0, 0.0
        t_wait = time.perf_counter()
        for i, (audio, visual, y, index) in enumerate(self.batches("train", shuffle=True, generator=generator,
                                                                   clips=ctx.train_clips)):
            wait += time.perf_counter() - t_wait
            ctx.batch_index = index
            with self.autocast():
                out = self.method.training_step(self.step_model, audio, visual, y, ctx)
            watch.add(out.loss, i)
            if (i + 1) % self.nonfinite_every == 0:
                self._raise_if_nonfinite(watch, ctx)
            optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            self.method.after_backward(self.model, out, y, ctx)
            optimizer.step()
            n = len(y)
            # float64 on the device: the same sum of float32 losses times n as Python floats gave
            loss_sum += out.loss.detach().double() * n
            seen += n
            with torch.no_grad():
                correct += torch.stack([(lg.argmax(1) == y).sum() for lg in (out.logits, out.logits_a, out.logits_v)])
            t_wait = time.perf_counter()
        self._raise_if_nonfinite(watch, ctx)
        if self.dist is not None:  # the epoch's sums over the ranks, in one all-reduce
            total = self.dist.all_sum(torch.cat([loss_sum.view(1), correct.double(), loss_sum.new_tensor([seen])]))
            loss_sum, correct, seen = total[0], total[1:4].long(), int(total[4])
        acc = (correct.cpu().float() / max(seen, 1)).tolist()
        return {"loss": loss_sum.item() / max(seen, 1), "train_acc": acc[0], "train_acc_audio": acc[1],
                "train_acc_visual": acc[2], "data_wait_seconds": wait}

    def _raise_if_nonfinite(self, watch: "_NonFiniteWatch", ctx: Context) -> None:
        """Reads the device flag (one host sync); a non-finite loss so far stops training, naming its epoch and batch
        and the last good checkpoint (this epoch has written none)."""
        bad = watch.first(self.dist)
        if bad is None:
            return
        batch, value = bad
        last = self.out_dir / "last.pt" if self.out_dir else None
        where = (last if last is not None and last.is_file()
                 else "none (no out_dir)" if last is None else "none yet (no epoch completed)")
        raise NonFiniteLossError(f"non-finite loss ({value}) at epoch {ctx.epoch}, batch {batch} ({self.config.method}); "
                                 f"last good checkpoint: {where}")

    def _write_outputs(self, result: TrainResult) -> None:
        out = self.out_dir
        atomic_save(result.best_state, out / "best.pt")
        atomic_savez(out / "gaps.npz", labels=self.data.train.labels.numpy(),
                     **{f"fit{i}": g for i, g in enumerate(result.gaps)})
        atomic_write_text(json.dumps(result.history, indent=1), out / "history.json")
