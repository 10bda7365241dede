"""The rule every claim and every paired comparison is decided by: a three-way status from a 95% interval, the
chance a re-run reaches it, and the row a claim is written in.

Used by :mod:`gapkit.report.claims` and :mod:`gapkit.report.gmm_claims` (the claims table) and
:mod:`gapkit.report.tables` (the readings table).
"""
from __future__ import annotations

import math

import pandas as pd

HOLDS, CONTRADICTED, NOT_MEASURED = "holds", "contradicted", "not measured"

#: the confidence level of every interval a status is decided on
LEVEL = 0.95


def seed_count(n: int) -> str:
    """``1 seed``, ``5 seeds``."""
    return f"{n} seed{'s' if n != 1 else ''}"


def not_resolved(n: int) -> str:
    """The status of a claim whose interval does not decide it: ``not resolved at <n> seed(s)``."""
    return f"not resolved at {seed_count(n)}"


def decide(stats: dict, direction: int, threshold: float = 0.0) -> str:
    """Three-way status of the claim "the per-seed values lie above ``threshold``" (``direction`` +1) or "below it"
    (-1), from their :func:`~gapkit.results.mean_interval`: holds where the interval excludes the threshold on the
    claimed side, contradicted where it excludes it on the other, not resolved otherwise (and at one seed)."""
    if direction not in (1, -1):
        raise ValueError(f"direction must be +1 (above) or -1 (below), got {direction!r}")
    if stats["n"] == 0:
        return NOT_MEASURED
    above, below = stats["ci_low"] > threshold, stats["ci_high"] < threshold  # both False for a NaN interval
    if above or below:
        return HOLDS if above == (direction > 0) else CONTRADICTED
    return not_resolved(stats["n"])


def reproduction_probability(stats: dict, status_of, thresholds) -> float | None:
    """The chance that a re-run of the same seeds with other rounding reaches the same status as ``stats``.

    Under floating-point chaos a re-run redraws each seed's value (the perturbation check measures how far it moves),
    so its mean is taken as normal around this mean with the variance of a difference of two independent means,
    2 SE^2 (SE = the interval's half-width / its t quantile), and its interval as wide as this one. ``status_of``
    gives the status of such an interval (the claim's own rule); it can change only where the interval's end
    crosses one of ``thresholds`` (0, the paper's effect, a tolerance), so the probability is the normal mass of
    the stretches of re-run means whose status is this one's. ``None`` for fewer than two seeds (no interval).
    """
    from scipy.stats import norm, t

    n = stats["n"]
    if n < 2 or not math.isfinite(stats["ci_low"]) or not math.isfinite(stats["ci_high"]):
        return None
    half = (stats["ci_high"] - stats["ci_low"]) / 2
    spread = math.sqrt(2) * half / float(t.ppf((1 + LEVEL) / 2, n - 1))
    if spread == 0:
        return 1.0

    def at(mean: float) -> str:
        return status_of({**stats, "mean": mean, "ci_low": mean - half, "ci_high": mean + half})

    observed = at(stats["mean"])
    edges = sorted({b for thr in thresholds for b in (thr - half, thr + half)})
    points = [edges[0] - 1, *((a + b) / 2 for a, b in zip(edges, edges[1:])), edges[-1] + 1]
    bounds = [-math.inf, *edges, math.inf]
    return float(sum(norm.cdf(hi, stats["mean"], spread) - norm.cdf(lo, stats["mean"], spread)
                     for lo, hi, point in zip(bounds, bounds[1:], points) if at(point) == observed))


def per_seed(values, fmt: str = "{:+.2f}") -> str:
    """``seed 0: +1.20, seed 1: -0.40`` from a seed-indexed series or dict."""
    return ", ".join(f"seed {s}: {fmt.format(v)}" for s, v in dict(values).items())


def claim_row(claim: str, source: str, paper: str, measured: str, status: str, rerun: float | None = None) -> dict:
    """One row of the claims table; ``rerun``: :func:`reproduction_probability` of its status (``None`` for a claim
    decided seed by seed or on several intervals)."""
    return {"claim": claim, "source": source, "paper": paper, "measured": measured, "status": status,
            "rerun": rerun}


def decided(stats: dict, direction: int, threshold: float = 0.0) -> tuple[str, float | None]:
    """:func:`decide`'s status and the chance a re-run reaches it (:func:`reproduction_probability`)."""
    def status_of(s):
        return decide(s, direction, threshold)

    return status_of(stats), reproduction_probability(stats, status_of, [threshold])


def every_seed(favours: pd.Series, n: int, against: pd.Series | None = None) -> str:
    """A claim decided seed by seed: holds where every seed favours it, contradicted where every seed is against it
    (``against``; default: every seed does not favour it), not resolved otherwise, and at one seed (a verdict
    never rests on one run)."""
    if n == 0:
        return NOT_MEASURED
    if n < 2:
        return not_resolved(n)
    against = ~favours if against is None else against
    if bool(favours.all()):
        return HOLDS
    if bool(against.all()):
        return CONTRADICTED
    return not_resolved(n)


def all_of(statuses: list[str], n: int) -> str:
    """The status of a claim made of several parts: contradicted if one part is, holds if every part does."""
    if NOT_MEASURED in statuses:
        return NOT_MEASURED
    if CONTRADICTED in statuses:
        return CONTRADICTED
    return HOLDS if all(s == HOLDS for s in statuses) else not_resolved(n)


def estimate(stats: dict, fmt: str = "{:+.2f}") -> str:
    """``mean [95% CI low, high]``, or the mean and why there is no interval (one seed; ``n/a`` for none)."""
    if stats["n"] == 0:
        return "n/a"
    if stats["n"] == 1:
        return f"{fmt.format(stats['mean'])} (no interval at 1 seed)"
    return (f"{fmt.format(stats['mean'])} [{LEVEL:.0%} CI {fmt.format(stats['ci_low'])}, "
            f"{fmt.format(stats['ci_high'])}]")
