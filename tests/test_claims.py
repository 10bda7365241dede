"""The claims' decision rules on hand-made per-seed values: sign, paper's effect size, BIC and dip rules."""
import pandas as pd
import pytest

from gapkit.paper import ABLATIONS, REFERENCE_VARIANT
from gapkit.report import claims


def _runs(diffs, base=70.0):
    rows = []
    for seed, d in enumerate(diffs):
        rows.append({"variant": "A", "seed": seed, "test_acc": (base + d) / 100})
        rows.append({"variant": "B", "seed": seed, "test_acc": base / 100})
    return pd.DataFrame(rows)


def test_an_interval_that_excludes_the_papers_effect_says_so():
    row = claims.comparison("A beats B", "Sec.", "paper", _runs([0.5, -0.4, 0.2, -0.1, 0.3]), "A", "B",
                            paper_effect=13.18)
    assert row["status"].startswith("not resolved at 5 seeds")
    assert "excludes the paper's +13.2" in row["status"]
    # mean +0.1, sd 0.35: t(4) = 2.776 -> half-width 0.44, interval [-0.34, +0.54]
    assert "no difference larger than 0.5 points" in row["measured"]
    assert "smallest effect this interval detects: 0.4 points" in row["measured"]


# --------------------------------------------------------------------------------------- the chance a re-run agrees

# Ten seeds, an interval of half-width 1 around the mean: t_{0.975, 9} = 2.262157, so SE = 1 / 2.262157 and a
# re-run's mean spreads with sd sqrt(2) * SE = 0.625161 around this mean.
SPREAD = 0.625161


def _stats(mean, half=1.0, n=10):
    return {"mean": mean, "std": float("nan"), "n": n, "ci_low": mean - half, "ci_high": mean + half}


def test_a_rerun_keeps_an_open_sign_while_its_mean_stays_within_a_half_width_of_0():
    # contains 0 at mean 0; a re-run keeps it while its mean lies in (-1, +1): 2 Phi(1 / 0.625161) - 1
    # = 2 Phi(1.599589) - 1 = 2 * 0.945155 - 1
    status_of = lambda s: claims.decide(s, +1)  # noqa: E731
    assert claims.reproduction_probability(_stats(0.0), status_of, [0.0]) == pytest.approx(0.890310, abs=1e-5)
    # holds with the interval's low end exactly 0.625161 above 0: a re-run holds while its mean is above 1, Phi(1)
    assert claims.reproduction_probability(_stats(1.625161), status_of, [0.0]) == pytest.approx(0.841345, abs=1e-5)
    assert claims.reproduction_probability(_stats(0.5, n=1), status_of, [0.0]) is None


def test_a_rerun_must_also_keep_the_verdict_on_the_papers_effect():
    # mean 0, interval [-1, +1], the paper's effect +1.5 excluded: the same status needs the re-run's interval to
    # contain 0 and exclude 1.5, i.e. its mean in (-1, +0.5): Phi(0.5 / 0.625161) - Phi(-1 / 0.625161)
    # = Phi(0.799794) - Phi(-1.599589) = 0.788091 - 0.054845
    def status_of(s):
        return claims.decide(s, +1) + ("; excludes" if not s["ci_low"] <= 1.5 <= s["ci_high"] else "")

    assert claims.reproduction_probability(_stats(0.0), status_of, [0.0, 1.5]) == pytest.approx(0.733246, abs=1e-5)
    # the same through a claims row: differences +1, -1 over ten seeds, mean 0, SE sqrt(10/9) / sqrt(10) = 1/3,
    # half-width 2.262157 / 3 = 0.754052, re-run spread sqrt(2) / 3 = 0.471405; the status stays while the re-run's
    # mean lies in (-0.754052, 1.5 - 0.754052): Phi(1.582394) - Phi(-1.599589) = 0.943220 - 0.054845
    row = claims.comparison("A beats B", "Sec.", "paper", _runs([1.0, -1.0] * 5), "A", "B", paper_effect=1.5)
    assert row["status"] == "not resolved at 10 seeds; excludes the paper's +1.5"
    assert row["rerun"] == pytest.approx(0.888375, abs=1e-5)
    # identical values at every seed: no spread, a re-run of the same values cannot change the status
    assert claims.comparison("c", "s", "p", _runs([0.5] * 4), "A", "B")["rerun"] == 1.0


def test_a_clear_effect_holds_and_a_reversed_one_is_contradicted():
    assert claims.comparison("c", "s", "p", _runs([3.0, 3.5, 2.5]), "A", "B", paper_effect=3.0)["status"] == "holds"
    row = claims.comparison("c", "s", "p", _runs([-3.0, -3.5, -2.5]), "A", "B", paper_effect=13.18)
    assert row["status"] == "contradicted; excludes the paper's +13.2"
    assert "inside" not in row["measured"]


