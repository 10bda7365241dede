"""Each claim of the paper, what was measured here, and whether it holds here.

Every claim is decided from one value per seed (an accuracy difference paired by seed, a change of
a GMM parameter or its difference from a reference run's change, a BIC difference, an AUROC) through
the 95% Student-t interval of its mean over seeds (:func:`gapkit.results.mean_interval`): the claim
**holds** where the interval lies wholly on the paper's side of the threshold (0 for a difference), is
**contradicted** where it lies wholly on the other side, and is **not resolved at N seeds** otherwise,
one seed included (no interval). A mean that merely points the paper's way is not evidence at a few
seeds. The per-seed values are listed next to each. The status says nothing about the paper's own
data: these are measurements on whatever profile and dataset were run. Each status decided on one interval
carries the chance that a re-run with other rounding reaches it
(:func:`~gapkit.report.decisions.reproduction_probability`): a status whose interval ends near its threshold
is one another machine may well not reproduce. The claims about the GMM itself are in
:mod:`gapkit.report.gmm_claims`.
"""
from __future__ import annotations

import pandas as pd

from ..paper import FULL_MODEL, TABLE1_LABELS, TABLE2_REPORTED, TABLE3_REPORTED, WEIGHT_CONTROLS
from ..results import IMBALANCED_ABOVE, mean_interval, paired_differences
from .decisions import (HOLDS, LEVEL, NOT_MEASURED, all_of, claim_row, decide, decided, estimate, per_seed,
                        reproduction_probability, seed_count)
from .gmm_claims import gmm_claims
from .tables import Table

#: the AUROC above which w_imb counts as detecting visually degraded clips (0.5 is chance)
AUROC_THRESHOLD = 0.6

#: source of the rows that test controls, not the paper's own experiments
CONTROLS_SOURCE = "Controls (not in the paper)"

#: source of the per-sample rows: a test of the paper's account on its own subsets, not a measurement of the paper
PER_SAMPLE_SOURCE = "Sec. 3.3 (per-sample test, not in the paper)"

#: what each weight control of Table 2 puts in place of w_imb, for its claim
WEIGHT_CONTROL_CLAIMS = {"gap-magnitude": "|g| rescaled to the GMM weight's batch mean",
                         "shuffled": "the GMM's weights shuffled within the batch"}


def accuracy_claim(history: pd.DataFrame) -> dict:
    """Figure 4: unimodal validation accuracies rise during adaptive training and the audio-visual gap shrinks.

    ``history``: :func:`gapkit.results.history_frame` of the Table 1 adaptive runs. Compares the last warm-up
    epoch with the last epoch of training, per seed; the claim holds where all three changes (audio up, visual
    up, |audio - visual| down) do, and is contradicted where one of them is.
    """
    warm = history[history["phase"] == "warmup"].groupby("seed").last()
    end = history.groupby("seed").last()
    gap_w = 100 * (warm["val_acc_audio"] - warm["val_acc_visual"]).abs()
    gap_e = 100 * (end["val_acc_audio"] - end["val_acc_visual"]).abs()
    changes = {"audio": (100 * (end["val_acc_audio"] - warm["val_acc_audio"]), +1),
               "visual": (100 * (end["val_acc_visual"] - warm["val_acc_visual"]), +1),
               "|gap|": (gap_e - gap_w, -1)}
    stats = {name: mean_interval(values, LEVEL) for name, (values, _) in changes.items()}
    n = len(gap_w)
    status = all_of([decide(stats[name], direction) for name, (_, direction) in changes.items()], n)
    change = ", ".join(f"{name} {estimate(s, '{:+.1f}')}" for name, s in stats.items())
    measured = (f"end of warm-up: audio {100 * warm['val_acc_audio'].mean():.1f}%, visual "
                f"{100 * warm['val_acc_visual'].mean():.1f}% (|gap| {gap_w.mean():.1f} points); end of training: "
                f"audio {100 * end['val_acc_audio'].mean():.1f}%, visual {100 * end['val_acc_visual'].mean():.1f}% "
                f"(|gap| {gap_e.mean():.1f} points); change in points {change} (means over {seed_count(n)}; "
                f"per seed |gap| "
                f"{', '.join(f'{s}: {a:.1f} -> {b:.1f}' for s, a, b in zip(gap_w.index, gap_w, gap_e))})")
    return claim_row("Unimodal validation accuracies rise and converge during adaptive training "
                "(|audio - visual| shrinks from end of warm-up to end)", "Sec. 4.5, Fig. 4",
                "about 10 points apart after warm-up; both rise and converge", measured, status)


