"""The paper's method: warm-up with Eq. 7, then GMM-guided adaptive training with Eq. 10 (Algorithm 1)."""
from __future__ import annotations

import numpy as np
import torch

from ..gap import modality_gap
from ..losses import PENALTIES, adaptive_loss, annealing_coefficient, control_weights, warmup_loss
from ..mixture import track_components
from .base import Context, Method, StepOutput

#: The open choices of Algorithm 1 and Eq. 10, each an option of :class:`Adaptive`: its readings, the default first
#: (see the class docstring; :data:`gapkit.paper.LITERAL_READING` says which reading is the paper's most literal).
READING_CHOICES = {
    "lambda_epoch": ("continued", "per-step", "global"),
    "posteriors": ("batch", "collected"),
    "components": ("nearest-zero", "tracked"),
    "penalty": PENALTIES,
    "gap_source": ("train", "held-out"),
}

#: the share of the training clips held out of adaptive training for the GMM fit (``gap_source="held-out"``)
HELD_OUT_FRACTION = 0.2


def held_out_clips(n_train: int, seed: int, fraction: float = HELD_OUT_FRACTION) -> torch.Tensor:
    """The training clips whose gaps the GMM is fitted to under ``gap_source="held-out"``: a random ``fraction`` of the
    ``n_train`` clips (at least one), as sorted indices into the training split.

    Drawn from a child stream of the run's seed (numpy ``SeedSequence(seed).spawn``), so that they are fixed for a
    seed, differ between seeds, and are not the first clips of the warm-up's own shuffle (torch, seeded by ``seed``).
    """
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(1)[0])
    count = max(1, round(fraction * n_train))
    return torch.from_numpy(np.sort(rng.permutation(n_train)[:count]))


def annealing_epoch(ctx: Context, reading: str) -> int:
    """The exponent t of lambda_t = 0.96 ** t (Eq. 10) under a reading of ``lambda_epoch``: the adaptive epoch counted
    from 0 across steps (``"continued"``), from 0 at every adaptive step (``"per-step"``) or the global epoch, warm-up
    included (``"global"``)."""
    return {"continued": ctx.adaptive_epoch, "per-step": ctx.step_epoch, "global": ctx.epoch}[reading]