def test_bic_and_dip_are_decided_seed_by_seed():
    fits = pd.DataFrame({"seed": [0, 1, 2, 0, 1, 2], "fit": [0, 0, 0, 1, 1, 1],
                         "mu_bal": [0.01] * 6, "mu_imb": [0.5] * 6, "w_imb": [0.2] * 6,
                         "density_at_0": [3.0] * 6, "fallback": [None] * 6})
    # three seeds favouring two components by +38 to +208 decide the BIC claim (an interval over them would not)
    bic = pd.DataFrame({"seed": [0, 1, 2], "bic_1": [138.0, 308.0, 200.0], "bic_2": [100.0, 100.0, 100.0],
                        "dip_p": [0.001, 0.3, 0.01]})
    rows = claims.gmm_claims(fits, bic)
    assert rows[0]["status"] == "not resolved at 3 seeds"  # the dip test rejects one mode at two seeds of three
    assert rows[1]["status"] == "holds"
    bic["dip_p"] = [0.5, 0.4, 0.9]
    bic["bic_2"] = [150.0, 320.0, 230.0]
    rows = claims.gmm_claims(fits, bic)
    assert rows[0]["status"] == "contradicted" and rows[1]["status"] == "contradicted"
    assert claims.gmm_claims(fits.iloc[[0, 3]], bic.iloc[[0]])[0]["status"] == "not resolved at 1 seed"


# ---------------------------------------------------------------------------------------------- against a reference

def _fits(changes, key="w_imb", start=0.2, steps=2, variant="Ours"):
    """A gmm_frame of one run per seed: ``key`` starts at ``start`` and has moved by ``changes[seed]`` at the last
    fit (fit ``steps``); the other parameters stay put."""
    rows = []
    for seed, change in enumerate(changes):
        for fit in range(steps + 1):
            value = start + change * fit / steps
            row = {"variant": variant, "seed": seed, "fit": fit, "label": f"fit {fit}", "mu_bal": 0.01,
                   "mu_imb": 0.5, "w_imb": 0.2, "density_at_0": 3.0, "fallback": None}
            row[key] = value
            rows.append(row)
    return pd.DataFrame(rows)


def test_the_reference_is_table2s_run_without_the_gmm_weights():
    assert ABLATIONS[REFERENCE_VARIANT] == {"use_weights": False}


_BIC = pd.DataFrame({"seed": [0, 1, 2], "bic_1": [200.0] * 3, "bic_2": [100.0] * 3, "dip_p": [0.01] * 3})
_FULL = [-0.10, -0.09, -0.11]  # pi_1 falls at every seed: mean -0.100, sd 0.010, 95% CI [-0.125, -0.075]


def _row(rows, start):
    return next(r for r in rows if r["claim"].startswith(start))


def test_without_a_reference_the_evolution_is_decided_on_the_change():
    row = _row(claims.gmm_claims(_fits(_FULL), _BIC), "The imbalanced component's weight pi_1 falls")
    assert row["claim"] == "The imbalanced component's weight pi_1 falls over the adaptive steps"
    assert row["status"] == "holds"
    assert row["measured"] == ("after warm-up 0.200 -> after 2 adaptive steps 0.100 (means); change -0.100 "
                               "[95% CI -0.125, -0.075] over 3 seeds (seed 0: 0.200 -> 0.100, seed 1: 0.200 -> 0.110, "
                               "seed 2: 0.200 -> 0.090)")


@pytest.mark.parametrize("reference, status, difference", [
    # differences -0.08, -0.09, -0.08: mean -0.0833, sd 0.00577, t(2) = 4.303 -> [-0.0977, -0.0690]
    ([-0.02, 0.00, -0.03], "holds", "-0.083 [95% CI -0.098, -0.069]"),
    # differences +0.10, +0.12, +0.08: mean +0.10, sd 0.02 -> [+0.050, +0.150]
    ([-0.20, -0.21, -0.19], "contradicted", "+0.100 [95% CI +0.050, +0.150]"),
    # differences +0.01, -0.01, 0.00: the change alone holds, the difference with the reference does not
    ([-0.11, -0.08, -0.11], "not resolved at 3 seeds", "+0.000 [95% CI -0.025, +0.025]"),
])
def test_with_a_reference_the_status_comes_from_the_paired_difference(reference, status, difference):
    rows = claims.gmm_claims(_fits(_FULL), _BIC, reference_fits=_fits(reference, variant="w/o GMM weights"))
    row = _row(rows, "The imbalanced component's weight pi_1 falls")
    assert row["claim"] == "The imbalanced component's weight pi_1 falls over the adaptive steps more than without " \
                           "the GMM weights"
    assert row["status"] == status
    assert f"difference of the changes (full model - w/o GMM weights, paired by seed) {difference} over 3 seeds" \
        in row["measured"]
    assert "change -0.100 [95% CI -0.125, -0.075] over 3 seeds" in row["measured"]  # the plain change, still shown
    assert row["measured"].endswith("the full model's change alone would read: holds")
    assert "seed 0: -0.100 - " in row["measured"]