def comparison(claim: str, source: str, paper: str, runs: pd.DataFrame, better: str, worse: str,
               paper_effect: float | None = None) -> dict:
    """``better``'s test accuracy exceeds ``worse``'s: decided on their differences paired by seed.

    Beside the sign, the row says the smallest effect the interval can detect (its half-width) and, where the
    paper reports the same comparison (``paper_effect``, points on CREMA-D), whether the interval excludes an
    effect that large: a finding even when the sign is unresolved, and part of the status. A sign left unresolved
    reads "no difference larger than X points" in the measurement (X moves with every re-run, so the status,
    which a re-run should reproduce, holds no measured number).
    """
    diff = 100 * paired_differences(runs, better, worse)
    stats = mean_interval(diff, LEVEL)
    if stats["n"] == 0:
        return claim_row(claim, source, paper, "not measured (no seed has both runs)", NOT_MEASURED)
    half = (stats["ci_high"] - stats["ci_low"]) / 2
    measured = (f"{better} - {worse} = {estimate(stats)} points of test accuracy at the best validation epoch "
                f"after warm-up (mean over {seed_count(stats['n'])}, paired by seed; {per_seed(diff)}); smallest "
                f"effect this interval detects: {half:.1f} points")

    def status_of(s: dict) -> str:
        status = decide(s, +1)
        if paper_effect is not None and s["n"] > 1 and not s["ci_low"] <= paper_effect <= s["ci_high"] \
                and status != HOLDS:
            status += f"; excludes the paper's {paper_effect:+.1f}"
        return status

    if paper_effect is not None and stats["n"] > 1:
        excluded = not stats["ci_low"] <= paper_effect <= stats["ci_high"]
        measured += f"; the paper's effect {paper_effect:+.1f} lies {'outside' if excluded else 'inside'} the interval"
    status = status_of(stats)
    if status.startswith("not resolved") and stats["n"] > 1:
        measured += f"; no difference larger than {max(abs(stats['ci_low']), abs(stats['ci_high'])):.1f} points"
    thresholds = [0.0] if paper_effect is None else [0.0, paper_effect]
    return claim_row(claim, source, paper, measured, status, reproduction_probability(stats, status_of, thresholds))


def auroc_claim(auroc: pd.DataFrame) -> dict:
    """Discussion: the imbalanced component gathers low-quality samples (checked against the embedded corpus's record).

    ``auroc``: one row per seed with ``seed`` and ``auroc_visual``, ``auroc_audio``, ``auroc_any``
    (:func:`gapkit.results.warmup_gmm_summary`); decided on the per-seed AUROC for visually degraded clips.
    """
    stats = {kind: mean_interval(auroc[f"auroc_{kind}"], LEVEL) for kind in ("visual", "audio", "any")}
    visual = auroc.set_index("seed")["auroc_visual"].dropna()
    measured = (f"AUROC of w_imb (Eq. 9, after warm-up) for visually degraded clips "
                f"{estimate(stats['visual'], '{:.3f}')}, audio-degraded {estimate(stats['audio'], '{:.3f}')}, any "
                f"{estimate(stats['any'], '{:.3f}')} (0.5 = chance, holds above {AUROC_THRESHOLD}; mean over "
                f"{seed_count(stats['visual']['n'])}; visual: {per_seed(visual, '{:.3f}')})")
    return claim_row("The imbalanced component (audio >> visual) flags clips whose visual stream is degraded",
                "Sec. 5 (Discussion)", "imbalanced samples 'may result from low-quality data'", measured,
                *decided(stats["visual"], +1, AUROC_THRESHOLD))