class Adaptive(Method):
    """Two-stage adaptive training (Algorithm 1).

    Warm-up epochs minimise L_warmup (Eq. 7). Each adaptive step starts with a GMM fit
    (Eq. 8) to the training set's gaps, collected by the trainer in eval mode; its epochs minimise
    L_Adaptive (Eq. 10) with weights from Eq. 9 and lambda_t = 0.96 ** t.
    Options ``alpha``, ``beta``, ``gamma`` and ``use_weights`` are those of Eq. 10 and
    of the ablations of Table 2; ``weight_control`` (``"gap-magnitude"`` or ``"shuffled"``,
    see :func:`~gapkit.losses.control_weights`) swaps the GMM weights for a control that
    keeps their batch mean but not the GMM's separation of samples.

    The paper leaves five choices open; each is an option, its first value the default (:data:`READING_CHOICES`):

    * ``lambda_epoch``: which epoch t counts in lambda_t. ``"continued"``: from 0 when adaptive training
      starts, continuing across steps; ``"per-step"``: from 0 at every adaptive step; ``"global"``: the
      global epoch, warm-up included. Most literal: ``"per-step"``, since Algorithm 1's inner loop
      restarts ``epoch = 0, ..., E_adaptive - 1`` at every step and Eq. 10 writes lambda_t = 0.96^epoch.
    * ``posteriors``: the gap g_j that Eq. 9 turns into w_bal, w_imb. ``"batch"``: the mini-batch's own
      gap from the training forward pass (train mode); ``"collected"``: the gap the trainer collected
      (eval mode) for that clip at the step's start, the one the GMM was fitted to, looked up by the
      clip's index. Most literal: ``"batch"``, since Algorithm 1 computes w_j "for each sample j in B_t"
      inside the mini-batch loop; the gap terms of Eq. 10 use the batch's gap under both readings.
    * ``components``: which component is balanced. ``"nearest-zero"``: the mean nearest 0 at every fit;
      ``"tracked"``: each fit's components matched to the previous fit's by mean
      (:func:`~gapkit.mixture.track_components`; the first fit: nearest 0). Each fit's record says
      whether its labels differ from nearest-zero (``swapped``). Most literal: ``"nearest-zero"``, the
      paper's balanced distribution "centered around zero" (Sec. 1, 3.2).
    * ``penalty``: Eq. 10's gap terms on g itself (``"symmetric"``), or on
      :func:`~gapkit.gap.one_sided_gap` (``"one-sided"``): the stronger modality's confidence detached,
      so the terms pull only the weaker one's up. Most literal: ``"symmetric"``, Eq. 10's |g_i|^2.
    * ``gap_source``: the gaps the GMM is fitted to. ``"train"``: every training clip's;
      ``"held-out"``: only those of :func:`held_out_clips`, a seeded fifth of the training split that is
      trained on during warm-up (so that this reading branches from the same warm-up as every other)
      and left out of every adaptive epoch, so that from the first adaptive epoch on the GMM describes
      gaps of clips the adaptive loss never fitted; the first fit sees them after the warm-up only. Its
      adaptive epochs train on four fifths of the clips: the comparison with ``"train"`` includes that.
      Eq. 9 weights the trained clips from this GMM. Most literal: ``"train"``, Algorithm 1's
      "Collect modality gaps G = {g_i}, i = 1..N, from D", D the training set.

    The default reading is the paper's most literal one except for ``lambda_epoch``.
    """

    name = "adaptive"
    two_stage = True
    fits_gmm = True
    defaults = {"alpha": 1.0, "beta": 1.0, "gamma": 1.0, "use_weights": True, "weight_control": None,
                **{option: values[0] for option, values in READING_CHOICES.items()}}
    choices = {"weight_control": (None, "gap-magnitude", "shuffled"), **READING_CHOICES}

    def training_step(self, model, audio, visual, y, ctx: Context) -> StepOutput:
        logits, logits_a, logits_v = model(audio, visual)
        if ctx.phase == "warmup":
            loss = warmup_loss(logits, logits_a, logits_v, y)
        else:
            o = self.options
            weights = None  # None: Eq. 9 on the batch's gaps, inside adaptive_loss
            if o["use_weights"] and (o["posteriors"] == "collected" or o["weight_control"] is not None):
                g = modality_gap(logits_a, logits_v, y)
                weights = self.posteriors(g, ctx)
                if o["weight_control"] is not None:
                    weights = control_weights(g, *weights, o["weight_control"])
            loss = adaptive_loss(logits, logits_a, logits_v, y, ctx.mixture, annealing_epoch(ctx, o["lambda_epoch"]),
                                 alpha=o["alpha"], beta=o["beta"], gamma=o["gamma"], use_weights=o["use_weights"],
                                 weights=weights, penalty=o["penalty"])
        return StepOutput(loss, logits, logits_a, logits_v)

    def posteriors(self, g: torch.Tensor, ctx: Context) -> tuple[torch.Tensor, torch.Tensor]:
        """Eq. 9's (w_bal, w_imb) for a mini-batch whose gaps are ``g``, under the ``posteriors`` reading: of ``g``
        itself, or of the gaps collected at the step's start for the batch's clips (``ctx.batch_index``)."""
        if self.options["posteriors"] == "collected":
            g = ctx.train_gaps[ctx.batch_index.to(ctx.train_gaps.device)]  # a no-op: both on the device
        return ctx.mixture.posteriors(g)

    def training_clips(self, n_train: int, phase: str, seed: int) -> torch.Tensor | None:
        """Adaptive epochs under ``gap_source="held-out"`` train on every clip but :func:`held_out_clips`."""
        if phase != "adaptive" or self.options["gap_source"] != "held-out":
            return None
        keep = torch.ones(n_train, dtype=torch.bool)
        keep[held_out_clips(n_train, seed)] = False
        return keep.nonzero().squeeze(1)

    def fit_mixture(self, gaps, previous, seed: int):
        """Eq. 8 fitted to the gaps of ``gap_source`` (every clip's, or the held-out clips'), its components labelled
        as ``components`` says."""
        if self.options["gap_source"] == "held-out":
            gaps = gaps[held_out_clips(len(gaps), seed).numpy()]
        mixture = super().fit_mixture(gaps, previous, seed)
        return track_components(mixture, previous) if self.options["components"] == "tracked" else mixture

    def on_epoch_end(self, model, data, ctx: Context) -> dict:
        if ctx.phase != "adaptive":
            return {}
        return {"lambda_t": annealing_coefficient(annealing_epoch(ctx, self.options["lambda_epoch"]))}
