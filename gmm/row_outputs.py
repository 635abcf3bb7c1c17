"""Per-row results of an E-step kernel over a source, block by block: log p(x), labels and
responsibilities written into caller-given outputs, the log-likelihood with the entropy of
the responsibilities (for the criteria), and the worst-fitted rows (where collapsed
components restart)."""

import numpy as np

from .estep import block_weights


def _dot(ll, w):
    return float(ll.sum(dtype=np.float64)) if w is None else float(np.dot(ll, w))


def iter_blocks(kernel, source):
    """``(rows, resp, log_prob)`` of every block of ``source``: the block's slice of rows,
    its responsibilities (K, n) and log p(x) (n,), both in the kernel's reused buffers."""
    i = 0
    for x, _ in source.chunks(kernel.rows):
        n = x.shape[0]
        L, _ = kernel.logits(x)
        ll = kernel.normalize(L)
        yield slice(i, i + n), L, ll
        i += n


def score_rows(kernel, source, out):
    """Write log p(x) of every row into ``out`` (N,)."""
    return _write_rows(kernel, source, out, kernel.normalize)


def predict_rows(kernel, source, out):
    """Write the index of the most likely component of every row into ``out`` (N,)."""
    return _write_rows(kernel, source, out, lambda L: np.argmax(L, axis=0))


def proba_rows(kernel, source, out):
    """Write the responsibilities of every row into ``out`` (N, K)."""

    def responsibilities(L):
        kernel.normalize(L)
        return L.T

    return _write_rows(kernel, source, out, responsibilities)


def _write_rows(kernel, source, out, value):
    """``value(L)`` of every block's logits L (K, n), written into ``out`` row by row."""
    i = 0
    for x, _ in source.chunks(kernel.rows):
        n = x.shape[0]
        L, _ = kernel.logits(x)
        out[i : i + n] = value(L)
        i += n
    return out


def loglik_and_entropy(kernel, source):
    """Σ w log p(x), Σ w, and Σ w H(r) with H the entropy of the responsibilities."""
    loglik = weight = entropy = 0.0
    for x, w in source.chunks(kernel.rows):
        if x.shape[0] == 0:
            continue
        w = block_weights(w, kernel.dtype)
        L, _ = kernel.logits(x)
        ll = kernel.normalize(L)
        loglik += _dot(ll, w)
        weight += x.shape[0] if w is None else float(w.sum(dtype=np.float64))
        with np.errstate(divide="ignore", invalid="ignore"):
            rlogr = np.where(L > 0, L * np.log(L), 0.0).sum(axis=0)
        entropy -= _dot(rlogr, w)
    return loglik, weight, entropy


def worst_rows(kernel, source, count):
    """The ``count`` distinct rows (of positive weight) with the lowest log-density, worst
    first; fewer if the data hold fewer distinct rows.

    Distinct, because components reset together must restart at different points: with
    repeated rows (pixels of one colour) the worst rows are often copies of one point.
    """
    best_vals = np.empty(0)
    best_rows = np.empty((0, source.n_features))
    for x, w in source.chunks(kernel.rows):
        n = x.shape[0]
        if n == 0:
            continue
        L, _ = kernel.logits(x)
        ll = kernel.normalize(L).astype(np.float64)
        if w is not None:
            ll[np.asarray(w) <= 0] = np.inf
        order = np.argsort(ll, kind="stable")
        order = order[np.isfinite(ll[order])]
        vals = np.concatenate([best_vals, ll[order]])
        rows = np.concatenate([best_rows, np.asarray(x[order], dtype=np.float64)])
        best_vals, best_rows = _first_distinct(vals, rows, count)
    return best_rows


def _first_distinct(vals, rows, count):
    """The ``count`` lowest values whose rows are all different, in increasing order."""
    order = np.argsort(vals, kind="stable")
    seen = set()
    keep = []
    for i in order:
        key = rows[i].tobytes()
        if key not in seen:
            seen.add(key)
            keep.append(i)
            if len(keep) == count:
                break
    keep = np.asarray(keep, dtype=np.intp)
    return vals[keep], rows[keep]