def per_sample_claim(per_sample: pd.DataFrame, other: str = TABLE1_LABELS["concat"], *,
                     ours: str = TABLE1_LABELS["adaptive"], name: str | None = None, source: str = PER_SAMPLE_SOURCE,
                     paper: str = "not measured; Sec. 3.3 weights the imbalanced samples as 'hard samples' so that "
                                  "their predictions get corrected") -> dict:
    """On the test clips the seed's warm-up GMM calls imbalanced, ``ours`` gains more accuracy than ``other``.

    ``per_sample``: the per-run table of :func:`gapkit.results.per_sample_gain` (``variant``, ``seed``, ``subset``,
    ``n_samples``, ``accuracy_before``, ``accuracy_after``, ``change``). Clips picked by the warm-up model's own
    extreme gaps regress to the mean under any further training, so the gain is decided against ``other``'s on the
    same clips, not against 0: on the per-seed difference of ``accuracy_after`` (``ours`` - ``other``, points) on the
    imbalanced subset, paired by seed (both runs of a seed share the subsets and the warm-up model that gives
    ``accuracy_before``, so this is also the difference of their changes). Reported beside it: the same difference on
    the balanced subset, the imbalanced minus the balanced margin, and each run's own change. ``name``: how the claim
    names ``other`` (default: its label). Seeds whose imbalanced subset is empty drop out.
    """
    claim = f"On the clips the warm-up GMM calls imbalanced, {ours} gains more than {name or other}"

    def margin(subset: str) -> pd.Series:
        return 100 * paired_differences(per_sample[per_sample["subset"] == subset], ours, other, "accuracy_after")

    imb, bal = margin("imbalanced"), margin("balanced")
    stats, bal_stats = mean_interval(imb, LEVEL), mean_interval(bal, LEVEL)
    if stats["n"] == 0:
        return claim_row(claim, source, paper, f"not measured (no seed has runs of both {ours} and {other} with "
                                               f"imbalanced test clips)", NOT_MEASURED)
    both = imb.index.intersection(bal.index)
    inter_stats = mean_interval((imb[both] - bal[both]).dropna(), LEVEL)
    mine = per_sample[per_sample["variant"].isin([ours, other]) & per_sample["seed"].isin(imb.index)]
    change = 100 * mine.groupby(["subset", "variant"])["change"].mean()
    sizes = mine[(mine["variant"] == ours) & (mine["subset"] == "imbalanced")]["n_samples"]
    seeds = per_sample[per_sample["variant"] == ours]["seed"].nunique()
    empty = f"; {seeds - stats['n']} seed(s) without imbalanced test clips left out" if seeds > stats["n"] else ""
    changes = "; ".join(f"{subset}: {ours} {change.get((subset, ours), float('nan')):+.2f}, {other} "
                        f"{change.get((subset, other), float('nan')):+.2f}" for subset in ("imbalanced", "balanced"))
    measured = (f"imbalanced subset (w_imb > {IMBALANCED_ABOVE} under the seed's warm-up GMM, {sizes.mean():.1f} test "
                f"clips per seed on average{empty}): {ours} - {other} = {estimate(stats)} points of test accuracy "
                f"(selected models, mean over {seed_count(stats['n'])}, paired by seed; {per_seed(imb)}); balanced "
                f"subset: {estimate(bal_stats)} ({per_seed(bal)}); imbalanced minus balanced margin "
                f"{estimate(inter_stats)}; change from the warm-up model, points (means over seeds): {changes}")
    return claim_row(claim, source, paper, measured, *decided(stats, +1))


