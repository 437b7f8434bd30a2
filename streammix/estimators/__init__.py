"""Every estimator class, imported so that their model kinds are registered.

Layer: edges.
"""

from __future__ import annotations

from .gaussian_mixture import GaussianMixture
from .kernel_density import KernelDensity
from .online_mixture import OnlineGaussianMixture
from .outlier_detector import OutlierDetector

__all__ = ["GaussianMixture", "KernelDensity", "OnlineGaussianMixture", "OutlierDetector"]
