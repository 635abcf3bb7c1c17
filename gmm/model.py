"""The :class:`GaussianMixture` estimator: it validates, wires the private functions of the
other modules together, and holds the fitted attributes."""

import dataclasses
import warnings

import numpy as np

from . import covariance as cov
from . import online, persist
from ._blas import single_threaded
from ._checks import (
    COVARIANCE_TYPES,
    INIT_METHODS,
    check_choice,
    check_dtype,
    check_int,
    check_random_state,
    check_real,
)
from .chunks import ValidatedSource, summarize
from .em import FitContext, UserInit, fit_mixture
from .estep import block_rows
from .exceptions import ConvergenceWarning, UnobservedRowsWarning
from .fit_checks import check_fallback_covariance, check_user_init
from .missing import MarginalMixture, impute_rows, iter_blocks_missing, rows_with_missing
from .mstep import Params, data_scale
from .prediction import draw_samples, fitted_kernel, rows_out, weighted_loglik
from .prior import resolve_prior
from .rescale import feature_scale, scale_weights
from .row_outputs import iter_blocks, predict_rows, proba_rows, score_rows
from .sources import as_source
from .stats import FeatureMap

MISSING = ("marginalize", "error")


class GaussianMixture:
    """Gaussian mixture fitted by EM over chunks of the data.

    The names follow scikit-learn's ``GaussianMixture``; in addition ``fit`` takes sample
    weights and chunk sources, a conjugate prior gives MAP estimates, and collapsing
    components are reset instead of raising.

    Parameters
    ----------
    n_components : int, default 1
        Number of Gaussians K.
    covariance_type : {"full", "tied", "diag", "tied_diag", "spherical"}, default "full"
        Structure of the covariances: one full matrix each, one shared full matrix, one
        diagonal each, one shared diagonal, or one variance each.
    tol : float, default 1e-3
        EM stops when the mean log-likelihood per sample (log-posterior with a prior) changes
        by less than this.
    reg_covar : float, default 1e-6
        Added to the diagonal of every covariance.
    max_iter : int, default 100
        EM iterations per initialisation.
    n_init : int, default 1
        Initialisations; the best fit is kept.
    init : {"kmeans", "k-means++", "random", "random_from_data"}, default "kmeans"
        How the first parameters are found.
    weights_init, means_init, precisions_init : array-like, optional
        User-given first parameters, with scikit-learn's shapes (``tied_diag``: (D,)).
    prior : None, "default" or dict, optional
        Conjugate prior for MAP estimation; see :func:`gmm.prior.resolve_prior`.
    chunk_mib : float, default 64
        Working-memory budget of one E-step block, in MiB.
    dtype : float32 or float64, default float32
        Precision of the per-row work; sums over rows are always float64.
    random_state : None, int or numpy.random.Generator
        None gives a different result each run; an int, the same bytes each run.
    callback : callable, optional
        ``callback(iteration, objective)`` after every EM iteration. A callback with a
        keyword parameter ``params`` is called as ``callback(iteration, objective,
        params=p)``, ``p`` a copy of the parameters that objective was computed for
        (``p.weights``, ``p.means``, ``p.covariances`` in the covariance type's layout): to
        watch EM move (PRML Fig. 9.8).
    warm_start : bool, default False
        Start ``fit`` from the parameters of the previous fit (when it had the same shape):
        e.g. fit on a sample, then polish with a few iterations over all the data.
    missing : {"marginalize", "error"}, default "marginalize"
        What NaN in X means. "marginalize": a missing value (missing at random). Each row is
        scored by its marginal over its observed features, and EM takes the conditional
        expectation of the missing ones (the exact EM of Ghahramani & Jordan 1994), for
        every covariance type; ``predict``, ``predict_proba``, ``score_samples`` and
        ``score`` work on such rows, and :meth:`impute` fills them in. Data without NaN give
        exactly the fit they gave before this option existed. "error": NaN is an error.
    online_alpha : float in (0.5, 1], default 0.7
        Online EM (:meth:`partial_fit`, ``fit(online=True)``): the step size of the t-th
        chunk is (t + 2)^-online_alpha (see :mod:`gmm.online`).
    online_batch_rows : int, default 65536
        ``fit(online=True)``: rows per stepwise update.

    Attributes
    ----------
    weights_ : ndarray (K,)
    means_ : ndarray (K, D)
    covariances_, precisions_cholesky_ : ndarray
        Shapes by covariance type, see :mod:`gmm.covariance`.
    converged_ : bool
    n_iter_ : int
        EM iterations of the best initialisation.
    lower_bound_ : float
        Objective of the last E-step (mean log-likelihood, or log-posterior, per sample).
    history_ : ndarray
        The objective at every iteration of the best initialisation.
    n_resets_ : int
        Collapsed components that were reset.
    reset_iterations_ : list of int
        Iterations after which a reset happened (the objective may drop once after each).
    n_unobserved_ : int
        Rows of the fitted data whose every value is NaN: they carry no information and
        were left out (an :class:`UnobservedRowsWarning` says so); they predict the most
        likely component a priori.
    """

    def __init__(
        self,
        n_components=1,
        *,
        covariance_type="full",
        tol=1e-3,
        reg_covar=1e-6,
        max_iter=100,
        n_init=1,
        init="kmeans",
        weights_init=None,
        means_init=None,
        precisions_init=None,
        prior=None,
        chunk_mib=64,
        dtype=np.float32,
        random_state=None,
        callback=None,
        warm_start=False,
        missing="marginalize",
        online_alpha=0.7,
        online_batch_rows=65536,
    ):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init = init
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init
        self.prior = prior
        self.chunk_mib = chunk_mib
        self.dtype = dtype
        self.random_state = random_state
        self.callback = callback
        self.warm_start = warm_start
        self.missing = missing
        self.online_alpha = online_alpha
        self.online_batch_rows = online_batch_rows

    # -- validation ------------------------------------------------------------------

    def _check_options(self):
        check_int("n_components", self.n_components, 1)
        check_choice("covariance_type", self.covariance_type, COVARIANCE_TYPES)
        check_real("tol", self.tol, 0.0)
        check_real("reg_covar", self.reg_covar, 0.0)
        check_int("max_iter", self.max_iter, 1)
        check_int("n_init", self.n_init, 1)
        check_choice("init", self.init, INIT_METHODS)
        check_choice("missing", self.missing, MISSING)
        check_real("chunk_mib", self.chunk_mib, 0.0, strict=True)
        if self.callback is not None and not callable(self.callback):
            raise ValueError("callback must be callable as callback(iteration, objective).")
        return check_dtype(self.dtype)

    def _check_user_init(self, D):
        inits = (self.weights_init, self.means_init, self.precisions_init)
        return check_user_init(self.n_components, D, self.covariance_type, *inits)

    def _check_fallback_covariance(self, summary):
        check_fallback_covariance(self.covariance_type, self.reg_covar, summary)

    def _warm(self, D):
        """Whether this fit starts from the parameters of the previous one."""
        fitted = hasattr(self, "means_")
        return bool(self.warm_start) and fitted and self.means_.shape == (self.n_components, D)

    def _warm_init(self, D):
        return UserInit(
            np.array(self.weights_, dtype=np.float64),
            np.array(self.means_, dtype=np.float64),
            np.array(self.precisions_cholesky_, dtype=np.float64),
            np.array(self.covariances_, dtype=np.float64),
        )

    def _check_fitted(self):
        if not hasattr(self, "means_"):
            raise ValueError("this GaussianMixture is not fitted yet; call fit(X) first.")

    # -- fitting ---------------------------------------------------------------------

    @single_threaded
    def fit(self, X, sample_weight=None, *, online=False):
        """Fit the mixture by EM.

        Parameters
        ----------
        X : array-like (N, D), numpy.memmap, or chunk source
            A chunk source is a re-iterable of ``(X_chunk, w_chunk)`` pairs; with
            ``online=True`` a one-shot iterator of such pairs (a stream) is accepted too.
        sample_weight : array-like (N,), optional
            Non-negative weights; integer weights act as repeated rows, zero removes a row.
        online : bool, default False
            One pass of online (stepwise) EM over the data, ``online_batch_rows`` rows per
            update (see :meth:`partial_fit`), instead of batch EM's passes until convergence.

        Returns
        -------
        self

        Raises
        ------
        ValueError
            For invalid options or data: infinity (or NaN with ``missing="error"``), wrong
            shape, negative weights, no rows or no weight, a feature never observed.
        """
        if online:
            return self._fit_online(X, sample_weight)
        dtype = self._check_options()
        rng = check_random_state(self.random_state)
        source = as_source(X, sample_weight)
        summary = summarize(source, allow_nan=self.missing == "marginalize")
        # Weights are relative: extreme ones (all 1e-100, or 1e100) are brought near 1 by a
        # power of two, else float32 would flush them to 0 or infinity.
        source, w_exp = scale_weights(source, summary.max_weight)
        if w_exp:
            summary = dataclasses.replace(
                summary,
                total_weight=float(np.ldexp(summary.total_weight, w_exp)),
                max_weight=float(np.ldexp(summary.max_weight, w_exp)),
            )
        D = summary.n_features
        K = self.n_components
        if self.reg_covar == 0.0 and self.prior is None:
            if np.linalg.eigvalsh(summary.covariance)[0] <= 0.0:
                raise ValueError(
                    "the data's covariance is singular (a constant or collinear column), so "
                    "the likelihood is unbounded with reg_covar=0; set reg_covar > 0."
                )
        self._check_fallback_covariance(summary)
        prior = resolve_prior(self.prior, self.covariance_type, K, summary.mean, summary.covariance)
        fmap = FeatureMap(cov.STATS_KIND[self.covariance_type], D)
        ctx = FitContext(
            n_components=K,
            covariance_type=self.covariance_type,
            tol=float(self.tol),
            max_iter=int(self.max_iter),
            reg_covar=float(self.reg_covar),
            prior=prior,
            init=self.init,
            user_init=self._warm_init(D) if self._warm(D) else self._check_user_init(D),
            dtype=dtype,
            rows=block_rows(K, fmap, dtype, self.chunk_mib),
            shift=summary.mean,
            scale=data_scale(summary, float(self.reg_covar), K, dtype=dtype),
            missing=summary.has_missing,
            feature_scale=feature_scale(np.diag(summary.covariance)),
        )
        result = fit_mixture(source, summary, ctx, self.n_init, rng, self.callback)
        self._set_params(result.params)
        self._online = None  # a later partial_fit continues from these parameters
        self.converged_ = result.converged
        self.n_iter_ = result.n_iter
        self.history_ = np.array(result.history)
        self.lower_bound_ = result.lower_bound
        self.n_resets_ = result.n_resets
        self.reset_iterations_ = list(result.reset_iterations)
        self.prior_ = prior
        self.n_features_in_ = D
        self.n_unobserved_ = summary.n_unobserved
        if summary.n_unobserved:
            warnings.warn(
                f"{summary.n_unobserved} row(s) of X hold no observed value (all NaN); they "
                "carry no information and were left out of the fit.",
                UnobservedRowsWarning,
                stacklevel=3,
            )
        if not self.converged_ and result.stop == "max_iter":
            warnings.warn(
                f"EM did not converge in max_iter={self.max_iter} iterations (last change of "
                "the objective above tol); raise max_iter or tol, or check the data's scale.",
                ConvergenceWarning,
                stacklevel=2,
            )
        return self

    def _fit_online(self, X, sample_weight):
        self._check_options()
        check_int("online_batch_rows", self.online_batch_rows, 1)
        self._online = None
        for x, w in online.one_pass(X, sample_weight, int(self.online_batch_rows)):
            self._partial_fit(x, w, continue_fitted=False)
        if getattr(self, "_online", None) is None:
            raise ValueError("X is empty: there are no rows to fit.")
        return self

    @single_threaded
    def partial_fit(self, X, sample_weight=None):
        """One step of online (stepwise) EM from the chunk ``X``.

        Running sufficient statistics s̄ are updated as s̄ ← (1 - η) s̄ + η s(X) with
        η = (t + 2)^-online_alpha for the t-th chunk, then the parameters are their M-step
        (Cappé & Moulines 2009; Liang & Klein 2009). The first call initialises from its
        chunk (``init``, ``random_state``), or continues from the fitted parameters when the
        model was fitted before; a chunk should hold many more rows than components.
        ``n_init`` and ``max_iter`` do not apply (one initialisation, one step per chunk).
        ``history_`` holds each chunk's mean log-likelihood before its update, and
        ``converged_`` says whether the last two differed by less than ``tol``.

        Returns
        -------
        self
        """
        self._check_options()
        fitted = hasattr(self, "means_") and getattr(self, "_online", None) is None
        return self._partial_fit(X, sample_weight, continue_fitted=fitted)

    def _partial_fit(self, X, sample_weight, *, continue_fitted):
        dtype = self._check_options()
        return online.partial_fit(self, X, sample_weight, dtype, continue_fitted=continue_fitted)

    def fit_predict(self, X, sample_weight=None):
        """Fit, then return the most likely component of every row."""
        return self.fit(X, sample_weight).predict(X)

    def _set_params(self, params):
        self.weights_ = params.weights
        self.means_ = params.means
        self.covariances_ = params.covariances
        self.precisions_cholesky_ = params.precisions_cholesky

    @property
    def params_(self):
        self._check_fitted()
        return Params(self.weights_, self.means_, self.covariances_, self.precisions_cholesky_)

    @property
    def precisions_(self):
        """The precision matrices (inverse covariances), in the covariance type's layout."""
        self._check_fitted()
        U = self.precisions_cholesky_
        if self.covariance_type == "full":
            return U @ U.transpose(0, 2, 1)
        if self.covariance_type == "tied":
            return U @ U.T
        return U**2

    # -- prediction ------------------------------------------------------------------

    def kernel(self, n_rows_hint=None, *, dtype=None):
        """The E-step kernel of the fitted parameters (gmm's internal block machinery;
        outside gmm use :meth:`iter_blocks`)."""
        self._check_fitted()
        dt = check_dtype(self.dtype if dtype is None else dtype)
        return fitted_kernel(self.params_, self.covariance_type, dt, self.chunk_mib)

    def _source(self, X, sample_weight=None):
        self._check_fitted()
        return ValidatedSource(
            as_source(X, sample_weight), self.means_.shape[1], allow_nan=self._allow_nan()
        )

    def _allow_nan(self):
        return getattr(self, "missing", "marginalize") == "marginalize"

    def _with_missing(self, fn, what):
        """``fn`` (a per-row function of gmm.estep) made to handle rows holding NaN."""
        if not self._allow_nan():
            return fn
        return rows_with_missing(fn, MarginalMixture(self.params_, self.covariance_type), what)

    @single_threaded
    def predict(self, X):
        """Index of the most likely component of every row, shape (N,)."""
        source = self._source(X)
        fn = self._with_missing(predict_rows, "predict")
        return rows_out(source, fn, self.kernel(), (), np.intp)

    @single_threaded
    def predict_proba(self, X):
        """Responsibilities, shape (N, K), in the model's dtype."""
        source = self._source(X)
        kernel = self.kernel()
        fn = self._with_missing(proba_rows, "proba")
        return rows_out(source, fn, kernel, (self.n_components,), kernel.dtype)

    @single_threaded
    def score_samples(self, X):
        """log p(x) of every row, shape (N,); for a row with NaN, log p(x_o) of its observed
        values (0 for a row with none)."""
        source = self._source(X)
        fn = self._with_missing(score_rows, "score")
        return rows_out(source, fn, self.kernel(), (), np.float64)

    @single_threaded
    def impute(self, X):
        """X with every NaN replaced by its conditional mean under the mixture.

        For a row with observed values x_o, a missing block x_m becomes
        Σ_k p(k | x_o) E[x_m | x_o, k], with E[x_m | x_o, k] = μ_km + Σ_kmo Σ_koo⁻¹ (x_o − μ_ko);
        a row with nothing observed becomes the mixture's mean. Observed values are kept.

        Returns
        -------
        ndarray (N, D) float64
        """
        self._check_fitted()
        source = ValidatedSource(as_source(X), self.means_.shape[1], allow_nan=True)
        mixture = MarginalMixture(self.params_, self.covariance_type)
        return rows_out(
            source, impute_rows(mixture), self.kernel(), (self.means_.shape[1],), np.float64
        )

    def iter_blocks(self, X):
        """Responsibilities and log p(x) of the rows of ``X`` by E-step blocks (``chunk_mib``):
        :meth:`predict_proba` and :meth:`score_samples` in one pass, for callers that reduce
        or write each block as it comes (no (N, K) array; BLAS keeps the caller's threads).

        Parameters
        ----------
        X : array-like (N, D) or chunk source
            Rows to evaluate; validated block by block.

        Yields
        ------
        rows : slice
            The rows of ``X`` in this block.
        resp : ndarray (K, n)
            Their responsibilities, components along the *first* axis, in the model's dtype:
            a buffer that the next block overwrites (use or copy it before advancing).
        log_prob : ndarray (n,)
            log p(x) of the rows, likewise a reused buffer.
        """
        source = self._source(X)
        if not self._allow_nan():
            return iter_blocks(self.kernel(), source)
        mixture = MarginalMixture(self.params_, self.covariance_type)
        return iter_blocks_missing(self.kernel(), mixture, source)

    @single_threaded
    def _loglik(self, X, sample_weight):
        source = self._source(X, sample_weight)
        mixture = None
        if self._allow_nan():
            mixture = MarginalMixture(self.params_, self.covariance_type)
        loglik, weight, entropy = weighted_loglik(self.kernel(), mixture, source, sample_weight)
        if weight <= 0:
            raise ValueError("X has no rows (or only zero weights) to score.")
        return loglik, weight, entropy

    def score(self, X, sample_weight=None):
        """Weighted mean log-likelihood per sample."""
        loglik, weight, _ = self._loglik(X, sample_weight)
        return loglik / weight

    def n_parameters(self):
        """Free parameters of the model (weights, means, covariances)."""
        self._check_fitted()
        return cov.n_parameters(self.covariance_type, self.n_components, self.means_.shape[1])

    def bic(self, X, sample_weight=None):
        """Bayesian information criterion -2 log L + p log N (N: total weight); lower is better."""
        loglik, weight, _ = self._loglik(X, sample_weight)
        return -2.0 * loglik + self.n_parameters() * np.log(weight)

    def aic(self, X, sample_weight=None):
        """Akaike information criterion, -2 log L + 2 p; lower is better."""
        loglik, _, _ = self._loglik(X, sample_weight)
        return -2.0 * loglik + 2.0 * self.n_parameters()

    def icl(self, X, sample_weight=None):
        """Integrated completed likelihood: BIC + 2 × entropy of the responsibilities."""
        loglik, weight, entropy = self._loglik(X, sample_weight)
        return -2.0 * loglik + self.n_parameters() * np.log(weight) + 2.0 * entropy

    @single_threaded
    def sample(self, n_samples=1, random_state=None):
        """Draw ``n_samples`` rows from the fitted mixture.

        Returns
        -------
        X : ndarray (n_samples, D)
        labels : ndarray (n_samples,)
            The component each row was drawn from.
        """
        self._check_fitted()
        n_samples = check_int("n_samples", n_samples, 0)
        rng = check_random_state(random_state)
        return draw_samples(self.params_, self.covariance_type, n_samples, rng)

    # -- persistence -----------------------------------------------------------------

    def to_dict(self):
        """The fitted parameters and options as plain JSON-able values (exact round trip)."""
        self._check_fitted()
        return persist.model_to_dict(self)

    @classmethod
    def from_dict(cls, data):
        """Rebuild a fitted model from :meth:`to_dict` output.

        Every field is checked (types, shapes, finite values of a usable magnitude, weights
        that sum to 1, positive definite covariances whose inverses the precisions are);
        raises ValueError naming the field that is wrong.
        """
        return persist.model_from_dict(cls, data)
