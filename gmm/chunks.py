"""Chunk sources: the data seen as a re-iterable of ``(X_chunk, w_chunk)`` blocks.

EM never needs all rows at once, only sums over them. A *chunk source* hides where the rows
come from (an in-memory array, a ``numpy.memmap``, pixels of many files decoded on demand)
and yields them in blocks no larger than the row count asked for. Everything that passes
over the data (summary, sampling, E-steps, prediction) goes through :meth:`ChunkSource.chunks`.
"""

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ._checks import check_chunk, check_data_array

#: Rows per block for simple passes (summary, sampling), which touch only X.
SIMPLE_PASS_ROWS = 65536


class ChunkSource:
    """Base class of chunk sources. Subclasses implement :meth:`chunks`."""

    n_features: int

    def chunks(self, max_rows: int) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        """Yield ``(X, w)`` blocks of at most ``max_rows`` rows; ``w`` may be None."""
        raise NotImplementedError

    def __iter__(self):
        return self.chunks(SIMPLE_PASS_ROWS)


class ArraySource(ChunkSource):
    """Rows of an (N, D) array or ``numpy.memmap``, with optional (N,) weights.

    The array is sliced, never copied whole, so a memory map stays on disk.
    """

    def __init__(self, X, sample_weight=None):
        if not isinstance(X, np.ndarray):
            X = np.asarray(X)
        check_data_array(X)
        if sample_weight is not None:
            sample_weight = np.asarray(sample_weight)
            if sample_weight.shape != (X.shape[0],):
                raise ValueError(
                    f"sample_weight must have shape ({X.shape[0]},) to match X; "
                    f"got {sample_weight.shape}."
                )
        self.X = X
        self.w = sample_weight
        self.n_features = X.shape[1]
        self.n_rows = X.shape[0]

    def chunks(self, max_rows):
        X, w = self.X, self.w
        for start in range(0, self.n_rows, max_rows):
            stop = start + max_rows
            yield X[start:stop], (None if w is None else w[start:stop])


class IterableSource(ChunkSource):
    """A user's re-iterable of ``(X_chunk, w_chunk)`` pairs (``w_chunk`` may be None).

    Each pass calls ``iter()`` on it again, so it must start over every time: a list, or an
    object whose ``__iter__`` reopens its files. Blocks larger than asked are split.
    """

    def __init__(self, iterable, n_features=None):
        if iter(iterable) is iterable:
            raise ValueError(
                "a chunk source must be re-iterable (EM passes over it many times); got a "
                "one-shot iterator or generator. Pass a list, or an object whose __iter__ "
                "starts again."
            )
        self.iterable = iterable
        self.n_features = n_features if n_features is not None else self._peek_features()

    def _peek_features(self):
        for X, _ in self._pairs():
            return X.shape[1]
        raise ValueError("the chunk source yielded no chunks; there is no data to fit.")

    def _pairs(self):
        for i, item in enumerate(self.iterable):
            if isinstance(item, np.ndarray) or not isinstance(item, tuple | list) or len(item) != 2:
                raise ValueError(
                    f"chunk {i} of the chunk source is not an (X_chunk, w_chunk) pair; use "
                    "(X_chunk, None) for unweighted rows."
                )
            X, w = check_chunk(
                item[0],
                item[1],
                getattr(self, "n_features", None),
                where=f"chunk {i}",
                validate_values=False,
            )
            yield X, w

    def chunks(self, max_rows):
        for X, w in self._pairs():
            for start in range(0, X.shape[0], max_rows):
                stop = start + max_rows
                yield X[start:stop], (None if w is None else w[start:stop])


@dataclass(frozen=True)
class DataSummary:
    """What one validating pass learns about the data.

    Attributes
    ----------
    n_rows, n_positive : int
        Rows, and rows with a positive weight.
    total_weight : float
        Sum of the weights (the number of rows when unweighted).
    mean : ndarray of shape (D,)
        Weighted mean.
    covariance : ndarray of shape (D, D)
        Weighted (population) covariance.
    n_unobserved : int
        Rows whose every value is missing (NaN); they are left out of everything else.
    has_missing : bool
        Whether any value is missing.
    max_weight : float
        The largest weight (1 for unweighted data).
    """

    n_rows: int
    n_positive: int
    total_weight: float
    mean: np.ndarray
    covariance: np.ndarray
    n_unobserved: int = 0
    has_missing: bool = False
    max_weight: float = 1.0

    @property
    def n_features(self):
        return self.mean.shape[0]

    @property
    def mean_weight(self):
        """Average weight of a row that counts; 1 for unweighted data."""
        return self.total_weight / self.n_positive