def per_sample_claims(per_sample: pd.DataFrame) -> list[dict]:
    """:func:`per_sample_claim` against Concat and, where its runs are in ``per_sample``, against the control that
    keeps the warm-up loss (Eq. 7) throughout from the same warm-up (:data:`gapkit.paper.CONTROL_METHODS`)."""
    rows = [per_sample_claim(per_sample)]
    control = TABLE1_LABELS["warmup-only"]
    if control in set(per_sample["variant"]):
        rows.append(per_sample_claim(per_sample, control, name="the warm-up loss (Eq. 7) kept throughout from the "
                                     "same warm-up", source=CONTROLS_SOURCE,
                                     paper="not run; Sec. 3.3 credits the adaptive loss with correcting the "
                                           "imbalanced samples"))
    return rows


def table1_claims(table1: pd.DataFrame) -> list[dict]:
    """Table 1's claim (ours beats concat) and the controls that take the two-stage method apart one ingredient at a
    time (unimodal losses, optimizer reset, gap terms): ``table1`` needs the runs of concat, ours and the two Table 1
    controls."""
    ours, only, reset = (TABLE1_LABELS[m] for m in ("adaptive", "warmup-only", "warmup-reset"))
    return [
        comparison("The adaptive loss beats the concat baseline", "Sec. 4.3, Table 1",
                   "80.65 vs 67.47 (CREMA-D), 70.90 vs 64.56 (AVE)", table1, ours, "Concat",
                   paper_effect=80.65 - 67.47),
        comparison("The unimodal losses alone (warm-up loss Eq. 7 throughout) beat the concat baseline",
                   CONTROLS_SOURCE, "not run; the paper credits the gain to the adaptive loss", table1, only, "Concat"),
        comparison("Resetting the optimizer state helps even without the adaptive loss (warm-up loss throughout, "
                   "reset vs kept)", CONTROLS_SOURCE,
                   f"not run; Table 3 credits the reset within adaptive training "
                   f"({TABLE3_REPORTED['SGD (reset state)'][0]} vs {TABLE3_REPORTED['SGD (same state)'][0]}, SGD, "
                   f"CREMA-D)", table1, reset, only),
        comparison("The GMM-weighted gap terms of Eq. 10 beat the warm-up loss with the same optimizer reset",
                   CONTROLS_SOURCE, "not run; Sec. 4.3 credits the adaptive loss with 80.65 vs 67.47 (CREMA-D)",
                   table1, ours, reset),
        comparison("The adaptive phase beats keeping the warm-up loss (Eq. 7) for the whole budget", CONTROLS_SOURCE,
                   "not run; Sec. 4.3 credits the adaptive loss with 80.65 vs 67.47 (CREMA-D)", table1, ours, only),
    ]


def table2_claims(table2: pd.DataFrame) -> list[dict]:
    """Table 2's ablations, each "lowers accuracy" against the full model, and the two weight controls."""
    full = FULL_MODEL
    rows = [comparison(f"Ablation '{label}' lowers accuracy", "Sec. 4.4, Table 2",
                       f"{TABLE2_REPORTED[full][0]} -> {crema} (CREMA-D), {TABLE2_REPORTED[full][1]} -> {ave} (AVE)",
                       table2, full, label, paper_effect=TABLE2_REPORTED[full][0] - crema)
            for label, (crema, ave) in list(TABLE2_REPORTED.items())[1:]]
    without = TABLE2_REPORTED["w/o GMM weights"]
    for label, options in WEIGHT_CONTROLS.items():
        rows.append(comparison(f"The GMM's sample separation matters: replacing w_imb by "
                               f"{WEIGHT_CONTROL_CLAIMS[options['weight_control']]} lowers accuracy", CONTROLS_SOURCE,
                               f"not run; Sec. 4.4 credits the GMM weights ({TABLE2_REPORTED[full][0]} -> {without[0]} "
                               f"without them, CREMA-D)", table2, full, label))
    return rows


