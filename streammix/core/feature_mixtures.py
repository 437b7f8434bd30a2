"""Independent one-dimensional Gaussian mixtures, one per feature.

Layer: core (numpy only). The density of a row is the product over features of
each feature's own mixture, ``log p(x) = sum_j log sum_m w_jm N(x_j | mu_jm,
var_jm)``: it sees every feature's shape (skew, several modes, a spike at one
value) and none of the dependence between features, which is what a joint
mixture with few components sees best. :class:`~streammix.OutlierDetector`
adds it to its joint mixture's log-likelihood.

The EM step is a sum over rows, so it runs chunk by chunk like the joint
mixture's (:func:`feature_estep` per chunk, :func:`merge_feature_stats` to
combine, :func:`feature_mstep` on the totals). Each feature's sums are taken
about its components' current means, so tight components far from zero keep
their precision.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .families import Prepared
from .kernel import score_rows, score_rows_masked

#: Entries (rows x features x components) of one block of the E-step's arrays.
BLOCK_ENTRIES = 1 << 16
_LOG_2PI = float(np.log(2.0 * np.pi))


@dataclass(frozen=True)
class FeatureMixtures:
    """``weights``, ``means`` and ``variances``, each ``(n_features, n_components)``:
    feature ``j``'s mixture is row ``j`` (its weights sum to one)."""

    weights: np.ndarray
    means: np.ndarray
    variances: np.ndarray

    @property
    def n_features(self) -> int:
        return int(self.means.shape[0])

    @property
    def n_components(self) -> int:
        return int(self.means.shape[1])

    def rescaled(self, center: np.ndarray, scale: np.ndarray) -> FeatureMixtures:
        """The same mixtures for ``x = center + scale * z`` (``z`` the fitted units)."""
        s = np.asarray(scale, dtype=np.float64)[:, None]
        return FeatureMixtures(
            self.weights, np.asarray(center)[:, None] + s * self.means, s * s * self.variances
        )

    def check(self) -> FeatureMixtures:
        """``self`` after checking shapes and ranges (``ValueError`` otherwise)."""
        w, m, v = self.weights, self.means, self.variances
        if not (w.ndim == 2 and w.shape == m.shape == v.shape and w.size > 0):
            raise ValueError(
                f"feature mixtures need equal 2-D shapes; got {w.shape}, {m.shape}, {v.shape}"
            )
        if not (np.all(np.isfinite(m)) and np.all(v > 0) and np.all(np.isfinite(v))):
            raise ValueError("feature mixtures need finite means and positive variances")
        if np.any(w < 0) or not np.allclose(w.sum(axis=1), 1.0, atol=1e-6):
            raise ValueError("each feature's mixture weights must be >= 0 and sum to one")
        return self