def summarize(source, *, allow_nan=False):
    """Validate every chunk (finite values, non-negative weights) and return a :class:`DataSummary`.

    Means and covariances are merged chunk by chunk in float64 with the parallel-variance
    rule (Chan, Golub & LeVeque 1979), so no chunk's rounding spoils another's. With
    ``allow_nan``, data holding NaN are summarised by :func:`summarize_missing` instead.
    """
    D = source.n_features
    if D == 0:
        raise ValueError(
            "X has no columns (shape (n, 0)): there are no features to fit; pass an array of "
            "shape (n_samples, n_features) with n_features >= 1."
        )
    n_rows = n_pos = 0
    W = 0.0
    w_max = 0.0
    mean = np.zeros(D)
    M2 = np.zeros((D, D))
    for i, (X, w) in enumerate(source.chunks(SIMPLE_PASS_ROWS)):
        X, w = check_chunk(
            X, w, D, where="X" if i == 0 else "X (a later chunk)", allow_nan=allow_nan
        )
        if allow_nan and X.dtype.kind == "f" and np.isnan(X).any():
            return summarize_missing(source)
        n_rows += X.shape[0]
        if X.shape[0] == 0:
            continue
        x = X.astype(np.float64, copy=False)
        if w is None:
            wc = float(X.shape[0])
            w_max = max(w_max, 1.0)
            n_pos += X.shape[0]
            m = x.mean(axis=0)
            xc = x - m
            C = xc.T @ xc
        else:
            w = w.astype(np.float64, copy=False)
            wc = float(w.sum())
            w_max = max(w_max, float(w.max()))
            n_pos += int(np.count_nonzero(w))
            if wc == 0.0:
                continue
            m = (w @ x) / wc
            xc = x - m
            C = (xc * w[:, None]).T @ xc
        delta = m - mean
        total = W + wc
        mean = mean + delta * (wc / total)
        M2 += C + np.outer(delta, delta) * (W * wc / total)
        W = total
    if n_rows == 0:
        raise ValueError("X is empty: there are no rows to fit.")
    if W <= 0.0:
        raise ValueError("every sample_weight is zero: there is nothing to fit.")
    cov = M2 / W
    cov = 0.5 * (cov + cov.T)
    return DataSummary(n_rows, n_pos, W, mean, cov, max_weight=w_max)


def weighted_sample(source, summary, size, rng):
    """Draw about ``size`` rows with probability proportional to their weight.

    Returns the distinct rows drawn, as float64, with their multiplicities as weights scaled
    to sum to the total weight. When the data have no more than ``size`` weighted rows, all of
    them are returned with their own weights: the "sample" is then the data, exactly.
    Rows are located by their global position in the cumulative weight, so the result does
    not depend on how the source is chunked.
    """
    D = summary.n_features
    if summary.n_positive <= size:
        xs, ws = [], []
        for X, w in source.chunks(SIMPLE_PASS_ROWS):
            if w is None:
                xs.append(np.asarray(X, dtype=np.float64))
                ws.append(np.ones(X.shape[0]))
            else:
                keep = w > 0
                xs.append(np.asarray(X[keep], dtype=np.float64))
                ws.append(np.asarray(w[keep], dtype=np.float64))
        return np.concatenate(xs).reshape(-1, D), np.concatenate(ws)
    positions = np.sort(rng.random(size) * summary.total_weight)
    rows, counts = [], []
    offset = 0.0
    j = 0
    last_row = None
    for X, w in source.chunks(SIMPLE_PASS_ROWS):
        n = X.shape[0]
        if j >= size:
            break
        if n == 0:
            continue
        cum = np.arange(1, n + 1, dtype=np.float64) if w is None else np.cumsum(w, dtype=np.float64)
        cum += offset
        positive = np.flatnonzero(np.asarray(w) > 0) if w is not None else [n - 1]
        if len(positive):
            last_row = np.asarray(X[positive[-1]], dtype=np.float64)
        end = int(np.searchsorted(positions, cum[-1], side="left"))
        if end > j:
            idx = np.searchsorted(cum, positions[j:end], side="right")
            uniq, cnt = np.unique(idx, return_counts=True)
            rows.append(np.asarray(X[uniq], dtype=np.float64))
            counts.append(cnt)
            j = end
        offset = cum[-1]
    if j < size:  # positions at the very end of the cumulative weight, lost to rounding
        rows.append(last_row[None, :])
        counts.append(np.array([size - j]))
    Xs = np.concatenate(rows).reshape(-1, D)
    ws = np.concatenate(counts).astype(np.float64) * (summary.total_weight / size)
    return Xs, ws


