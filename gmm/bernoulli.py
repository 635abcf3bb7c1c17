"""The :class:`BernoulliMixture` estimator: mixtures of independent Bernoulli variables
(latent class analysis; Bishop, PRML §9.3.3) fitted by EM over chunks of binary data.

A row x ∈ {0, 1}^D has density p(x) = Σ_k π_k Π_d μ_kd^x_d (1 - μ_kd)^(1 - x_d). The
log-density of every component at every row of a block is one matrix product,
``x @ (log μ - log(1 - μ))ᵀ + Σ_d log(1 - μ_kd)``, and the M-step needs only
``N_k = Σ w r_k`` and ``Σ w r_k x``, added up over blocks in float64 (so chunked equals
unchunked and integer weights equal repeated rows). A Beta(a, b) prior on every μ_kd gives
the MAP estimate ``μ = (Σ w r x + a - 1) / (N_k + a + b - 2)``, which for a, b > 1 is never
0 or 1, so no log-probability is ever -inf; the objective EM maximises is then the
log-posterior per unit of weight, which never decreases.
"""

import warnings

import numpy as np

from ._checks import (
    check_block_shape,
    check_block_weights,
    check_choice,
    check_int,
    check_random_state,
    check_real,
)
from .chunks import DataSummary, weighted_sample
from .estep import rows_for_budget
from .exceptions import ConvergenceWarning
from .init import kmeans_plusplus, lloyd, sample_size
from .sources import as_source

FORMAT = "gmm.BernoulliMixture/1"
BERNOULLI_INIT = ("kmeans", "random")
#: Rows of one simple validating pass.
PASS_ROWS = 65536


def _check_binary(X, w, n_features, where):
    """One block as float64 0/1 values, and its weights; every bad value is refused."""
    X = np.asarray(X)
    check_block_shape(X, n_features, where, values="0/1 values", hint="")
    if X.dtype.kind == "f" and X.size and np.isnan(X).any():
        raise ValueError(
            f"{where} contains NaN; a Bernoulli mixture needs every value 0 or 1: drop the "
            "rows with missing values or fill them."
        )
    Xf = X.astype(np.float64, copy=False)
    if X.dtype.kind != "b" and X.size and ((Xf != 0.0) & (Xf != 1.0)).any():
        bad = Xf[(Xf != 0.0) & (Xf != 1.0)][0]
        raise ValueError(
            f"{where} holds the value {bad:g}; a Bernoulli mixture needs every value 0 or 1: "
            "threshold the data first (e.g. X > 0.5)."
        )
    if w is not None:
        w = check_block_weights(w, X.shape[0], where).astype(np.float64, copy=False)
    return Xf, w


def _blocks(source, rows, n_features):
    for i, (X, w) in enumerate(source.chunks(rows)):
        yield _check_binary(X, w, n_features, "X" if i == 0 else "X (a later chunk)")


def _summarize(source):
    """Validate every block; rows, rows with weight, total weight and the mean of each bit."""
    D = source.n_features
    n_rows = n_pos = 0
    W = 0.0
    S = np.zeros(D)
    for X, w in _blocks(source, PASS_ROWS, D):
        n_rows += X.shape[0]
        if w is None:
            W += X.shape[0]
            n_pos += X.shape[0]
            S += X.sum(axis=0)
        else:
            W += float(w.sum())
            n_pos += int(np.count_nonzero(w))
            S += w @ X
    if n_rows == 0:
        raise ValueError("X is empty: there are no rows to fit.")
    if W <= 0.0:
        raise ValueError("every sample_weight is zero: there is nothing to fit.")
    # weighted_sample needs only the counts and the mean; the covariance is not used.
    return DataSummary(n_rows, n_pos, W, S / W, np.zeros((0, 0)))


def _log_tables(weights, means):
    """Coefficients of the block product: log μ - log(1 - μ) (K, D) and the constant (K,)."""
    log_p, log_q = np.log(means), np.log1p(-means)
    return log_p - log_q, np.log(weights) + log_q.sum(axis=1)


def _log_joint(X, tables):
    """log π_k + log p(x | μ_k) of every row of a block, shape (n, K)."""
    slope, const = tables
    return X @ slope.T + const


def _logsumexp_rows(L):
    """log Σ_k exp(L[:, k]) without overflow, and the responsibilities (rows sum to 1)."""
    top = L.max(axis=1, keepdims=True)
    R = np.exp(L - top)
    total = R.sum(axis=1, keepdims=True)
    R /= total
    return (top + np.log(total))[:, 0], R


