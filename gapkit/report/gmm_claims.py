"""The claims about the GMM over the modality gaps: bimodality and a balanced component at 0 after warm-up
(Sec. 3.2, Fig. 2), and its evolution over the adaptive steps (Sec. 4.5, Fig. 3), each against the same Eq. 10
without the GMM weights. Decided as every claim is (:mod:`gapkit.report.decisions`); gathered into the claims table
by :mod:`gapkit.report.claims`.
"""
from __future__ import annotations

import pandas as pd

from ..paper import GMM_REPORTED, REFERENCE_VARIANT
from ..results import mean_interval
from .decisions import LEVEL, claim_row, decide, decided, estimate, every_seed, per_seed, seed_count

#: |mu_0| below this counts as "near 0" (the gap lives in [-1, 1]; the paper's mu_0 is 0.0056)
BALANCED_TOLERANCE = 0.05

#: a BIC difference above which two components are "very strong" evidence (Kass and Raftery's scale)
BIC_MARGIN = 10.0


def gmm_claims(fits: pd.DataFrame, bic: pd.DataFrame, reference_fits: pd.DataFrame | None = None,
               validation_fits: pd.DataFrame | None = None) -> list[dict]:
    """Section 3.2 / Figure 2 (bimodality, balanced component at 0) and Section 4.5 / Figure 3 (evolution).

    ``fits``: :func:`gapkit.results.gmm_frame` of the Table 1 adaptive runs; ``bic``: one row per seed with
    ``bic_1`` and ``bic_2`` of the post-warm-up gaps. Each claim is decided on its per-seed values.

    ``reference_fits``: :func:`gapkit.results.gmm_frame` of the Table 2 runs :data:`REFERENCE_VARIANT` (Eq. 10 with
    every weight 1, same warm-up; a frame of several variants is narrowed to that one). Given, the three evolution
    claims are decided on (change of the full model) - (change without the weights), paired by seed
    (:func:`evolution_claim`), and read "... more than without the GMM weights"; ``None``: on the change alone.
    ``validation_fits``: :func:`gapkit.reevaluate.validation_gmm_frame` of the full model's runs and, optionally, of the
    reference's (told apart by ``variant``): three more evolution rows on the GMM fitted to the validation clips'
    gaps of the warm-up and the final model, against the reference where its runs are in it.
    """
    rows = []
    delta = (bic["bic_1"] - bic["bic_2"]).set_axis(bic["seed"])
    dip_p = bic.set_index("seed")["dip_p"]
    n = len(delta)
    rows.append(claim_row(
        "The modality gaps after warm-up are bimodal (two modes: Hartigan's dip test rejects one mode)",
        "Sec. 3.2, Fig. 2", "two components (weights 0.857 / 0.143)",
        f"dip test p-value per seed: {per_seed(dip_p, '{:.3g}')} (holds where p < {1 - LEVEL:.2f} at every seed, "
        f"contradicted where at none)", every_seed(dip_p < 1 - LEVEL, n)))
    rows.append(claim_row(
        "A 2-component GMM fits the gaps after warm-up better than one Gaussian (BIC; any skewed distribution does)",
        "Sec. 3.2, Fig. 2", "two components (weights 0.857 / 0.143)",
        f"BIC(1) - BIC(2) per seed: {per_seed(delta, '{:+.1f}')} (> {BIC_MARGIN:g}: very strong evidence for two "
        f"components; holds where every seed shows it, contradicted where every seed shows the opposite)",
        every_seed(delta > BIC_MARGIN, n, against=delta < -BIC_MARGIN)))

    first = fits[fits["fit"] == 0].set_index("seed")
    mu0 = first["mu_bal"]
    stats = mean_interval(mu0.abs(), LEVEL)
    rows.append(claim_row(
        f"The balanced component is centred near 0 (|mu_0| < {BALANCED_TOLERANCE})", "Sec. 3.2, Fig. 2",
        f"mu_0 = {GMM_REPORTED['mu_bal']}",
        f"|mu_0| = {estimate(stats, '{:.4f}')} (mean over {seed_count(stats['n'])}; "
        f"{per_seed(mu0, 'mu_0 = {:+.4f}')})",
        *decided(stats, -1, BALANCED_TOLERANCE)))

    reference = _variant(reference_fits, REFERENCE_VARIANT, "reference_fits")
    suffix = " more than without the GMM weights" if reference is not None else ""
    for claim, key, paper, direction, transform, digits in EVOLUTION_CLAIMS:
        rows.append(evolution_claim(claim + suffix, key, paper, direction, fits, reference, transform=transform,
                                    digits=digits))
    fallbacks = fits[fits["fallback"].notna()]
    if len(fallbacks):
        rows[-1]["measured"] += f"; {len(fallbacks)} fit(s) fell back to a single Gaussian"
    if reference is not None and reference["fallback"].notna().any():
        rows[-1]["measured"] += (f"; {int(reference['fallback'].notna().sum())} fit(s) of the runs {REFERENCE_VARIANT} "
                                 f"fell back to a single Gaussian")
    if validation_fits is not None:
        full, ref = _split_validation(validation_fits)
        suffix = " more than without the GMM weights" if ref is not None else ""
        for claim, key, paper, direction, transform, digits in EVOLUTION_CLAIMS:
            rows.append(evolution_claim(f"{claim}{suffix} (GMM fitted to the validation clips' gaps)", key, paper,
                                        direction, full, ref, transform=transform, digits=digits, stages=None))
        fallbacks = full[full["fallback"].notna()]
        if len(fallbacks):
            rows[-1]["measured"] += f"; {len(fallbacks)} fit(s) fell back to a single Gaussian"
    return rows


