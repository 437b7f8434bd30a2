"""Every estimator class, imported so that their model kinds are registered.

Layer: edges.
"""

from __future__ import annotations

from .kde import KernelDensity
from .mixture import GaussianMixture
from .online import OnlineGaussianMixture
from .outliers import OutlierDetector

__all__ = ["GaussianMixture", "KernelDensity", "OnlineGaussianMixture", "OutlierDetector"]
