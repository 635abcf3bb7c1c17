"""What a user passes as data, as a chunk source: an array (with weights), a dask array, a
list or iterable of ``(X, w)`` pairs, or a :class:`~gmm.chunks.ChunkSource` itself."""

from collections.abc import Iterable

import numpy as np

from .chunks import ArraySource, ChunkSource, IterableSource
from .distributed import DaskSource, is_dask_array


def as_source(X, sample_weight=None):
    """Wrap what a user passed as data into a :class:`ChunkSource`."""
    if isinstance(X, ChunkSource):
        if sample_weight is not None:
            raise ValueError("give the weights of a chunk source inside its (X, w) pairs.")
        return X

    if is_dask_array(X):
        # Before the __array__ test below: np.asarray would compute the whole array here.
        return DaskSource(X, sample_weight)
    if isinstance(X, np.ndarray) or hasattr(X, "__array__"):
        return ArraySource(X, sample_weight)
    if isinstance(X, tuple) and _looks_like_pair(X):
        raise ValueError(
            "X is a single (X_chunk, w_chunk) pair; pass a list of such pairs, or the array "
            "with sample_weight=w."
        )
    if isinstance(X, list | tuple) and X and _looks_like_pair(X[0]):
        if sample_weight is not None:
            raise ValueError("give the weights of a chunk source inside its (X, w) pairs.")
        return IterableSource(X)
    if isinstance(X, Iterable) and not isinstance(X, list | tuple | str | bytes):
        if sample_weight is not None:
            raise ValueError("give the weights of a chunk source inside its (X, w) pairs.")
        return IterableSource(X)
    return ArraySource(np.asarray(X), sample_weight)


def _looks_like_pair(item):
    return (
        isinstance(item, tuple)
        and len(item) == 2
        and np.ndim(item[0]) == 2
        and (item[1] is None or np.ndim(item[1]) == 1)
    )
