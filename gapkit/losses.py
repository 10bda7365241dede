"""The two training objectives of Section 3.3: warm-up (Eq. 5, 7) and adaptive (Eq. 10)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .gap import modality_gap, one_sided_gap
from .mixture import GapMixture

#: the readings of Eq. 10's gap terms: g itself (the paper's), or g with the stronger modality's score detached
PENALTIES = ("symmetric", "one-sided")


def warmup_loss(logits: torch.Tensor, logits_a: torch.Tensor, logits_v: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Eq. 7: L_warmup = L_MM + L_a + L_v, each the batch-mean cross-entropy of Eq. 5 (in float32: the logits of a
    bf16 forward pass are cast first)."""
    return (F.cross_entropy(logits.float(), y) + F.cross_entropy(logits_a.float(), y)
            + F.cross_entropy(logits_v.float(), y))


def annealing_coefficient(epoch: int, base: float = 0.96) -> float:
    """lambda_t = 0.96 ** epoch of Eq. 10. Which epoch counts is a reading of Algorithm 1 (the adaptive method's
    ``lambda_epoch``: counted from 0 when adaptive training starts, when each adaptive step starts, or globally)."""
    return base ** epoch


def adaptive_loss(logits: torch.Tensor, logits_a: torch.Tensor, logits_v: torch.Tensor, y: torch.Tensor,
                  mix: GapMixture, epoch: int, alpha: float = 1.0, beta: float = 1.0, gamma: float = 1.0,
                  use_weights: bool = True, weights: tuple[torch.Tensor, torch.Tensor] | None = None,
                  penalty: str = "symmetric") -> torch.Tensor:
    """Eq. 10, per sample and then averaged over the batch:

        alpha * w_bal * CE(f, y) + lambda_t * (beta * g^2 + gamma * w_imb * (g - mu_0)^2)

    with g the modality gap (Eq. 6), w_bal / w_imb the GMM posteriors of Eq. 9 (constants for
    the gradient), mu_0 the balanced component's mean and lambda_t = 0.96 ** epoch.
    ``use_weights=False`` sets both weights to 1 (the paper's "w/o w" ablation); ``weights``
    replaces Eq. 9's posteriors by given (w_bal, w_imb): the controls of :func:`control_weights`, or
    posteriors of the gaps collected at the step's start. ``penalty="one-sided"`` takes g from
    :func:`~gapkit.gap.one_sided_gap` (same values; gradient to the weaker modality only).
    Computed in float32 whatever the logits' dtype (the gap casts them, and so does the cross-entropy).
    """
    if penalty not in PENALTIES:
        raise ValueError(f"unknown penalty {penalty!r}; use {' or '.join(map(repr, PENALTIES))}")
    g = (one_sided_gap if penalty == "one-sided" else modality_gap)(logits_a, logits_v, y)
    if weights is not None:
        w_bal, w_imb = weights
    elif use_weights:
        w_bal, w_imb = mix.posteriors(g)
    else:
        w_bal = w_imb = torch.ones_like(g)
    ce = F.cross_entropy(logits.float(), y, reduction="none")
    lam = annealing_coefficient(epoch)
    per_sample = alpha * w_bal * ce + lam * (beta * g ** 2 + gamma * w_imb * (g - mix.balanced_mean) ** 2)
    return per_sample.mean()


def control_weights(g: torch.Tensor, w_bal: torch.Tensor, w_imb: torch.Tensor, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights that keep Eq. 9's batch statistics but not its sample separation (controls, not in the paper).

    ``"gap-magnitude"``: w_imb replaced by |g| rescaled to the batch mean of the GMM's w_imb
    (clamped to [0, 1]), w_bal = 1 - w_imb: a weight that grows with the gap without the GMM.
    ``"shuffled"``: the GMM's (w_bal, w_imb) pairs permuted across the batch's samples (global
    torch RNG), so the weights' distribution is the GMM's but no longer belongs to the right sample.
    Both are constants for the gradient, like Eq. 9's.
    """
    g = g.detach()
    if kind == "gap-magnitude":
        magnitude = g.abs()
        scale = w_imb.mean() / magnitude.mean().clamp_min(1e-12)
        w_imb = (magnitude * scale).clamp(0.0, 1.0)
        return 1 - w_imb, w_imb
    if kind == "shuffled":
        perm = torch.randperm(len(g)).to(g.device)
        return w_bal[perm], w_imb[perm]
    raise ValueError(f"unknown weight control {kind!r}; use 'gap-magnitude' or 'shuffled'")