def _estep(source, rows, weights, means):
    """Σ w r (K,), Σ w r x (K, D), Σ w log p(x) and Σ w over the whole source."""
    K, D = means.shape
    tables = _log_tables(weights, means)
    nk, sk = np.zeros(K), np.zeros((K, D))
    loglik = total = 0.0
    for X, w in _blocks(source, rows, D):
        if X.shape[0] == 0:
            continue
        ll, R = _logsumexp_rows(_log_joint(X, tables))
        if w is not None:
            R *= w[:, None]
            loglik += float(w @ ll)
            total += float(w.sum())
        else:
            loglik += float(ll.sum())
            total += X.shape[0]
        nk += R.sum(axis=0)
        sk += R.T @ X
    return nk, sk, loglik, total


def _mstep(nk, sk, a, b):
    """MAP means under Beta(a, b) and maximum-likelihood weights (floored above zero)."""
    tiny = 10 * np.finfo(np.float64).eps * max(1.0, float(nk.sum()))
    means = (sk + (a - 1.0)) / (nk[:, None] + (a + b - 2.0))
    # a = b = 1 is plain maximum likelihood: keep the logs finite all the same.
    np.clip(means, 1e-12, 1.0 - 1e-12, out=means)
    weights = (nk + tiny) / (nk + tiny).sum()
    return weights, means


def _log_prior(means, a, b):
    return float((a - 1.0) * np.log(means).sum() + (b - 1.0) * np.log1p(-means).sum())


