"""The interface between the trainer and a training method.

The trainer (``gapkit.training``) owns the loop of Algorithm 1: epochs, mini-batches,
the optimizer, evaluation, model selection and checkpoints. A method decides what
happens inside it:

* ``two_stage``: the run has a warm-up of ``warmup_epochs`` followed by
  ``adaptive_steps`` x ``adaptive_epochs`` epochs, with the optimizer reset at the
  boundary unless the config keeps it; otherwise all epochs are one stage.
* ``reset_optimizer``: ``None`` (the config decides, Table 3) or a fixed choice for
  the optimizer reset at the stage boundary (the controls of Table 1).
* ``fits_gmm``: at the start of every adaptive step the trainer collects the gaps
  over the training set (eval mode) and has the method fit a
  :class:`~gapkit.mixture.GapMixture` to them (``fit_mixture``), handed to the method
  in ``ctx.mixture``, the gaps themselves in ``ctx.train_gaps``.
* ``training_clips``: which training clips an epoch trains on (default: all).
* ``training_step``: forward pass and loss for one mini-batch.
* ``after_backward``: gradient modulation between ``backward()`` and the optimizer step.
* ``on_epoch_start`` / ``on_epoch_end``: per-epoch updates (e.g. re-estimated coefficients).
* ``predict``: the logits used for evaluation (default: the model's own).
* ``setup``: called once when the trainer is made, before the optimizer exists; a method
  whose network needs modules of its own (MLA's shared head, Greedy's MMTM layers) adds
  them to the model here, so they are trained, checkpointed and restored with it.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..mixture import GapMixture


@dataclass
class Context:
    """What the trainer tells the method about where training stands."""

    epoch: int                     # global epoch, from 0
    phase: str                     # "warmup", "adaptive" or "train" (single-stage methods)
    adaptive_epoch: int = 0        # epochs since adaptive training started
    step: int = -1                 # adaptive step, -1 outside adaptive training
    step_epoch: int = 0            # epochs since the current adaptive step started
    seed: int = 0                  # the run's seed
    total_epochs: int = 0
    mixture: GapMixture | None = None
    batches_per_epoch: int = 0
    #: the trainer's optimizer, for a method that takes several optimizer steps per mini-batch (MLA)
    optimizer: object = None
    #: the gaps (Eq. 6, eval mode) of every training clip, in split order, collected at the start of the current
    #: adaptive step for its GMM fit (on the training device; ``None`` outside adaptive training)
    train_gaps: torch.Tensor | None = None
    #: indices of the training clips this epoch trains on (``None``: all, see :meth:`Method.training_clips`)
    train_clips: torch.Tensor | None = None
    #: indices into the training split of the current mini-batch's clips, on the training device (set by the
    #: trainer before each step)
    batch_index: torch.Tensor | None = None


@dataclass
class StepOutput:
    """A training step's loss and the logits it produced (for the running train accuracy)."""

    loss: torch.Tensor
    logits: torch.Tensor
    logits_a: torch.Tensor
    logits_v: torch.Tensor


class Method:
    """Base class: plain forward pass; subclasses set the loss and any hooks."""

    name = "base"
    two_stage = False
    reset_optimizer: bool | None = None
    fits_gmm = False
    #: options this method accepts (name -> default); unknown options are an error
    defaults: dict = {}
    #: options that take one of a few values (name -> the allowed values); another value is an error
    choices: dict = {}

    def __init__(self, **options) -> None:
        unknown = set(options) - set(self.defaults)
        if unknown:
            raise ValueError(f"method {self.name!r} has no option(s) {sorted(unknown)}; "
                             f"its options are {sorted(self.defaults) or 'none'}")
        self.options = {**self.defaults, **options}
        for key, allowed in self.choices.items():
            if self.options[key] not in allowed:
                raise ValueError(f"option {key} = {self.options[key]!r} of method {self.name!r}: expected one of "
                                 f"{', '.join(map(repr, allowed))} (default {self.defaults[key]!r})")

    def setup(self, model) -> None:
        """Called once by the trainer, before the optimizer is made (default: nothing)."""

    def training_step(self, model, audio, visual, y, ctx: Context) -> StepOutput:
        raise NotImplementedError

    def training_clips(self, n_train: int, phase: str, seed: int) -> torch.Tensor | None:
        """Indices of the training clips an epoch of ``phase`` trains on (default ``None``: all ``n_train``)."""
        return None

    def fit_mixture(self, gaps, previous: GapMixture | None, seed: int) -> GapMixture:
        """Algorithm 1's fit at the start of an adaptive step (``fits_gmm`` methods): Eq. 8 fitted to ``gaps``, the
        gaps of every training clip in split order; ``previous`` is the last fit (``None`` before the first)."""
        return GapMixture(seed=seed).fit(gaps)

    def after_backward(self, model, out: StepOutput, y, ctx: Context) -> None:
        """Called after ``loss.backward()``, before the optimizer step."""

    def on_epoch_start(self, model, data, ctx: Context) -> None:
        """Called before an epoch's first mini-batch."""

    def on_epoch_end(self, model, data, ctx: Context) -> dict:
        """Called after an epoch; returns values to record in the history."""
        return {}

    def state_dict(self) -> dict:
        """Whatever the method learns during training besides the model (saved in checkpoints)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`'s output when a run resumes."""

    def predict(self, model, audio, visual) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(fused, audio, visual) logits used for evaluation."""
        return model(audio, visual)


class EpochMeans:
    """Means of per-batch scalars over one epoch, returned as an on_epoch_end record (``prefix_name``)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.reset()

    def reset(self) -> None:
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def add(self, **values: float) -> None:
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + float(v)
            self.counts[k] = self.counts.get(k, 0) + 1

    def record(self) -> dict:
        return {f"{self.prefix}_{k}": v / self.counts[k] for k, v in self.sums.items()}