def test_the_reference_pairs_by_seed_and_is_picked_from_a_frame_of_several_variants():
    ref = _fits([-0.02, 0.00, -0.03], variant="w/o GMM weights")
    other = _fits([-0.5, -0.5, -0.5], variant="w/o L_MM (alpha = 0)")
    mixed = pd.concat([ref, other, ref[ref["seed"] == 0].assign(seed=7)], ignore_index=True)  # seed 7: no full run
    row = _row(claims.gmm_claims(_fits(_FULL), _BIC, reference_fits=mixed), "The imbalanced component's weight")
    assert row["status"] == "holds" and "-0.083 [95% CI -0.098, -0.069] over 3 seeds" in row["measured"]
    with pytest.raises(ValueError, match="w/o GMM weights"):
        claims.gmm_claims(_fits(_FULL), _BIC, reference_fits=pd.concat([other, other.assign(variant="x")]))


def test_mean_and_density_against_the_reference():
    # |mu_1|: -0.6 -> -0.3, -0.25, -0.35 (|.| falls 0.30, 0.35, 0.25); without the weights it falls 0.10, 0.05, 0.15
    full = _fits([0.30, 0.35, 0.25], key="mu_imb", start=-0.6)
    ref = _fits([0.10, 0.05, 0.15], key="mu_imb", start=-0.6, variant="w/o GMM weights")
    row = _row(claims.gmm_claims(full, _BIC, reference_fits=ref), "The imbalanced component's mean")
    # differences -0.20, -0.30, -0.10: mean -0.20, sd 0.10 -> [-0.448, +0.048]
    assert row["status"] == "not resolved at 3 seeds"
    assert "-0.2000 [95% CI -0.4484, +0.0484]" in row["measured"]
    assert row["measured"].endswith("would read: holds")  # |mu_1| falls at every seed
    # |mu_1| falls by 0.22, 0.30, 0.18 without the weights: differences -0.08, -0.05, -0.07 -> [-0.1046, -0.0287]
    ref = _fits([0.22, 0.30, 0.18], key="mu_imb", start=-0.6, variant="w/o GMM weights")
    row = _row(claims.gmm_claims(full, _BIC, reference_fits=ref), "The imbalanced component's mean")
    assert row["claim"] == "The imbalanced component's mean moves toward 0 more than without the GMM weights"
    assert row["status"] == "holds" and "-0.0667 [95% CI -0.1046, -0.0287]" in row["measured"]
    # the density rises by 10, 12, 14 with the weights and by 2, 3, 4 without: differences 8, 9, 10 -> holds
    full = _fits([10.0, 12.0, 14.0], key="density_at_0", start=3.0)
    ref = _fits([2.0, 3.0, 4.0], key="density_at_0", start=3.0, variant="w/o GMM weights")
    row = _row(claims.gmm_claims(full, _BIC, reference_fits=ref), "The density at g = 0 rises")
    assert row["claim"] == "The density at g = 0 rises more than without the GMM weights"
    assert row["status"] == "holds" and "+9.00 [95% CI +6.52, +11.48]" in row["measured"]


def test_validation_fits_add_rows_against_the_reference_where_its_runs_are_there():
    full = _fits([-0.10, -0.09, -0.11], steps=1, variant="Full model").assign(
        label=lambda f: f["fit"].map({0: "warm-up model (warmup.pt)", 1: "final model (last.pt)"}))
    ref = _fits([-0.02, 0.00, -0.03], steps=1, variant="w/o GMM weights").assign(label=full["label"].to_numpy())
    rows = claims.gmm_claims(_fits(_FULL), _BIC, validation_fits=pd.concat([full, ref]))
    row = _row(rows, "The imbalanced component's weight pi_1 falls over the adaptive steps more than without the GMM "
                     "weights (GMM fitted to the validation clips' gaps)")
    assert row["status"] == "holds"
    assert "warm-up model (warmup.pt) 0.200 -> final model (last.pt) 0.100 (means)" in row["measured"]
    # the training-gap rows are decided as without a reference (none was given for them)
    assert _row(rows, "The imbalanced component's weight")["claim"].endswith("over the adaptive steps")
    rows = claims.gmm_claims(_fits(_FULL), _BIC, validation_fits=full)
    assert _row(rows, "The imbalanced component's weight pi_1 falls over the adaptive steps (GMM fitted")["status"] \
        == "holds"
    assert len(rows) == 6 + 3
    with pytest.raises(ValueError, match="besides"):
        claims.gmm_claims(_fits(_FULL), _BIC, validation_fits=pd.concat([full, full.assign(variant="Ours")]))