#: The evolution claims of Section 4.5 / Figure 3: claim, key of a GMM fit, the paper's value, the claimed direction
#: of the change (+1 rises, -1 falls), the transform of the key before the change is taken, the digits shown.
EVOLUTION_CLAIMS = [
    ("The imbalanced component's weight pi_1 falls over the adaptive steps", "w_imb", "falls from 0.143", -1, None, 3),
    ("The imbalanced component's mean moves toward 0", "mu_imb", "|mu_1| falls from 0.6966", -1, "abs", 4),
    ("The density at g = 0 rises", "density_at_0", "about 3.3 -> above 20 after four steps", +1, None, 2),
]


def _variant(frame: pd.DataFrame | None, label: str, name: str) -> pd.DataFrame | None:
    """The rows of variant ``label`` where ``frame`` holds several variants; all of it where it holds one."""
    if frame is None or "variant" not in frame or frame["variant"].nunique() <= 1:
        return frame
    if label not in set(frame["variant"]):
        raise ValueError(f"{name} holds the variants {sorted(frame['variant'].unique())}, none of them {label!r}")
    return frame[frame["variant"] == label]


def _split_validation(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Validation fits -> (the full model's, the reference's or ``None``): the reference is :data:`REFERENCE_VARIANT`,
    the full model the one other variant (a Table 1 "Ours" or a Table 2 "Full model" run table)."""
    if "variant" not in frame:
        return frame, None
    is_ref = frame["variant"] == REFERENCE_VARIANT
    full = frame[~is_ref]
    if full["variant"].nunique() > 1:
        raise ValueError(f"validation_fits holds the variants {sorted(full['variant'].unique())} besides "
                         f"{REFERENCE_VARIANT!r}: pass the full model's runs and the reference's only")
    return full, (frame[is_ref] if is_ref.any() else None)


def _first_last(fits: pd.DataFrame, key: str, transform):
    """Per seed: ``key`` of the first fit (after warm-up) and of the last (after the last adaptive step), transformed,
    and the two fits' labels and the last fit's index (the adaptive steps behind it)."""
    first = fits[fits["fit"] == 0].set_index("seed")
    last = fits.loc[fits.groupby("seed")["fit"].idxmax()].set_index("seed")
    steps = int(last["fit"].iloc[0]) if len(last) else 0
    labels = (first["label"].iloc[0] if "label" in first and len(first) else "first fit",
              last["label"].iloc[0] if "label" in last and len(last) else "last fit")
    return transform(first[key]), transform(last[key]), steps, labels


def evolution_claim(claim: str, key: str, paper: str, direction: int, fits: pd.DataFrame,
                    reference: pd.DataFrame | None = None, *, transform=None, digits: int = 3,
                    stages: tuple[str, str] | None = ("after warm-up", "after {steps} adaptive steps"),
                    source: str = "Sec. 4.5, Fig. 3") -> dict:
    """Figure 3's claim that GMM parameter ``key`` moves in ``direction`` (+1 up, -1 down) from the first fit (after
    warm-up, ``fit`` 0) to the last, per seed; ``transform``: ``"abs"`` (|mu_1|), a function, or ``None``.

    Without ``reference``: decided on the per-seed change. With ``reference`` (the fits of runs without the GMM weights,
    :data:`REFERENCE_VARIANT`, same warm-up): decided on the per-seed difference (change here) - (change there),
    paired by seed, since the gap terms of Eq. 10 move the gaps toward 0 with or without the weights; the plain change
    and the status it alone would give are reported beside it. ``stages`` names the two fits in the text
    (``None``: their ``label`` column, as :func:`gapkit.reevaluate.validation_gmm_frame` writes it).
    """
    transform = (lambda v: v.abs()) if transform == "abs" else (transform or (lambda v: v))
    a, b, steps, labels = _first_last(fits, key, transform)
    start, end = stages if stages is not None else labels
    end = end.format(steps=steps)
    change = b - a
    stats = mean_interval(change, LEVEL)
    fmt, signed = f"{{:.{digits}f}}", f"{{:+.{digits}f}}"
    per = ", ".join(f"seed {s}: {fmt.format(a[s])} -> {fmt.format(b[s])}" for s in a.index)
    plain = (f"{start} {fmt.format(a.mean())} -> {end} {fmt.format(b.mean())} (means); change "
             f"{estimate(stats, signed)} over {seed_count(stats['n'])} ({per})")
    if reference is None:
        return claim_row(claim, source, paper, plain, *decided(stats, direction))
    ra, rb, rsteps, rlabels = _first_last(reference, key, transform)
    rstart, rend = stages if stages is not None else rlabels
    rchange = rb - ra
    rstats = mean_interval(rchange, LEVEL)
    both = change.index.intersection(rchange.index)
    diff = (change[both] - rchange[both]).dropna()
    dstats = mean_interval(diff, LEVEL)
    per_diff = ", ".join(f"seed {s}: {signed.format(change[s])} - {signed.format(rchange[s])} = "
                         f"{signed.format(diff[s])}" for s in diff.index)
    measured = (f"full model: {plain}; {REFERENCE_VARIANT} (Eq. 10 with every weight 1, same warm-up): {rstart} "
                f"{fmt.format(ra.mean())} -> {rend.format(steps=rsteps)} {fmt.format(rb.mean())} (means); change "
                f"{estimate(rstats, signed)} over {seed_count(rstats['n'])}; difference of the changes (full model - "
                f"{REFERENCE_VARIANT}, paired by seed) {estimate(dstats, signed)} over {seed_count(dstats['n'])} "
                f"({per_diff}); the full model's change alone would read: {decide(stats, direction)}")
    return claim_row(claim, source, f"{paper}; the paper shows no run without the GMM weights", measured,
                *decided(dstats, direction))
