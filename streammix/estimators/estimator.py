"""What every streammix estimator shares: parameters, repr, fitted checks, tags.

Layer: edges. scikit-learn is not a dependency: the protocol it relies on
(``get_params``/``set_params``, constructor arguments stored unchanged,
``__sklearn_tags__``, ``__sklearn_is_fitted__``) is implemented here, and
scikit-learn is imported only when its own tools ask for tags.
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar, TypeVar

import numpy as np

from .._validation import Constraint, check_params
from ..errors import InvalidInputError, NotFittedError

E = TypeVar("E", bound="Estimator")


class Estimator:
    """Base class: parameters are the constructor's keyword arguments, checked against
    the rules the class declares (``_rules``) by :meth:`check_params`."""

    _estimator_type: ClassVar[str | None] = None
    _fitted_attribute: ClassVar[str] = "n_features_in_"
    _rules: ClassVar[dict[str, list[Constraint]]] = {}

    def check_params(self: E) -> E:
        """Raise :class:`InvalidParameterError` unless every constructor parameter is
        valid (``fit`` checks them too); returns the estimator."""
        check_params(type(self).__name__, self._rules, self.get_params())
        return self

    @classmethod
    def param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [
            p.name
            for p in sig.parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
        ]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor parameters and their current values."""
        return {name: getattr(self, name) for name in self.param_names()}

    def set_params(self, **params: Any) -> Estimator:
        """Set constructor parameters; unknown names raise ``ValueError``."""
        valid = set(self.param_names())
        for name, value in params.items():
            if name not in valid:
                raise ValueError(
                    f"Invalid parameter {name!r} for estimator {type(self).__name__}. "
                    f"Valid parameters are: {sorted(valid)!r}."
                )
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        sig = inspect.signature(type(self).__init__)
        changed = []
        for name in self.param_names():
            default = sig.parameters[name].default
            value = getattr(self, name)
            same = value is default or (
                not isinstance(value, np.ndarray)
                and not isinstance(default, np.ndarray)
                and type(value) is type(default)
                and value == default
            )
            if not same:
                changed.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(changed)})"

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, self._fitted_attribute)

    def __sklearn_tags__(self) -> Any:
        from sklearn.utils import Tags, TargetTags

        return Tags(
            estimator_type=self._estimator_type,
            target_tags=TargetTags(required=False),
            transformer_tags=None,
            regressor_tags=None,
            classifier_tags=None,
        )

    def check_fitted(self) -> None:
        """Raise :class:`NotFittedError` unless the estimator is fitted."""
        if not self.__sklearn_is_fitted__():
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet. Call 'fit' with "
                "appropriate arguments before using this estimator."
            )

    def check_n_features(self, n_features: int) -> None:
        """Raise :class:`InvalidInputError` unless data of ``n_features`` columns fit
        the fitted model."""
        expected = getattr(self, "n_features_in_", None)
        if expected is not None and n_features != expected:
            raise InvalidInputError(
                f"X has {n_features} features, but {type(self).__name__} is expecting "
                f"{expected} features as input."
            )