# ---------------------------------------------------------------------------------------------- per-sample

def _per_sample(after, before=0.5, seeds=3):
    """A per_sample_gain table: ``after[variant][subset]`` lists each seed's accuracy after; 'before' is shared."""
    rows = []
    for variant, subsets in after.items():
        for subset, values in subsets.items():
            for seed, value in enumerate(values):
                empty = value is None
                rows.append({"variant": variant, "method": variant.lower(), "seed": seed, "subset": subset,
                             "n_samples": 0 if empty else 10, "accuracy_before": float("nan") if empty else before,
                             "accuracy_after": float("nan") if empty else value,
                             "change": float("nan") if empty else value - before})
    return pd.DataFrame(rows)


_BALANCED = {"Ours": [0.80, 0.80, 0.80], "Concat": [0.78, 0.79, 0.77]}  # Ours - Concat 2, 1, 3 points


@pytest.mark.parametrize("concat, status, margin", [
    ([0.60, 0.61, 0.65], "holds", "+10.00 [95% CI +7.52, +12.48]"),  # 10, 11, 9 points
    ([0.80, 0.83, 0.83], "contradicted", "-10.00 [95% CI -12.48, -7.52]"),  # -10, -11, -9
    # Ours gains on the imbalanced clips at every seed (0.5 -> 0.7x), but Concat gains as much: -1, +1, -1 points
    ([0.71, 0.71, 0.75], "not resolved at 3 seeds", "-0.33 [95% CI -3.20, +2.54]"),
])
def test_per_sample_claim_is_decided_against_concat_not_zero(concat, status, margin):
    table = _per_sample({"Ours": {"imbalanced": [0.70, 0.72, 0.74], "balanced": _BALANCED["Ours"]},
                         "Concat": {"imbalanced": concat, "balanced": _BALANCED["Concat"]}})
    row = claims.per_sample_claim(table)
    assert row["claim"] == "On the clips the warm-up GMM calls imbalanced, Ours gains more than Concat"
    assert row["status"] == status
    assert f"Ours - Concat = {margin} points of test accuracy" in row["measured"]
    assert "balanced subset: +2.00 [95% CI -0.48, +4.48]" in row["measured"]
    assert "imbalanced: Ours +22.00" in row["measured"]  # the plain change: +20, +22, +24 points
    assert "10.0 test clips per seed" in row["measured"]


def test_per_sample_margin_minus_balanced_and_empty_subsets():
    table = _per_sample({"Ours": {"imbalanced": [0.70, 0.72, 0.74, None], "balanced": [*_BALANCED["Ours"], 0.8]},
                         "Concat": {"imbalanced": [0.60, 0.61, 0.65, None], "balanced": [*_BALANCED["Concat"], 0.7]}})
    row = claims.per_sample_claim(table)
    assert row["status"] == "holds"
    assert "1 seed(s) without imbalanced test clips left out" in row["measured"]
    # imbalanced minus balanced margin 8, 10, 6 (seed 3 has no imbalanced clips): mean 8, sd 2 -> [3.03, 12.97]
    assert "imbalanced minus balanced margin +8.00 [95% CI +3.03, +12.97]" in row["measured"]
    # the plain changes skip seed 3 too (its imbalanced subset is empty)
    assert "balanced: Ours +30.00, Concat +28.00" in row["measured"]


def test_per_sample_claims_add_the_control_where_it_ran():
    base = {"Ours": {"imbalanced": [0.70, 0.72, 0.74], "balanced": _BALANCED["Ours"]},
            "Concat": {"imbalanced": [0.60, 0.61, 0.65], "balanced": _BALANCED["Concat"]}}
    assert len(claims.per_sample_claims(_per_sample(base))) == 1
    control = "Warm-up loss throughout (control)"
    rows = claims.per_sample_claims(_per_sample({**base, control: {"imbalanced": [0.71, 0.71, 0.75],
                                                                   "balanced": [0.8, 0.8, 0.8]}}))
    assert len(rows) == 2 and rows[1]["source"] == claims.CONTROLS_SOURCE
    assert rows[1]["claim"].startswith("On the clips the warm-up GMM calls imbalanced, Ours gains more than the "
                                       "warm-up loss")
    assert rows[1]["status"] == "not resolved at 3 seeds" and f"Ours - {control} = -0.33" in rows[1]["measured"]
    row = claims.per_sample_claim(_per_sample({"Ours": base["Ours"]}))
    assert row["status"] == claims.NOT_MEASURED
