"""GapMixture (Eq. 8-9): recovery of known parameters, agreement with scikit-learn, degenerate inputs."""
import numpy as np
import pytest
import torch
from sklearn.mixture import GaussianMixture

from gapkit import GapMixture
from gapkit.mixture import bic, track_components


def _sample(n=4000, seed=0):
    rng = np.random.default_rng(seed)
    imbalanced = rng.random(n) < 0.15
    return np.where(imbalanced, rng.normal(0.7, 0.1, n), rng.normal(0.0, 0.05, n)), imbalanced


def test_recovers_known_parameters_balanced_first():
    gaps, _ = _sample()
    mix = GapMixture(seed=0).fit(gaps)
    assert mix.fallback is None
    assert mix.weights == pytest.approx([0.85, 0.15], abs=0.02)
    assert mix.means == pytest.approx([0.0, 0.7], abs=0.01)
    assert mix.variances == pytest.approx([0.05 ** 2, 0.1 ** 2], rel=0.15)


def test_balanced_component_is_nearest_zero_even_when_smaller():
    rng = np.random.default_rng(1)
    gaps = np.concatenate([rng.normal(-0.6, 0.05, 700), rng.normal(0.05, 0.05, 300)])
    mix = GapMixture(seed=0).fit(torch.tensor(gaps))
    assert mix.means[0] == pytest.approx(0.05, abs=0.02)
    assert mix.weights[0] == pytest.approx(0.3, abs=0.03)


def test_posteriors_match_sklearn_predict_proba():
    gaps, _ = _sample(2000, seed=3)
    mix = GapMixture(seed=0).fit(gaps)
    ref = GaussianMixture(2, n_init=3, random_state=0).fit(gaps[:, None])
    proba = ref.predict_proba(gaps[:, None])
    balanced = int(np.argmin(np.abs(ref.means_.ravel())))
    w_bal, w_imb = mix.posteriors(torch.tensor(gaps))
    np.testing.assert_allclose(w_bal.numpy(), proba[:, balanced], atol=1e-6)
    np.testing.assert_allclose(w_imb.numpy(), proba[:, 1 - balanced], atol=1e-6)


def test_posteriors_separate_the_sampled_cohorts():
    gaps, imbalanced = _sample(2000, seed=4)
    _, w_imb = GapMixture(seed=0).fit(gaps).posteriors(torch.tensor(gaps))
    assert w_imb[torch.tensor(imbalanced)].mean() > 0.9
    assert w_imb[torch.tensor(~imbalanced)].mean() < 0.1


@pytest.mark.parametrize("gaps", [np.zeros(50), np.array([0.3]), np.array([]), np.full(10, np.nan)])
def test_fewer_than_two_distinct_values_fall_back_to_one_gaussian(gaps):
    mix = GapMixture().fit(gaps)
    assert mix.fallback is not None
    assert mix.weights.tolist() == [1.0, 0.0]
    w_bal, w_imb = mix.posteriors(torch.tensor([0.0, 0.5, -1.0]))
    assert torch.equal(w_imb, torch.zeros(3)) and torch.equal(w_bal, torch.ones(3))


def test_nonfinite_gaps_are_left_out_and_get_balanced_weight():
    gaps, _ = _sample(1000, seed=5)
    dirty = np.concatenate([gaps, [np.nan, np.inf, -np.inf]])
    mix = GapMixture(seed=0).fit(dirty)
    clean = GapMixture(seed=0).fit(gaps)
    assert mix.n_nonfinite == 3 and mix.n_fit == 1000
    np.testing.assert_allclose(mix.means, clean.means)
    w_bal, w_imb = mix.posteriors(torch.tensor([np.nan, np.inf, 0.7]))
    assert not torch.isnan(w_bal).any() and not torch.isnan(w_imb).any()
    assert w_imb[:2].tolist() == [0.0, 0.0] and w_imb[2] > 0.9


def test_collapsed_component_falls_back():
    rng = np.random.default_rng(0)
    gaps = np.concatenate([rng.normal(0, 0.05, 990), rng.normal(0.8, 0.01, 10)])
    mix = GapMixture(seed=0, min_weight=0.05).fit(gaps)
    assert mix.fallback is not None and "collapsed" in mix.fallback
    _, w_imb = mix.posteriors(torch.tensor(gaps))
    assert torch.equal(w_imb, torch.zeros(len(gaps), dtype=w_imb.dtype))


def test_far_outlier_gets_finite_weights():
    mix = GapMixture.from_dict({"weights": [0.9, 0.1], "means": [0.0, 0.5], "variances": [1e-6, 1e-6]})
    w_bal, w_imb = mix.posteriors(torch.tensor([100.0, -100.0, 0.25]))
    assert torch.isfinite(w_bal).all() and torch.isfinite(w_imb).all()
    assert torch.allclose(w_bal + w_imb, torch.ones(3))