class BernoulliMixture:
    """Mixture of multivariate Bernoulli distributions fitted by EM over chunks of 0/1 data.

    The API follows :class:`gmm.GaussianMixture` where it applies.

    Parameters
    ----------
    n_components : int, default 1
        Number of components K.
    tol : float, default 1e-4
        EM stops when the objective (mean log-posterior per unit of weight) changes by less.
    max_iter : int, default 100
        EM iterations per initialisation.
    n_init : int, default 1
        Initialisations; the best final objective is kept.
    init : {"kmeans", "random"}, default "kmeans"
        ``"kmeans"``: k-means++ and Lloyd on a weighted sample of the rows, then the mean of
        each cluster over all rows. ``"random"``: every μ_kd uniform in (0.25, 0.75), equal
        weights (Bishop §9.3.3).
    prior : tuple (a, b), default (2.0, 2.0)
        Beta(a, b) prior on every μ_kd, a, b >= 1; (1, 1) is maximum likelihood (the means
        are then only clipped away from 0 and 1), (2, 2) adds one pseudo-count of each
        value (Laplace smoothing).
    chunk_mib : float, default 16
        Working-memory budget of one E-step block, in MiB.
    random_state : None, int or numpy.random.Generator
    callback : callable, optional
        ``callback(iteration, objective)`` after every EM iteration.

    Attributes
    ----------
    weights_ : ndarray (K,)
    means_ : ndarray (K, D)
        μ_kd, the probability of a 1 in feature d under component k, strictly in (0, 1).
    converged_ : bool
    n_iter_ : int
    lower_bound_ : float
        The objective of the last E-step.
    history_ : ndarray
        The objective at every iteration of the best initialisation (non-decreasing).
    """

    def __init__(
        self,
        n_components=1,
        *,
        tol=1e-4,
        max_iter=100,
        n_init=1,
        init="kmeans",
        prior=(2.0, 2.0),
        chunk_mib=16,
        random_state=None,
        callback=None,
    ):
        self.n_components = n_components
        self.tol = tol
        self.max_iter = max_iter
        self.n_init = n_init
        self.init = init
        self.prior = prior
        self.chunk_mib = chunk_mib
        self.random_state = random_state
        self.callback = callback

    def _check_options(self):
        check_int("n_components", self.n_components, 1)
        check_real("tol", self.tol, 0.0)
        check_int("max_iter", self.max_iter, 1)
        check_int("n_init", self.n_init, 1)
        check_choice("init", self.init, BERNOULLI_INIT)
        check_real("chunk_mib", self.chunk_mib, 0.0, strict=True)
        if self.callback is not None and not callable(self.callback):
            raise ValueError("callback must be callable as callback(iteration, objective).")
        try:
            a, b = (float(v) for v in self.prior)
        except (TypeError, ValueError):
            raise ValueError(
                f"prior must be a pair (a, b) of Beta parameters; got {self.prior!r}."
            ) from None
        if not (np.isfinite(a) and np.isfinite(b) and a >= 1.0 and b >= 1.0):
            raise ValueError(
                f"prior (a, b) must be finite and >= 1 (Beta(1, 1) is maximum likelihood); "
                f"got ({a:g}, {b:g})."
            )
        return a, b

    def _rows(self, D):
        return rows_for_budget(self.chunk_mib, 8 * (D + 3 * self.n_components))

    def _check_fitted(self):
        if not hasattr(self, "means_"):
            raise ValueError("this BernoulliMixture is not fitted yet; call fit(X) first.")

    # -- fitting ---------------------------------------------------------------------

    def fit(self, X, sample_weight=None):
        """Fit the mixture by EM.

        Parameters
        ----------
        X : array-like (N, D) of 0/1 (bool, int or float), or chunk source
        sample_weight : array-like (N,), optional
            Non-negative weights; integer weights act as repeated rows.

        Returns
        -------
        self
        """
        a, b = self._check_options()
        source = as_source(X, sample_weight)
        summary = _summarize(source)
        rng = check_random_state(self.random_state)
        best = None
        for _ in range(self.n_init):
            weights, means = self._initial(source, summary, rng, a, b)
            run = self._run_em(source, weights, means, summary.total_weight, a, b)
            if best is None or run["history"][-1] > best["history"][-1]:
                best = run
        self.weights_, self.means_ = best["weights"], best["means"]
        self.history_ = np.array(best["history"])
        self.lower_bound_ = float(self.history_[-1])
        self.n_iter_ = len(best["history"])
        self.converged_ = best["converged"]
        self.n_features_in_ = summary.n_features
        if not self.converged_:
            warnings.warn(
                f"EM did not converge in max_iter={self.max_iter} iterations; raise max_iter "
                "or tol.",
                ConvergenceWarning,
                stacklevel=2,
            )
        return self

    def fit_predict(self, X, sample_weight=None):
        return self.fit(X, sample_weight).predict(X)

    def _initial(self, source, summary, rng, a, b):
        K, D = self.n_components, summary.n_features
        if self.init == "random":
            means = rng.uniform(0.25, 0.75, size=(K, D))
            return np.full(K, 1.0 / K), means
        Xs, ws = weighted_sample(source, summary, sample_size(K), rng)
        centres, _ = kmeans_plusplus(Xs, ws, K, rng)
        centres = lloyd(Xs, ws, centres)
        # Hard assignment of every row to its nearest centre, then one M-step.
        rows = self._rows(D)
        nk, sk = np.zeros(K), np.zeros((K, D))
        c2 = (centres**2).sum(axis=1)
        for X, w in _blocks(source, rows, D):
            labels = np.argmin(c2 - 2.0 * (X @ centres.T), axis=1)
            R = np.zeros((X.shape[0], K))
            R[np.arange(X.shape[0]), labels] = 1.0 if w is None else w
            nk += R.sum(axis=0)
            sk += R.T @ X
        return _mstep(nk, sk, max(a, 2.0), max(b, 2.0))

    def _run_em(self, source, weights, means, total_weight, a, b):
        rows = self._rows(means.shape[1])
        history, converged = [], False
        previous = None
        for iteration in range(1, self.max_iter + 1):
            nk, sk, loglik, total = _estep(source, rows, weights, means)
            value = (loglik + _log_prior(means, a, b)) / total
            if previous is not None and value < previous[0]:
                # Only rounding can lower it: keep the better parameters and stop.
                weights, means = previous[1]
                converged = previous[0] - value < max(self.tol, 1e-12 * (1.0 + abs(value)))
                break
            history.append(value)
            if self.callback is not None:
                self.callback(iteration, value)
            if previous is not None and value - previous[0] < self.tol:
                converged = True
                break
            previous = (value, (weights, means))
            weights, means = _mstep(nk, sk, a, b)
        return {"weights": weights, "means": means, "history": history, "converged": converged}

    # -- prediction ------------------------------------------------------------------

    def _rows_out(self, X, fn, shape):
        self._check_fitted()
        D = self.means_.shape[1]
        source = as_source(X)
        tables = _log_tables(self.weights_, self.means_)
        parts = [fn(_log_joint(x, tables)) for x, _ in _blocks(source, self._rows(D), D)]
        return np.concatenate(parts) if parts else np.empty((0, *shape))

    def predict_proba(self, X):
        """Responsibilities p(k | x), shape (N, K); every row sums to 1."""
        return self._rows_out(X, lambda L: _logsumexp_rows(L)[1], (self.n_components,))

    def predict(self, X):
        """The most likely component of every row."""
        return self._rows_out(X, lambda L: np.argmax(L, axis=1), ())

    def score_samples(self, X):
        """log p(x) of every row, shape (N,)."""
        return self._rows_out(X, lambda L: _logsumexp_rows(L)[0], ())

    def _loglik(self, X, sample_weight):
        self._check_fitted()
        source = as_source(X, sample_weight)
        _, _, loglik, total = _estep(
            source, self._rows(self.means_.shape[1]), self.weights_, self.means_
        )
        if total <= 0:
            raise ValueError("X has no rows (or only zero weights) to score.")
        return loglik, total

    def score(self, X, sample_weight=None):
        """Weighted mean log-likelihood per sample."""
        loglik, total = self._loglik(X, sample_weight)
        return loglik / total

    def n_parameters(self):
        """Free parameters: K·D probabilities and K - 1 weights."""
        self._check_fitted()
        K, D = self.means_.shape
        return K * D + K - 1

    def bic(self, X, sample_weight=None):
        """-2 log L + p log N (N: total weight); lower is better."""
        loglik, total = self._loglik(X, sample_weight)
        return -2.0 * loglik + self.n_parameters() * np.log(total)

    def aic(self, X, sample_weight=None):
        """-2 log L + 2 p; lower is better."""
        loglik, _ = self._loglik(X, sample_weight)
        return -2.0 * loglik + 2.0 * self.n_parameters()

    def sample(self, n_samples=1, random_state=None):
        """Draw ``n_samples`` rows (uint8 0/1) and the component each came from."""
        self._check_fitted()
        n_samples = check_int("n_samples", n_samples, 0)
        rng = check_random_state(random_state)
        K = self.n_components
        labels = np.repeat(np.arange(K), rng.multinomial(n_samples, self.weights_))
        X = (rng.random((n_samples, self.means_.shape[1])) < self.means_[labels]).astype(np.uint8)
        return X, labels

    # -- persistence -----------------------------------------------------------------

    def to_dict(self):
        """The fitted parameters and options as plain JSON-able values (exact round trip)."""
        self._check_fitted()
        a, b = self._check_options()
        return {
            "format": FORMAT,
            "n_components": int(self.n_components),
            "n_features": int(self.means_.shape[1]),
            "weights": self.weights_.tolist(),
            "means": self.means_.tolist(),
            "converged": bool(self.converged_),
            "n_iter": int(self.n_iter_),
            "lower_bound": float(self.lower_bound_),
            "history": [float(v) for v in self.history_],
            "options": {
                "tol": float(self.tol),
                "max_iter": int(self.max_iter),
                "n_init": int(self.n_init),
                "init": self.init,
                "prior": [a, b],
                "chunk_mib": float(self.chunk_mib),
            },
        }

    @classmethod
    def from_dict(cls, data):
        """Rebuild a fitted model from :meth:`to_dict` output; raises ValueError if malformed."""
        try:
            if data.get("format") != FORMAT:
                raise ValueError(f"not a {FORMAT} model (format={data.get('format')!r})")
            opts = data.get("options", {})
            model = cls(
                int(data["n_components"]),
                tol=opts.get("tol", 1e-4),
                max_iter=opts.get("max_iter", 100),
                n_init=opts.get("n_init", 1),
                init=opts.get("init", "kmeans"),
                prior=tuple(opts.get("prior", (2.0, 2.0))),
                chunk_mib=opts.get("chunk_mib", 16),
            )
            model._check_options()
            K, D = model.n_components, int(data["n_features"])
            weights = np.array(data["weights"], dtype=np.float64)
            means = np.array(data["means"], dtype=np.float64)
            if weights.shape != (K,) or means.shape != (K, D):
                raise ValueError("parameter shapes do not match n_components and n_features")
            if not (np.isfinite(weights).all() and np.isfinite(means).all()):
                raise ValueError("parameters must be finite")
            if (weights < 0).any() or not np.isclose(weights.sum(), 1.0, atol=1e-6):
                raise ValueError("weights must be non-negative and sum to 1")
            if ((means <= 0) | (means >= 1)).any():
                raise ValueError("means must lie strictly between 0 and 1")
            model.weights_, model.means_ = weights, means
            model.converged_ = bool(data.get("converged", True))
            model.n_iter_ = int(data.get("n_iter", 0))
            model.history_ = np.array(data.get("history", []), dtype=np.float64)
            model.lower_bound_ = float(data.get("lower_bound", np.nan))
            model.n_features_in_ = D
        except (KeyError, TypeError, AttributeError) as err:
            raise ValueError(f"malformed model parameters: missing or invalid {err}") from None
        except ValueError as err:
            raise ValueError(f"malformed model parameters: {err}") from None
        return model
