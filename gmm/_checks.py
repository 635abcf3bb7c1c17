"""Validation helpers shared by the estimator and its functions.

Every message says what is wrong and what to change, because these errors reach users of
the command-line tool unchanged.
"""

import numbers

import numpy as np

COVARIANCE_TYPES = ("full", "tied", "diag", "tied_diag", "spherical")
INIT_METHODS = ("kmeans", "k-means++", "random", "random_from_data")


def check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}; got {value!r}.")
    return value


def check_int(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}.")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}; got {value}.")
    return int(value)


def check_real(name, value, minimum=0.0, *, strict=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a real number; got {value!r}.")
    value = float(value)
    if not np.isfinite(value) or value < minimum or (strict and value == minimum):
        op = ">" if strict else ">="
        raise ValueError(f"{name} must be a finite number {op} {minimum}; got {value}.")
    return value


def check_dtype(dtype):
    dt = np.dtype(dtype)
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"dtype must be float32 or float64; got {dt}.")
    return dt


def check_chunk(X, w, n_features=None, *, where="X", validate_values=True, allow_nan=False):
    """Validate one block of rows and its weights; return them as arrays (no copy).

    ``X`` may be any real array of shape (n, D); ``w`` None or shape (n,). With
    ``allow_nan``, NaN in X marks a missing value (infinity is still an error).
    """
    X = np.asarray(X)
    if X.ndim == 1 and n_features == 1:
        X = X[:, None]
    check_block_shape(X, n_features, where)
    if validate_values and X.dtype.kind == "f" and X.size and not np.isfinite(X).all():
        if not allow_nan:
            raise ValueError(f"{where} contains NaN or infinity; remove or impute those rows.")
        if np.isinf(X).any():
            raise ValueError(f"{where} contains infinity; remove those rows or use NaN.")
    if w is not None:
        w = check_block_weights(w, X.shape[0], where, validate_values=validate_values)
    return X, w


RESHAPE_HINT = " Reshape a single feature with X.reshape(-1, 1)."


def check_block_shape(X, n_features, where, *, values="real numbers", hint=RESHAPE_HINT):
    """Refuse a block ``X`` (an array) that is not 2-D, not numeric, or has other columns
    than ``n_features`` (None: any); ``values`` and ``hint`` complete the messages."""
    if X.ndim != 2:
        raise ValueError(
            f"{where} must be a 2-D array of shape (n_samples, n_features); got {X.ndim} "
            f"dimension(s).{hint}"
        )
    if X.dtype.kind not in "biuf":
        raise ValueError(f"{where} must hold {values}; got dtype {X.dtype}.")
    if n_features is not None and X.shape[1] != n_features:
        raise ValueError(
            f"{where} has {X.shape[1]} features but {n_features} were expected "
            "(every chunk, and data given to a fitted model, must have the same columns)."
        )


def check_data_array(X):
    """Refuse a whole data array ``X`` (numpy or dask) that is not 2-D or not numeric."""
    if X.ndim != 2:
        raise ValueError(
            f"X must be a 2-D array of shape (n_samples, n_features); got shape {X.shape}. "
            "Reshape a single feature with X.reshape(-1, 1)."
        )
    if X.dtype.kind not in "biuf":
        raise ValueError(f"X must hold real numbers; got dtype {X.dtype}.")


def check_block_weights(w, n_rows, where, *, validate_values=True):
    """The weights of a block of ``n_rows`` rows of ``where`` as an array (no copy);
    refused unless 1-D, numeric and, with ``validate_values``, finite and non-negative."""
    w = np.asarray(w)
    if w.ndim != 1 or w.shape[0] != n_rows:
        raise ValueError(
            f"sample_weight must have shape ({n_rows},) to match {where}; got {w.shape}."
        )
    if w.dtype.kind not in "biuf":
        raise ValueError(f"sample_weight must hold real numbers; got dtype {w.dtype}.")
    if validate_values and w.size and not np.isfinite(w).all():
        raise ValueError("sample_weight contains NaN or infinity.")
    if validate_values and w.size and (w < 0).any():
        raise ValueError("sample_weight must be non-negative; a zero weight removes a row.")
    return w


def check_random_state(random_state):
    """A ``numpy.random.Generator`` from None, an int seed, or a Generator (used as is)."""
    if isinstance(random_state, np.random.Generator):
        return random_state
    if random_state is None:
        return np.random.default_rng()
    if isinstance(random_state, int | np.integer) and not isinstance(random_state, bool):
        if random_state < 0:
            raise ValueError(
                f"random_state must be a non-negative int seed (or None, or a "
                f"numpy.random.Generator); got {random_state}."
            )
        return np.random.default_rng(random_state)
    raise ValueError(
        "random_state must be None, an int seed or a numpy.random.Generator; "
        f"got {type(random_state).__name__}."
    )
