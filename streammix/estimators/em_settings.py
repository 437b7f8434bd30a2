"""The EM estimator role: settings of an EM fit and the components it assigns rows to.

Layer: edges. :class:`EMEstimator` is what :class:`~streammix.GaussianMixture` and
:class:`~streammix.OnlineGaussianMixture` add to the fitted density
(:class:`~streammix.estimators.density.MixtureDensity`): scikit-learn's EM
parameters (components, regularisation, initialisation, warm start, the policy
for degenerate components), their checks, the fit's input, and the clustering
view of a mixture (``predict``, ``predict_proba``, ``fit_predict``).
"""

from __future__ import annotations

from typing import Any, ClassVar

from .._validation import Constraint, Interval, IsArrayLike, IsBool, IsNone, Options
from ..core.mstep import DEGENERATE_POLICIES
from ..engine import scoring
from ..engine.data import ChunkedData
from ..engine.init import INIT_METHODS, InitSpec
from ..io.weights import as_weighted
from .density import DENSITY_RULES, MixtureDensity, check_matrices, check_means, check_weights

# Rules for the parameters every EM estimator has; subclasses add their own.
EM_RULES: dict[str, list[Constraint]] = {
    **DENSITY_RULES,
    "n_components": [Interval("int", 1, None, "left")],
    "reg_covar": [Interval("real", 0.0, None, "left")],
    "init_params": [Options(INIT_METHODS)],
    "weights_init": [IsArrayLike(), IsNone()],
    "means_init": [IsArrayLike(), IsNone()],
    "precisions_init": [IsArrayLike(), IsNone()],
    "warm_start": [IsBool()],
    "on_degenerate": [Options(DEGENERATE_POLICIES)],
}


class EMEstimator(MixtureDensity):
    """A mixture fitted by EM: its settings, checks, and component assignments."""

    _rules: ClassVar[dict[str, list[Constraint]]] = EM_RULES

    n_components: int
    reg_covar: float
    init_params: str
    weights_init: Any
    means_init: Any
    precisions_init: Any
    warm_start: bool
    on_degenerate: str

    def _init_spec(self, n_features: int) -> InitSpec:
        k = self.n_components
        return InitSpec(
            self.init_params,
            None if self.weights_init is None else check_weights(self.weights_init, k),
            None if self.means_init is None else check_means(self.means_init, k, n_features),
            None
            if self.precisions_init is None
            else check_matrices(self._family(), self.precisions_init, k, n_features, "precisions"),
        )

    def _continuing(self) -> bool:
        return bool(self.warm_start) and self.__sklearn_is_fitted__()

    def _fit_data(self, X: Any, sample_weight: Any = None) -> ChunkedData:
        """Data to fit on, with its weights; NaN passes when ``missing="em"``."""
        allow_nan = getattr(self, "missing", "error") == "em"
        data = as_weighted(X, sample_weight, allow_nan=allow_nan)
        if self._continuing():
            self.check_n_features(data.n_features)
        return data

    # ------------------------------------------------------------ clustering
    def predict(self, X: Any) -> Any:
        """The most likely component of every row."""
        data = self._data(X)
        return scoring.score(data, self.params_, "label")

    def predict_proba(self, X: Any) -> Any:
        """Responsibilities, shape ``(n_samples, n_components)``; float32 when the
        model and the rows are float32, float64 otherwise."""
        data = self._data(X)
        return scoring.score(data, self.params_, "proba", dtype=self._output_dtype(data))
