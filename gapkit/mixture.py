"""The two-component Gaussian mixture over modality gaps (Eq. 8) and its posteriors (Eq. 9).

The mixture is fitted with scikit-learn's ``GaussianMixture`` (EM); component
0 is the *balanced* one, the component whose mean is nearest 0, and component 1
the *imbalanced* one. :func:`track_components` relabels a fit to follow the
previous fit's components instead (``swapped`` then says the balanced component
is not the one nearest 0).

Fallbacks, so that training never crashes or produces NaN weights:

* Non-finite gaps (NaN, inf) are left out of the fit and counted in
  ``n_nonfinite``; at posterior time a non-finite gap gets ``w_bal = 1``,
  ``w_imb = 0``.
* Fewer than two distinct finite gaps, or a fit in which a component's weight
  falls below ``min_weight`` (a collapsed component), give a *single-Gaussian
  fallback*: the balanced component takes all the weight (mean and variance of
  the finite gaps, variance at least ``reg_covar``; mean 0, variance 1 when no
  gap is finite), the imbalanced one gets weight 0 with the same mean and
  variance, so every sample has ``w_bal = 1``, ``w_imb = 0``. ``fallback``
  then says why.
* Variances are floored by ``reg_covar`` (scikit-learn adds it in the fit),
  and posteriors are computed in log space, so a very narrow component cannot
  overflow.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from sklearn.mixture import GaussianMixture


def _as_numpy(gaps) -> np.ndarray:
    if isinstance(gaps, torch.Tensor):
        gaps = gaps.detach().cpu().double().numpy()
    return np.asarray(gaps, dtype=np.float64).ravel()


class GapMixture:
    """p(g) = pi_0 N(g | mu_0, sigma_0^2) + pi_1 N(g | mu_1, sigma_1^2) (Eq. 8), balanced component first.

    ``weights``, ``means`` and ``variances`` are length-2 numpy arrays after :meth:`fit`.
    """

    def __init__(self, seed: int = 0, n_init: int = 3, max_iter: int = 200, reg_covar: float = 1e-6,
                 min_weight: float = 1e-3) -> None:
        self.seed = seed
        self.n_init = n_init
        self.max_iter = max_iter
        self.reg_covar = reg_covar
        self.min_weight = min_weight
        self.weights: np.ndarray | None = None
        self.means: np.ndarray | None = None
        self.variances: np.ndarray | None = None
        self.fallback: str | None = None
        self.n_fit = 0
        self.n_nonfinite = 0
        #: True where :func:`track_components` made the component farther from 0 the balanced one
        self.swapped = False

    def fit(self, gaps) -> "GapMixture":
        """Fit Eq. 8 to a 1-D array or tensor of gaps with EM (scikit-learn); returns self."""
        g = _as_numpy(gaps)
        finite = g[np.isfinite(g)]
        self.n_fit, self.n_nonfinite = len(finite), len(g) - len(finite)
        if len(np.unique(finite)) < 2:
            return self._single(finite, f"{len(np.unique(finite))} distinct finite gap value(s)")
        gm = GaussianMixture(n_components=2, n_init=self.n_init, max_iter=self.max_iter,
                             reg_covar=self.reg_covar, random_state=self.seed).fit(finite[:, None])
        weights, means, variances = gm.weights_.ravel(), gm.means_.ravel(), gm.covariances_.ravel()
        if weights.min() < self.min_weight:
            return self._single(finite, f"collapsed component (weight {weights.min():.2e} < {self.min_weight})")
        order = np.argsort(np.abs(means), kind="stable")  # balanced component: mean nearest 0
        self.weights, self.means, self.variances = weights[order], means[order], variances[order]
        self.fallback, self.swapped = None, False
        return self

    def _single(self, finite: np.ndarray, reason: str) -> "GapMixture":
        mean = float(finite.mean()) if len(finite) else 0.0
        var = max(float(finite.var()), self.reg_covar) if len(finite) else 1.0
        self.weights = np.array([1.0, 0.0])
        self.means = np.array([mean, mean])
        self.variances = np.array([var, var])
        self.fallback, self.swapped = reason, False
        return self

    def _check_fitted(self) -> None:
        if self.weights is None:
            raise RuntimeError("GapMixture is not fitted: call fit(gaps) first")

    @property
    def balanced_mean(self) -> float:
        """mu_0, the centre the imbalanced samples are pulled towards in Eq. 10."""
        self._check_fitted()
        return float(self.means[0])

    def posteriors(self, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Eq. 9: w_{i,0} (balanced) and w_{i,1} (imbalanced) for a batch of gaps, summing to 1.

        Computed in torch from the fitted parameters, on ``g``'s device and in its dtype.
        The weights are detached: in Eq. 10 they are constants for the gradient, which
        flows only through the gaps themselves.
        """
        self._check_fitted()
        g = torch.as_tensor(g).detach()
        x = g.to(torch.float64)
        finite = torch.isfinite(x)
        x = torch.where(finite, x, torch.zeros_like(x))
        log_pi, mu, var = self._device_parameters(x.device)
        log_normal = -0.5 * ((x[:, None] - mu) ** 2 / var + torch.log(2 * math.pi * var))
        post = torch.softmax(log_pi + log_normal, dim=1)
        w_imb = torch.where(finite, post[:, 1], torch.zeros_like(post[:, 1]))
        out_dtype = g.dtype if g.is_floating_point() else torch.float32
        return (1 - w_imb).to(out_dtype), w_imb.to(out_dtype)

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_on_device"}  # device copies stay behind

    def _device_parameters(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(log pi, mu, sigma^2) as float64 tensors on ``device``, copied there once per fit and device (not at every
        mini-batch); a refit or relabelling (new parameter values) makes a new copy."""
        key = (str(device), *(a.tobytes() for a in (self.weights, self.means, self.variances)))
        cached = self.__dict__.get("_on_device")
        if cached is None or cached[0] != key:
            params = [torch.as_tensor(a, dtype=torch.float64).to(device) for a in (self.weights, self.means,
                                                                                    self.variances)]
            cached = (key, (torch.log(params[0]), params[1], params[2]))
            self._on_device = cached
        return cached[1]

    def component_densities(self, x) -> np.ndarray:
        """pi_k N(x | mu_k, sigma_k^2) for each component: array (2, len(x)) (the dashed curves of Figure 2)."""
        self._check_fitted()
        x = _as_numpy(x)
        var = self.variances[:, None]
        return self.weights[:, None] * np.exp(-0.5 * (x - self.means[:, None]) ** 2 / var) / np.sqrt(2 * np.pi * var)

    def density(self, x) -> np.ndarray:
        """The mixture density p(x) of Eq. 8."""
        return self.component_densities(x).sum(axis=0)

    def to_dict(self) -> dict:
        """Plain-JSON parameters, balanced component first."""
        self._check_fitted()
        return {
            "weights": self.weights.tolist(), "means": self.means.tolist(), "variances": self.variances.tolist(),
            "density_at_0": float(self.density([0.0])[0]), "fallback": self.fallback,
            "n_fit": self.n_fit, "n_nonfinite": self.n_nonfinite, "swapped": self.swapped,
        }

    @classmethod
    def from_dict(cls, params: dict, seed: int = 0) -> "GapMixture":
        mix = cls(seed=seed)
        mix.weights, mix.means, mix.variances = (np.asarray(params[k], dtype=np.float64)
                                                 for k in ("weights", "means", "variances"))
        mix.fallback, mix.n_fit, mix.n_nonfinite = params.get("fallback"), params.get("n_fit", 0), params.get("n_nonfinite", 0)
        mix.swapped = bool(params.get("swapped", False))
        return mix


def track_components(mix: GapMixture, previous: GapMixture | None) -> GapMixture:
    """Relabel a fresh fit so that each component continues the previous fit's component of nearest mean.

    The "tracked" reading of which component is balanced (not in the paper, whose balanced component is the one
    "centred around zero"): the labelling (as fitted, nearest 0 first, or swapped) with the smaller sum of squared
    distances (mu_k - mu_k^prev)^2 wins, the nearest-zero one on a tie (after a fallback, whose means are equal).
    On a line that keeps the components' order: the balanced component stays the lower (or the upper) one, also
    when the other comes nearer 0 (as the imbalanced mean moves toward 0 over the adaptive steps, Figure 3).
    ``mix.swapped`` records a swap relative to nearest-zero. Nothing is swapped at the first fit (``previous`` is
    ``None``) nor in a single-Gaussian fallback, whose imbalanced component has weight 0. Returns ``mix``,
    relabelled in place.
    """
    if previous is None or mix.fallback is not None:
        return mix
    kept = (mix.means[0] - previous.means[0]) ** 2 + (mix.means[1] - previous.means[1]) ** 2
    crossed = (mix.means[0] - previous.means[1]) ** 2 + (mix.means[1] - previous.means[0]) ** 2
    if crossed < kept:
        mix.weights, mix.means, mix.variances = (a[::-1].copy() for a in (mix.weights, mix.means, mix.variances))
        mix.swapped = not mix.swapped
    return mix


def bic(gaps, n_components: int, seed: int = 0) -> float:
    """Bayesian information criterion of a ``n_components`` Gaussian mixture fitted to the finite gaps (lower is better)."""
    g = _as_numpy(gaps)
    g = g[np.isfinite(g)][:, None]
    return float(GaussianMixture(n_components=n_components, n_init=3, random_state=seed).fit(g).bic(g))
