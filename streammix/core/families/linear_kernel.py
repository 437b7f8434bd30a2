"""The block kernel shared by families whose log-densities are linear in a feature matrix.

Layer: math (numpy only).

For ``diag``, ``spherical`` and narrow ``full`` data, every component's
log-density is one row of ``A @ F`` for a family-defined feature matrix ``F``
of the block, and every component's sums are one column of ``F @ resp.T``: two
GEMMs over all components at once. A family's kernel extends
:class:`LinearKernel` with how it builds ``F`` and ``A`` and how it reads the sums.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .interface import BlockKernel, Prepared


@dataclass(frozen=True, slots=True, eq=False)
class LinearPrepared(Prepared):
    """Constants of a kernel whose log-densities are ``linear @ F + const``.

    Parameters
    ----------
    linear : ndarray of shape (n_components, n_feature_rows)
        One row of coefficients per component, one column per row of ``F``.
    """

    linear: np.ndarray


class LinearKernel(BlockKernel[LinearPrepared]):
    """A kernel whose log-densities are linear in its feature matrix, ``A @ F + c``,
    and whose sums are ``F @ resp.T``: two GEMMs over all components at once."""

    __slots__ = ()

    def log_joint(
        self, F: np.ndarray, y: np.ndarray, prep: LinearPrepared
    ) -> tuple[np.ndarray, Any]:
        lp = prep.linear @ F
        lp += prep.const.astype(lp.dtype)[:, None]
        return lp, None

    def add_block_sums(
        self,
        acc: np.ndarray,
        F: np.ndarray,
        y: np.ndarray,
        resp: np.ndarray,
        prep: LinearPrepared | None = None,
        ctx: Any = None,
    ) -> None:
        acc += F @ resp.T