def test_density_and_dict_round_trip():
    gaps, _ = _sample(1000)
    mix = GapMixture(seed=0).fit(gaps)
    params = mix.to_dict()
    again = GapMixture.from_dict(params)
    x = np.linspace(-1, 1, 11)
    np.testing.assert_allclose(again.density(x), mix.density(x))
    np.testing.assert_allclose(mix.component_densities(x).sum(0), mix.density(x))
    assert params["density_at_0"] == pytest.approx(mix.density([0.0])[0])
    # density at 0 of a two-component mixture computed by hand
    m = GapMixture.from_dict({"weights": [0.5, 0.5], "means": [0.0, 1.0], "variances": [1.0, 1.0]})
    assert m.density([0.0])[0] == pytest.approx(0.5 / np.sqrt(2 * np.pi) * (1 + np.exp(-0.5)))


def test_bic_prefers_two_components_on_bimodal_gaps():
    gaps, _ = _sample(2000)
    assert bic(gaps, 2) < bic(gaps, 1)
    unimodal = np.random.default_rng(0).normal(0, 0.1, 2000)
    assert bic(unimodal, 1) < bic(unimodal, 2)


def test_unfitted_mixture_says_so():
    with pytest.raises(RuntimeError, match=r"^GapMixture is not fitted: call fit\(gaps\) first$"):
        GapMixture().posteriors(torch.zeros(2))


def test_fit_and_bic_are_scikit_learns_em_with_the_stated_settings(monkeypatch):
    """The fit is scikit-learn's GaussianMixture with 2 components and the mixture's own n_init, max_iter,
    reg_covar and seed; bic() uses 3 initialisations and its seed (the settings a reader sees in the docs)."""
    import gapkit.mixture as mixture

    made = []

    class Recording(GaussianMixture):
        def __init__(self, **kwargs):
            made.append(kwargs)
            super().__init__(**kwargs)

    monkeypatch.setattr(mixture, "GaussianMixture", Recording)
    gaps, _ = _sample(300)
    GapMixture(seed=7, n_init=2, max_iter=50, reg_covar=1e-4).fit(gaps)
    bic(gaps, 1, seed=5)
    default = GapMixture().fit(gaps)  # the defaults every run uses
    bic(gaps, 2)
    assert made == [{"n_components": 2, "n_init": 2, "max_iter": 50, "reg_covar": 1e-4, "random_state": 7},
                    {"n_components": 1, "n_init": 3, "random_state": 5},
                    {"n_components": 2, "n_init": 3, "max_iter": 200, "reg_covar": 1e-6, "random_state": 0},
                    {"n_components": 2, "n_init": 3, "random_state": 0}]
    assert default.min_weight == 1e-3


def test_bic_of_one_gaussian_by_hand():
    """BIC = -2 log L + p ln n with the maximum-likelihood Gaussian (p = 2: mean and variance); non-finite gaps
    are left out."""
    g = np.array([0.1, 0.4, -0.2, 0.3, 0.0, 0.6])
    mean, var = g.mean(), g.var() + 1e-6  # scikit-learn adds reg_covar to the variance
    log_l = np.sum(-0.5 * np.log(2 * np.pi * var) - 0.5 * (g - mean) ** 2 / var)
    assert bic(np.append(g, [np.nan, np.inf]), 1) == pytest.approx(-2 * log_l + 2 * np.log(6), rel=1e-6)


def test_two_distinct_values_are_fitted_not_a_fallback():
    mix = GapMixture(seed=0).fit(np.repeat([0.0, 0.6], 50))
    assert mix.fallback is None
    np.testing.assert_allclose(mix.means, [0.0, 0.6], atol=1e-9)
    np.testing.assert_allclose(mix.weights, [0.5, 0.5], atol=1e-9)


def test_single_gaussian_fallback_parameters_by_hand():
    """One distinct value: mean that value, variance floored at reg_covar; no finite gap: mean 0, variance 1."""
    same = GapMixture(reg_covar=1e-4).fit(np.full(4, 0.2))
    assert same.fallback == "1 distinct finite gap value(s)"
    np.testing.assert_allclose(same.means, [0.2, 0.2])
    np.testing.assert_allclose(same.variances, [1e-4, 1e-4])
    none = GapMixture().fit(np.array([np.nan, np.inf]))
    assert none.fallback == "0 distinct finite gap value(s)" and none.n_nonfinite == 2
    assert none.means.tolist() == [0.0, 0.0] and none.variances.tolist() == [1.0, 1.0]