def claims_table(*, fits: pd.DataFrame, bic: pd.DataFrame, history: pd.DataFrame, table1: pd.DataFrame,
                 table2: pd.DataFrame, table3: pd.DataFrame, auroc: pd.DataFrame | None = None,
                 dataset: str = "synthetic", profile: str = "", reference_fits: pd.DataFrame | None = None,
                 per_sample: pd.DataFrame | None = None, validation_fits: pd.DataFrame | None = None) -> Table:
    """Every claim, one row each: claim, source in the paper, the paper's value, what was measured, status.

    ``table1`` needs the runs of concat, ours and the two Table 1 controls; ``auroc`` the per-seed AUROCs
    (:func:`auroc_claim`; ``None``: no degradation record, no row). ``reference_fits`` (the GMM fits of the runs
    :data:`gapkit.paper.REFERENCE_VARIANT`) and ``validation_fits``
    (:func:`gapkit.reevaluate.validation_gmm_frame`): see :func:`gmm_claims`; ``per_sample`` (the per-run table of :func:`gapkit.results.per_sample_gain`): the rows of
    :func:`per_sample_claims` after Table 1's comparisons. Each ``None``: as without it, no row and no change.
    :func:`gapkit.reevaluate.claim_inputs` gives every one of them from the run tables of Tables 1 and 2.
    """
    rows = gmm_claims(fits, bic, reference_fits, validation_fits)
    rows.append(accuracy_claim(history))
    rows.extend(table1_claims(table1))
    if per_sample is not None:
        rows.extend(per_sample_claims(per_sample))
    rows.extend(table2_claims(table2))
    for opt in ("SGD", "Adam"):
        reset_state, same = f"{opt} (reset state)", f"{opt} (same state)"
        rows.append(comparison(f"Resetting the optimizer state at the start of adaptive training beats keeping it "
                               f"({opt})", "Sec. 4.5, Table 3",
                               f"{TABLE3_REPORTED[reset_state][0]} vs {TABLE3_REPORTED[same][0]} (CREMA-D), "
                               f"{TABLE3_REPORTED[reset_state][1]} vs {TABLE3_REPORTED[same][1]} (AVE)", table3,
                               reset_state, same,
                               paper_effect=TABLE3_REPORTED[reset_state][0] - TABLE3_REPORTED[same][0]))
    if auroc is not None:
        rows.append(auroc_claim(auroc))
    frame = pd.DataFrame(rows)
    rerun = frame["rerun"].dropna()
    caption = (f"Claims of the paper and whether they hold here ({profile} profile, {dataset} dataset). Each claim is "
               f"decided on one value per seed (accuracy differences are paired by seed) through the {LEVEL:.0%} "
               f"Student-t interval of their mean: 'holds' where the interval lies wholly on the paper's side of 0 "
               f"(or of the stated threshold), 'contradicted' where it lies wholly on the other side, 'not resolved "
               f"at N seeds' where it straddles it or a single seed gives no interval. Per-seed values are listed; "
               f"rows from '{CONTROLS_SOURCE}' test controls this project adds. Multiplicity: {len(frame)} claims are "
               f"decided at {LEVEL:.0%} each, so about {len(frame) * (1 - LEVEL):.1f} of them would be decided by "
               f"chance alone if no effect existed; a single decision near its threshold is weak evidence. "
               f"Re-run: the chance that the same seeds re-trained with other rounding (another thread count or CPU, "
               f"which redraws each seed's value) reach the same status: the re-run's mean taken as normal around "
               f"this one with twice its squared standard error, its interval as wide as this one; '-' where a claim "
               f"is decided seed by seed or on several intervals. A status near its threshold is one a re-run "
               f"often changes: over the {len(rerun)} rows with a chance, a re-run is expected to change "
               f"{(1 - rerun).sum():.1f}.")
    display = frame.rename(columns=str.capitalize).rename(columns={"Rerun": "Re-run"})
    display["Re-run"] = [f"{p:.2f}" if pd.notna(p) else "-" for p in frame["rerun"]]
    return Table("claims", caption, frame, display)
