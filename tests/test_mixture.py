"""GapMixture (Eq. 8-9): recovery of known parameters, agreement with scikit-learn, degenerate inputs."""
import numpy as np
import pytest
import torch
from sklearn.mixture import GaussianMixture

from gapkit import GapMixture
from gapkit.mixture import bic


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
    with pytest.raises(RuntimeError, match="not fitted"):
        GapMixture().posteriors(torch.zeros(2))