def test_component_densities_by_hand():
    mix = GapMixture.from_dict({"weights": [0.25, 0.75], "means": [0.1, -0.5], "variances": [0.04, 0.25]})
    x = 0.3
    expected = [0.25 * np.exp(-0.5 * 0.2 ** 2 / 0.04) / np.sqrt(2 * np.pi * 0.04),
                0.75 * np.exp(-0.5 * 0.8 ** 2 / 0.25) / np.sqrt(2 * np.pi * 0.25)]
    np.testing.assert_allclose(mix.component_densities([x])[:, 0], expected, rtol=1e-12)


def test_dict_round_trip_keeps_every_field_and_defaults_the_missing_ones():
    mix = GapMixture(seed=0).fit(np.concatenate([np.repeat([0.0, 0.6], 50), [np.nan]]))
    mix.swapped = True
    params = mix.to_dict()
    assert set(params) == {"weights", "means", "variances", "density_at_0", "fallback", "n_fit", "n_nonfinite",
                           "swapped"}
    assert (params["n_fit"], params["n_nonfinite"], params["swapped"], params["fallback"]) == (100, 1, True, None)
    again = GapMixture.from_dict(params, seed=7)
    assert (again.seed, again.n_fit, again.n_nonfinite, again.swapped, again.fallback) == (7, 100, 1, True, None)
    fallback = GapMixture.from_dict(GapMixture().fit(np.zeros(3)).to_dict())
    assert fallback.fallback == "1 distinct finite gap value(s)"
    bare = GapMixture.from_dict({"weights": [1, 0], "means": [0, 0], "variances": [1, 1]})
    assert (bare.seed, bare.n_fit, bare.n_nonfinite, bare.swapped, bare.fallback) == (0, 0, 0, False, None)
    assert bare.means.dtype == bare.weights.dtype == bare.variances.dtype == np.float64


@pytest.mark.parametrize("fitted, previous, swapped", [
    ((-0.5, -0.6), (-0.1, -0.3), False),
    ((-0.6, 0.6), (-0.1, -0.2), True),
    ((-0.5, -0.6), (-0.6, 0.6), True),
    ((-0.5, 0.5), (0.5, 0.6), False),
])
def test_track_components_keeps_the_labelling_nearest_the_previous_means(fitted, previous, swapped):
    """Swapped exactly when (mu_0 - mu_1')^2 + (mu_1 - mu_0')^2 < (mu_0 - mu_0')^2 + (mu_1 - mu_1')^2 (primes: the
    previous fit); cases where the two sums are close, so that each term counts."""
    def mixture(means):
        return GapMixture.from_dict({"weights": [0.6, 0.4], "means": list(means), "variances": [0.01, 0.02]})

    out = track_components(mixture(fitted), mixture(previous))
    assert out.swapped is swapped
    assert out.means.tolist() == (list(fitted)[::-1] if swapped else list(fitted))
    assert out.weights.tolist() == ([0.4, 0.6] if swapped else [0.6, 0.4])
    assert out.variances.tolist() == ([0.02, 0.01] if swapped else [0.01, 0.02])


def test_track_components_after_a_fallback_keeps_the_nearest_zero_labels():
    """A fallback's two means are equal, so both labellings are as near: the tie keeps nearest-zero."""
    previous = GapMixture().fit(np.full(5, 0.2))
    mix = GapMixture.from_dict({"weights": [0.6, 0.4], "means": [0.1, -0.5], "variances": [0.01, 0.02]})
    assert not track_components(mix, previous).swapped and mix.means.tolist() == [0.1, -0.5]


def test_float32_gaps_are_fitted_and_weighted_in_float64():
    """A float32 array is fitted exactly as its float64 copy, and Eq. 9 is evaluated in float64 whatever the
    gaps' dtype: near the midpoint of two narrow components float32 arithmetic would be off by 4e-4."""
    gaps, _ = _sample(500)
    g32 = gaps.astype(np.float32)
    np.testing.assert_array_equal(GapMixture(seed=0).fit(g32).means, GapMixture(seed=0).fit(g32.astype(np.float64)).means)
    mix = GapMixture.from_dict({"weights": [0.5, 0.5], "means": [0.0, 0.5], "variances": [1e-6, 1e-6]})
    x = torch.tensor([0.2500001], dtype=torch.float32)
    g = float(x)  # the float32 value, exactly
    by_hand = 1 / (1 + np.exp(-((g ** 2 - (g - 0.5) ** 2) / 2e-6)))  # equal weights and variances
    w_bal, w_imb = mix.posteriors(x)
    assert w_imb.dtype == torch.float32 and w_imb.item() == pytest.approx(by_hand, abs=1e-6)
    assert mix.posteriors(x.double())[1].dtype == torch.float64
    assert mix.posteriors(torch.tensor([0, 1]))[1].dtype == torch.float32  # integer gaps: float32 weights
