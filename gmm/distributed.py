"""EM over a ``dask.array``: the E-step as a map-reduce on the blocks, wherever they live.

A :class:`DaskSource` wraps an (N, D) dask array, chunked along the rows, and optional (N,)
weights. Every EM iteration calls :meth:`DaskSource.accumulate`, which runs the same
per-block code as the local path (:func:`gmm.estep.accumulate`) as one task per block, on
whatever scheduler is active (a ``distributed.Client`` sends the tasks to its cluster), and
adds the small (K, F) results up on the caller in block order, so the sums, and therefore
the fit, do not depend on which worker finished first. Only the coefficient matrix of the
current parameters travels to the workers, and only K·F numbers per block come back.

The passes that are not E-steps (the validating summary, the weighted sample and the
nearest-centre pass of the k-means start, the search for poorly explained rows after a
collapse) stream the blocks to the caller one at a time through :meth:`DaskSource.chunks`;
persist the array on the cluster first (``X.persist()``) so that they, and every
iteration, read it from the workers' memory instead of recomputing it.

Dask is optional: this module imports it only when a :class:`DaskSource` is made.
"""

import math

import numpy as np

from ._checks import check_data_array
from .chunks import ArraySource, ChunkSource

DASK_MISSING = "fitting from a dask array needs dask: pip install 'dask[array]'."


def is_dask_array(X):
    """True for a ``dask.array.Array``, recognised without importing dask."""
    return (
        hasattr(X, "__dask_graph__")
        and hasattr(X, "chunks")
        and hasattr(X, "to_delayed")
        and getattr(X, "ndim", None) is not None
    )


def _import_dask():
    try:
        import dask
        import dask.array as da
    except ImportError as err:  # pragma: no cover - exercised only without the extra
        raise ImportError(DASK_MISSING) from err
    return dask, da


class DaskSource(ChunkSource):
    """Rows of an (N, D) ``dask.array`` with optional (N,) weights, as a chunk source.

    Parameters
    ----------
    X : dask.array.Array of shape (N, D)
        Real values, chunked along the rows (the feature axis is merged into one chunk if
        it is split). Row-chunk sizes may be unknown (``nan``), e.g. from
        ``dask.array.from_delayed`` with a ``nan`` row count.
    sample_weight : dask.array.Array or array-like of shape (N,), optional
        Non-negative weights. A NumPy array is split like the rows of ``X`` (which then
        needs known chunk sizes); a dask array must have one block per row block of ``X``.
    scheduler : optional
        Passed to ``dask.compute``: None uses the active scheduler (the current
        ``distributed.Client`` if there is one), or a ``Client``, ``"threads"``, ...

    Notes
    -----
    Values are validated as they stream through the first (summary) pass, like any chunk
    source; the E-step tasks assume that pass has been made.
    """

    def __init__(self, X, sample_weight=None, *, scheduler=None):
        dask, da = _import_dask()
        if not is_dask_array(X):
            raise ValueError(f"X must be a dask array; got {type(X).__name__}.")
        check_data_array(X)
        if math.isnan(X.shape[1]):
            raise ValueError("X must have a known number of columns (features).")
        if len(X.chunks[1]) > 1:
            X = X.rechunk({1: -1})
        self._x_blocks = list(X.to_delayed().ravel())
        self._w_blocks = None
        if sample_weight is not None:
            self._w_blocks = list(self._weight_array(sample_weight, X, da).to_delayed().ravel())
        self._dask = dask
        self.scheduler = scheduler
        self.X = X
        self.n_features = int(X.shape[1])
        self.n_rows = None if math.isnan(X.shape[0]) else int(X.shape[0])

    @staticmethod
    def _weight_array(w, X, da):
        if not is_dask_array(w):
            w = np.asarray(w)
            if any(math.isnan(c) for c in X.chunks[0]):
                raise ValueError(
                    "X has unknown chunk sizes, so NumPy weights cannot be split like its rows; "
                    "pass the weights as a dask array with one block per block of X."
                )
            if w.shape != (X.shape[0],):
                raise ValueError(
                    f"sample_weight must have shape ({X.shape[0]},) to match X; got {w.shape}."
                )
            return da.from_array(w, chunks=(X.chunks[0],))
        if w.ndim != 1:
            raise ValueError(f"sample_weight must be 1-D; got {w.ndim} dimensions.")
        if len(w.chunks[0]) != len(X.chunks[0]):
            known = not any(math.isnan(c) for c in (*X.chunks[0], *w.chunks[0]))
            if not known:
                raise ValueError(
                    "sample_weight must have one block per row block of X "
                    f"({len(X.chunks[0])}); got {len(w.chunks[0])}."
                )
            w = w.rechunk((X.chunks[0],))
        return w

    def _compute(self, *values):
        return self._dask.compute(*values, scheduler=self.scheduler)

    def chunks(self, max_rows):
        """Compute the blocks one at a time on the scheduler and yield them in slices."""
        for i, xb in enumerate(self._x_blocks):
            wb = None if self._w_blocks is None else self._w_blocks[i]
            x, w = self._compute(xb, wb)
            yield from ArraySource(np.asarray(x), w).chunks(max_rows)

    def accumulate(self, kernel):
        """One E-step as a map-reduce: raw sums M (K, F), Σ w log p(x) and Σ w.

        Each block is reduced where it lives by :func:`gmm.estep.accumulate` with a kernel
        rebuilt from the caller's (its buffers are sized to ``kernel.rows`` and are not
        shipped); the per-block results are added up here in block order.
        """
        delayed = self._dask.delayed
        spec = delayed(kernel.spec(), pure=True)
        tasks = [
            delayed(block_accumulate, pure=True)(
                spec, xb, None if self._w_blocks is None else self._w_blocks[i]
            )
            for i, xb in enumerate(self._x_blocks)
        ]
        M = np.zeros((kernel.K, kernel.fmap.F))
        loglik = weight = 0.0
        for m, ll, wt in self._compute(*tasks):
            M += m
            loglik += ll
            weight += wt
        return M, loglik, weight


def block_accumulate(spec, x, w):
    """The E-step sums of one block, on a worker: :func:`gmm.estep.accumulate` with a fresh
    kernel built from ``spec`` (:meth:`gmm.estep.Kernel.spec`)."""
    from .estep import Kernel, accumulate

    return accumulate(Kernel(*spec), ArraySource(np.asarray(x), w))


def fit_dask(model, X, sample_weight=None, *, scheduler=None):
    """Fit ``model`` (a :class:`gmm.GaussianMixture`) to the rows of a ``dask.array``.

    Every E-step is a map-reduce over the blocks of ``X`` on the active Dask scheduler (a
    ``distributed.Client`` runs it on its cluster); the result equals a fit on the same
    rows held in memory, up to the order of floating-point sums. ``model.fit(X)`` does the
    same when given a dask array; this function also takes a ``scheduler``.

    Parameters
    ----------
    model : GaussianMixture
    X : dask.array.Array of shape (N, D)
    sample_weight : dask.array.Array or array-like of shape (N,), optional
    scheduler : optional
        See :class:`DaskSource`.

    Returns
    -------
    model
        The fitted model.
    """
    return model.fit(DaskSource(X, sample_weight, scheduler=scheduler))