def _block_rows(n_features: int, n_components: int) -> int:
    return max(1, BLOCK_ENTRIES // max(1, n_features * n_components))


def _terms(x: np.ndarray, mix: FeatureMixtures) -> tuple[np.ndarray, np.ndarray]:
    """``x_ij - mu_jm`` and ``log w_jm + log N(x_ij | mu_jm, var_jm)``, each of shape
    ``(components, rows, features)``: components first, so that the sums over
    them are elementwise."""
    with np.errstate(divide="ignore"):
        log_w = np.log(mix.weights)
    # (components, 1, features), contiguous along the features as ``x`` is
    const = np.ascontiguousarray((log_w - 0.5 * (_LOG_2PI + np.log(mix.variances))).T)
    half_precision = np.ascontiguousarray((0.5 / mix.variances).T)
    diff = x[None, :, :] - np.ascontiguousarray(mix.means.T)[:, None, :]
    terms = diff * diff
    terms *= half_precision[:, None, :]
    np.subtract(const[:, None, :], terms, out=terms)
    return diff, terms


def _exp_shifted(terms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``exp(terms - top)`` in place of ``terms``, its sum over the first axis and
    ``top`` (the largest term, 0 where none is finite)."""
    top = terms.max(axis=0)
    top[~np.isfinite(top)] = 0.0
    terms -= top
    np.exp(terms, out=terms)
    return terms.sum(axis=0), top


def feature_log_density(X: np.ndarray, mix: FeatureMixtures) -> np.ndarray:
    """``log p(x)`` of every row (float64): the sum over features of each
    feature's mixture log-density. Rows with NaN or infinity get NaN."""
    X = np.asarray(X)
    n = X.shape[0]
    out = np.empty(n)
    step = _block_rows(mix.n_features, mix.n_components)
    for start in range(0, n, step):
        xb = np.asarray(X[start : start + step], dtype=np.float64)
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            total, top = _exp_shifted(_terms(xb, mix)[1])
            per_feature = np.log(total) + top
            out[start : start + len(xb)] = per_feature.sum(axis=1)
    out[~np.isfinite(out)] = np.nan
    return out


#: Per chunk: (rows or sum of weights, log-likelihood sum, responsibility sums,
#: sums of ``x - mu`` and of ``(x - mu)**2``, each ``(n_features, n_components)``).
FeatureStats = tuple[float, float, np.ndarray, np.ndarray, np.ndarray]


def feature_estep(
    X: np.ndarray, offset: int, mix: FeatureMixtures, weights: np.ndarray | None = None
) -> FeatureStats:
    """The E-step's sums over the rows of ``X`` (a chunk function: ``offset`` is
    unused). A row of weight ``w`` counts ``w`` times."""
    d, m = mix.n_features, mix.n_components
    count, loglik = 0.0, 0.0
    s0, s1, s2 = np.zeros((m, d)), np.zeros((m, d)), np.zeros((m, d))
    step = _block_rows(d, m)
    for start in range(0, X.shape[0], step):
        xb = np.asarray(X[start : start + step], dtype=np.float64)
        diff, resp = _terms(xb, mix)
        total, top = _exp_shifted(resp)
        with np.errstate(divide="ignore", invalid="ignore"):
            resp /= total
            log_norm = np.log(total) + top
        if weights is None:
            count += float(xb.shape[0])
            loglik += float(log_norm.sum())
        else:
            wb = np.asarray(weights[start : start + step], dtype=np.float64)
            resp *= wb[:, None]
            count += float(wb.sum())
            loglik += float(wb @ log_norm.sum(axis=1))
        s0 += resp.sum(axis=1)
        resp *= diff
        s1 += resp.sum(axis=1)
        s2 += np.einsum("kij,kij->kj", resp, diff)
    return count, loglik, s0.T.copy(), s1.T.copy(), s2.T.copy()


def merge_feature_stats(a: FeatureStats, b: FeatureStats) -> FeatureStats:
    """The sums of two sets of rows taken about the same means."""
    return (
        a[0] + b[0],
        a[1] + b[1],
        a[2] + b[2],
        a[3] + b[3],
        a[4] + b[4],
    )


def feature_mstep(stats: FeatureStats, mix: FeatureMixtures, reg: float) -> FeatureMixtures:
    """New weights, means and variances (plus ``reg``) from the sums about ``mix``'s
    means. A component that no row chose keeps its mean and gets variance one plus
    ``reg`` and weight zero."""
    count, _, s0, s1, s2 = stats
    empty = s0 <= 1e-12 * max(count, 1.0)
    r = np.where(empty, 1.0, s0)
    shift = np.where(empty, 0.0, s1 / r)
    var = np.where(empty, 1.0, np.maximum(s2 / r - shift * shift, 0.0)) + reg
    weights = np.where(empty, 0.0, s0) / max(count, 1e-300)
    weights = weights / weights.sum(axis=1, keepdims=True)
    return FeatureMixtures(weights, mix.means + shift, var)


def feature_start(
    sample: np.ndarray, weights: np.ndarray | None, n_components: int, reg: float
) -> FeatureMixtures:
    """Equal weights, means at the ``(2i + 1) / (2 n_components)`` quantiles of each
    feature in ``sample`` (weighted by ``weights``), and each feature's variance
    plus ``reg``."""
    x = np.asarray(sample, dtype=np.float64)
    n, d = x.shape
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    q = (2.0 * np.arange(n_components) + 1.0) / (2.0 * n_components)
    order = np.argsort(x, axis=0, kind="stable")
    means = np.empty((d, n_components))
    for j in range(d):
        xs, ws = x[order[:, j], j], w[order[:, j]]
        cum = np.cumsum(ws)
        idx = np.searchsorted(cum, q * cum[-1], side="left")
        means[j] = xs[np.minimum(idx, n - 1)]
    total = w.sum()
    mean = (w @ x) / total
    var = (w @ (x - mean) ** 2) / total
    variances = np.repeat(var[:, None] + reg, n_components, axis=1)
    return FeatureMixtures(np.full((d, n_components), 1.0 / n_components), means, variances)


@dataclass(frozen=True)
class RowScorer:
    """What a scoring job computes for each row: ``joint * log p(x) + features *
    log q(x) + constant``, ``p`` the joint mixture prepared in ``prep`` and ``q``
    the per-feature ``mixtures`` (none: ``log p(x) + constant``).

    Calling it gives every row's score and most likely joint component, NaN and
    -1 for rows that cannot be scored; :meth:`strict` raises for them instead.
    """

    prep: Prepared
    constant: float = 0.0
    joint: float = 1.0
    mixtures: FeatureMixtures | None = None
    features: float = 0.0

    def _combine(self, ll: np.ndarray, X: np.ndarray) -> np.ndarray:
        per_feature = None if self.mixtures is None else feature_log_density(X, self.mixtures)
        return self.from_parts(ll, per_feature)

    def from_parts(self, ll: np.ndarray, per_feature: np.ndarray | None) -> np.ndarray:
        """The scores of rows whose joint log-likelihoods ``ll`` and per-feature ones
        ``per_feature`` (``None`` without ``mixtures``) are already computed."""
        if per_feature is not None:
            ll = self.joint * ll + self.features * per_feature
        return ll + self.constant if self.constant else ll

    def __call__(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ll, label = score_rows_masked(X, self.prep)
        return self._combine(ll, X), label

    def strict(self, X: np.ndarray) -> np.ndarray:
        """The scores; a row with NaN or infinity, or one that no component can
        score, raises as :func:`~streammix.core.kernel.score_rows` does."""
        return self._combine(score_rows(X, self.prep), X)