def summarize_missing(source):
    """:func:`summarize` of data holding NaN (missing values).

    The mean is each feature's weighted mean over the rows where it is observed. The
    covariance has those per-feature variances and the correlations of the mean-filled data,
    C_ij = Σ w o_i o_j (x_i - m_i)(x_j - m_j) / sqrt(W_i W_j) (o: observed, W_i = Σ w o_i):
    a diagonal rescaling of a Gram matrix, so positive semi-definite, unlike the
    pairwise-complete covariance. It only sets the scale of the data for regularisation,
    restarts and the prior; EM estimates the components' covariances exactly.
    """
    D = source.n_features
    n_rows = n_pos = n_unobserved = 0
    W = w_max = 0.0
    ref = None  # a rough centre (first chunk's means), against cancellation in the sums
    Wp, Sp, Qp = np.zeros((D, D)), np.zeros((D, D)), np.zeros((D, D))
    for i, (X, w) in enumerate(source.chunks(SIMPLE_PASS_ROWS)):
        X, w = check_chunk(X, w, D, where="X" if i == 0 else "X (a later chunk)", allow_nan=True)
        n_rows += X.shape[0]
        if X.shape[0] == 0:
            continue
        x = X.astype(np.float64, copy=False)
        obs = ~np.isnan(x)
        seen = obs.any(axis=1)
        n_unobserved += int(X.shape[0] - seen.sum())
        wv = np.ones(X.shape[0]) if w is None else w.astype(np.float64)
        wv = np.where(seen, wv, 0.0)
        w_max = max(w_max, float(wv.max()))
        n_pos += int(np.count_nonzero(wv))
        W += float(wv.sum())
        ones = obs.astype(np.float64)
        if ref is None:
            counts = wv @ ones
            ref = np.where(counts > 0, (wv @ np.where(obs, x, 0.0)) / np.maximum(counts, 1e-300), 0)
        y = np.where(obs, x - ref, 0.0)
        wy = y * wv[:, None]
        Wp += (ones * wv[:, None]).T @ ones
        Sp += wy.T @ ones
        Qp += wy.T @ y
    if n_rows == 0:
        raise ValueError("X is empty: there are no rows to fit.")
    if W <= 0.0:
        raise ValueError(
            "no row has both a positive weight and an observed (non-NaN) value: there is "
            "nothing to fit."
        )
    Wj = np.diag(Wp).copy()
    if (Wj <= 0).any():
        j = int(np.flatnonzero(Wj <= 0)[0])
        raise ValueError(
            f"feature {j} is missing (NaN) in every row of positive weight; drop that column."
        )
    d = np.diag(Sp) / Wj
    mean = ref + d
    num = Qp - d[None, :] * Sp - d[:, None] * Sp.T + np.outer(d, d) * Wp
    cov = num / np.sqrt(np.outer(Wj, Wj))
    cov = 0.5 * (cov + cov.T)
    return DataSummary(n_rows, n_pos, W, mean, cov, n_unobserved, True, w_max)


class ValidatedSource(ChunkSource):
    """Checks every block as it streams by (for data given to a fitted model)."""

    def __init__(self, source, n_features, *, allow_nan=False):
        self.source = source
        self.n_features = n_features
        self.n_rows = getattr(source, "n_rows", None)
        self.allow_nan = allow_nan

    def chunks(self, max_rows):
        for X, w in self.source.chunks(max_rows):
            yield check_chunk(X, w, self.n_features, allow_nan=self.allow_nan)
