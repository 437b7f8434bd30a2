"""Randomness: seeds converted once at the boundary, streams that ignore chunking.

Layer: shared (numpy only).
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

# Rows per random stream: the random values of a row depend on its index only,
# never on how the data happen to be chunked.
ROW_STREAM_BLOCK = 4096


def as_generator(random_state: Any) -> np.random.Generator:
    """A ``numpy.random.Generator`` for ``None``, an int, a Generator or a RandomState."""
    if random_state is None:
        return np.random.default_rng()
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(0, 2**31 - 1, size=4))
    if isinstance(random_state, numbers.Integral):
        return np.random.default_rng(int(random_state))
    raise TypeError(f"random_state must be None, an int or a numpy generator; got {random_state!r}")


def draw_entropy(rng: np.random.Generator) -> int:
    """An integer seed drawn from ``rng`` for child streams."""
    return int(rng.integers(0, 2**63 - 1))


def row_uniform(entropy: int, offset: int, n_rows: int, n_cols: int) -> np.ndarray:
    """Uniform ``[0, 1)`` values for global rows ``offset .. offset + n_rows``.

    Rows are grouped in fixed blocks of ``ROW_STREAM_BLOCK``; block ``b`` draws
    from its own stream seeded by ``(entropy, b)``, so the values of a row do not
    depend on the chunk it arrived in.
    """
    out = np.empty((n_rows, n_cols))
    end = offset + n_rows
    first, last = offset // ROW_STREAM_BLOCK, (end - 1) // ROW_STREAM_BLOCK
    for b in range(first, last + 1):
        rng = np.random.default_rng(np.random.SeedSequence(entropy, spawn_key=(b,)))
        block = rng.random((ROW_STREAM_BLOCK, n_cols))
        lo = max(offset, b * ROW_STREAM_BLOCK)
        hi = min(end, (b + 1) * ROW_STREAM_BLOCK)
        out[lo - offset : hi - offset] = block[
            lo - b * ROW_STREAM_BLOCK : hi - b * ROW_STREAM_BLOCK
        ]
    return out
