"""Tree reduction of per-chunk values, in memory or as a dask graph.

Layer: engine (dask + numpy).

Both forms group consecutive values ``split_every`` at a time and combine each
group left to right, level after level, so the order of additions depends
only on the number of chunks: results do not depend on the number of workers
or on the order in which chunks finish.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import reduce
from typing import Any, TypeVar

from dask.delayed import Delayed, delayed

T = TypeVar("T")

SPLIT_EVERY = 8


def _combine_all(combine: Callable[[T, T], T], *values: T) -> T:
    return reduce(combine, values)


def tree_reduce(
    values: Sequence[T], combine: Callable[[T, T], T], split_every: int = SPLIT_EVERY
) -> T:
    """Reduce in memory, in the same order as :func:`tree_reduce_delayed`."""
    level = list(values)
    if not level:
        raise ValueError("nothing to reduce")
    while len(level) > 1:
        level = [
            _combine_all(combine, *level[i : i + split_every])
            for i in range(0, len(level), split_every)
        ]
    return level[0]


def tree_reduce_delayed(
    values: Sequence[Delayed],
    combine: Callable[[Any, Any], Any],
    split_every: int = SPLIT_EVERY,
) -> Delayed:
    """The same reduction as a graph of delayed tasks."""
    level = list(values)
    if not level:
        raise ValueError("nothing to reduce")
    while len(level) > 1:
        level = [
            delayed(_combine_all, pure=True, name=None)(combine, *level[i : i + split_every])
            for i in range(0, len(level), split_every)
        ]
    return level[0]


def tree_layer(layer: dict[Any, Any], keys: Sequence[Any], combine: Any, prefix: str) -> Any:
    """Add to a task graph ``layer`` the same reduction of the tasks ``keys`` (graph
    tasks named ``prefix``-level-index); returns the key of the result."""
    level = list(keys)
    if not level:
        raise ValueError("nothing to reduce")
    depth = 0
    while len(level) > 1:
        above = []
        for i in range(0, len(level), SPLIT_EVERY):
            key = f"{prefix}-{depth}-{i // SPLIT_EVERY}"
            layer[key] = (_combine_all, combine, *level[i : i + SPLIT_EVERY])
            above.append(key)
        level, depth = above, depth + 1
    return level[0]
