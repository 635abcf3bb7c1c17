"""What the figures show, computed with numpy only (no matplotlib): the argument checks
of the density figure and its panels' data (:func:`density_panels`), and the specs of a
segmentation's figures (:func:`loglik_spec`, :func:`density_spec`, :func:`criterion_spec`).

A spec is a dict of plain values and small arrays (histograms, not rows of pixels): the
figure is drawn from it by :func:`segment.outputs.plots.render.render`, in this process
or in the plot worker, with the same bytes either way."""

import itertools
import math
import numbers

import numpy as np

from ...color import default_component_colors
from .histograms import density_image, feature_edges, pair_histogram

#: Features drawn in the density figure (pair panels of the first three, and marginals).
MAX_SHOWN_FEATURES = 3


def float_array(name, value, ndim, shape_hint):
    """``value`` as a new float64 array with ``ndim`` dimensions, all finite."""
    try:
        arr = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an array of numbers of shape {shape_hint}.") from None
    if arr.ndim != ndim:
        raise ValueError(f"{name} must have shape {shape_hint}; got an array of shape {arr.shape}.")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinity; remove or fill those values.")
    return arr


def check_rgb(name, value, n, what):
    if value is None:
        return None
    rgb = float_array(name, value, 2, f"({n}, 3)")
    if rgb.shape != (n, 3):
        raise ValueError(
            f"{name} must have shape ({n}, 3), one RGB colour per {what}; got {rgb.shape}."
        )
    if rgb.min() < 0.0 or rgb.max() > 1.0:
        raise ValueError(f"{name} must be RGB values in [0, 1]; divide 8-bit colours by 255.")
    return rgb


def check_title(title):
    if title is not None and not isinstance(title, str):
        raise ValueError(f"title must be a string or None; got {type(title).__name__}.")
    return title


def _check_density_inputs(X, weights, means, covariances, sample_weight):
    X = float_array("X", X, 2, "(n_samples, n_features)")
    n, D = X.shape
    if n == 0 or D == 0:
        raise ValueError(f"X must have at least one row and one feature; got shape {X.shape}.")
    w = float_array("weights", weights, 1, "(n_components,)")
    K = w.size
    if K == 0:
        raise ValueError("weights is empty; the mixture needs at least one component.")
    if (w < 0).any() or not np.isclose(w.sum(), 1.0, atol=1e-3):
        raise ValueError(f"weights must be non-negative and sum to 1; they sum to {w.sum():.6g}.")
    w = w / w.sum()
    mu = float_array("means", means, 2, f"({K}, {D})")
    if mu.shape != (K, D):
        raise ValueError(
            f"means must have shape ({K}, {D}) (n_components, n_features) to match weights "
            f"and X; got {mu.shape}."
        )
    cov = float_array("covariances", covariances, 3, f"({K}, {D}, {D})")
    if cov.shape != (K, D, D):
        raise ValueError(
            f"covariances must be full matrices of shape ({K}, {D}, {D}); got {cov.shape}. "
            "Convert diag, tied or spherical covariances to full matrices first "
            "(gmm.full_covariances)."
        )
    scale = np.abs(cov).max()
    if not np.allclose(cov, cov.transpose(0, 2, 1), rtol=1e-6, atol=1e-9 * max(scale, 1e-300)):
        raise ValueError("covariances must be symmetric matrices.")
    diag = np.diagonal(cov, axis1=1, axis2=2)
    if (diag <= 0).any():
        raise ValueError(
            "covariances must have positive variances on the diagonal; a component has a "
            "zero or negative variance (add a small regularisation such as reg_covar)."
        )
    sw = None
    if sample_weight is not None:
        sw = float_array("sample_weight", sample_weight, 1, f"({n},)")
        if sw.shape != (n,):
            raise ValueError(
                f"sample_weight must have shape ({n},), one per row of X; got {sw.shape}."
            )
        if (sw < 0).any() or sw.sum() <= 0:
            raise ValueError("sample_weight must be non-negative with a positive sum.")
    return X, w, mu, cov, sw


def _check_feature_names(feature_names, D):
    if feature_names is None:
        return ("R", "G", "B") if D == 3 else tuple(f"x{d + 1}" for d in range(D))
    if isinstance(feature_names, str):
        raise ValueError("feature_names must be a sequence of strings, e.g. ('R', 'G', 'B').")
    names = tuple(feature_names)
    if len(names) != D or not all(isinstance(s, str) for s in names):
        raise ValueError(f"feature_names must be {D} strings, one per column of X; got {names!r}.")
    return names


def _check_bins(bins):
    if isinstance(bins, bool) or not isinstance(bins, numbers.Integral) or not 8 <= bins <= 1024:
        raise ValueError(f"bins must be a whole number from 8 to 1024; got {bins!r}.")
    return int(bins)


def _axis_limits(values):
    """Data range with a 5 % margin; a constant feature gets a small window around it."""
    lo, hi = float(values.min()), float(values.max())
    span = hi - lo
    if span <= 0:
        span = max(abs(lo) * 0.1, 1e-3)
        return lo - span, hi + span
    return lo - 0.05 * span, hi + 0.05 * span


_MAX_BINS = 64


def _component_styles(weights):
    """Line width and alpha per component, growing with its weight, so the components that
    explain most pixels dominate the picture; thinner overall for many components, whose
    outlines would otherwise merge into one tangle."""
    rel = np.sqrt(weights / weights.max())
    thinning = min(1.0, math.sqrt(8.0 / weights.size))
    return (0.7 + 1.8 * rel) * thinning, 0.45 + 0.55 * rel


def density_panels(
    X,
    weights,
    means,
    covariances,
    *,
    sample_colors=None,
    component_colors=None,
    feature_names=None,
    sample_weight=None,
    bins=128,
    title=None,
):
    """The data of :func:`segment.outputs.plots.plot_density` (same arguments, same
    checks): a dict the figure is drawn from (:func:`.density.draw_density`), holding the
    mixture, its style, the axis limits, each pair panel's 2-D histogram image and each
    marginal panel's weighted histogram; nothing in it grows with the rows of ``X``."""
    X, w, mu, cov, sw = _check_density_inputs(X, weights, means, covariances, sample_weight)
    n, D = X.shape
    K = w.size
    sample_colours = check_rgb("sample_colors", sample_colors, n, "row of X")
    if component_colors is None:
        cc = default_component_colors(K)
    else:
        cc = check_rgb("component_colors", component_colors, K, "component")
    names = _check_feature_names(feature_names, D)
    bins = _check_bins(bins)
    title = check_title(title)

    shown = min(D, MAX_SHOWN_FEATURES)
    pairs = list(itertools.combinations(range(shown), 2))
    used = slice(None) if sw is None else sw > 0
    limits, marginal_edges, grid_edges = [], [], []
    for d in range(shown):
        values = X[used, d]
        limits.append(_axis_limits(values))
        edges = feature_edges(values, _MAX_BINS, bins)
        marginal_edges.append(edges[0])
        grid_edges.append(edges[1])
    pair_images = []
    for i, j in pairs:
        mass, colour = pair_histogram(
            X[:, i], X[:, j], grid_edges[i], grid_edges[j], sw, sample_colours
        )
        pair_images.append((density_image(mass, colour), grid_edges[i], grid_edges[j]))
    marginals = []
    for d in range(shown):
        heights, _ = np.histogram(X[:, d], bins=marginal_edges[d], weights=sw, density=True)
        marginals.append((heights, marginal_edges[d]))
    if title is None:
        title = f"Gaussian mixture density: K = {K} component{'s' if K != 1 else ''}, {n:,} samples"
        if D > MAX_SHOWN_FEATURES:
            title += f" (features 1–{MAX_SHOWN_FEATURES} of {D} shown)"
    linewidths, alphas = _component_styles(w)
    return {
        "weights": w,
        "means": mu,
        "covariances": cov,
        "colours": cc,
        "linewidths": linewidths,
        "alphas": alphas,
        "names": names,
        "pairs": pairs,
        "limits": limits,
        "pair_images": pair_images,
        "marginals": marginals,
        "title": title,
    }


def loglik_spec(model):
    """The spec of NAME.loglik.png: ``model``'s EM objective per iteration."""
    return {
        "history": np.asarray(model.history_, dtype=np.float64),
        "reset_iterations": [int(r) for r in model.reset_iterations_],
        "converged": bool(model.converged_),
        "ylabel": "mean log-likelihood per pixel"
        + (" (log-posterior)" if model.prior_ is not None else ""),
    }


def criterion_spec(selection):
    """The spec of NAME.bic.png: the BIC of every model a selection fitted."""
    ks, values = selection.values()
    return {"ks": ks, "values": values, "chosen": selection.chosen, "criterion": "BIC"}


def density_spec(model, *, X, rgb, weight, space, palette):
    """The spec of NAME.density.png: ``model`` over its feature rows ``X`` (coloured
    ``rgb``, weighted by ``weight``), components in their ``palette`` colours."""
    # Imported here: the plot worker imports this module but never makes a spec.
    from gmm import full_covariances

    from ...features import FEATURE_NAMES

    m = model
    K, D = m.means_.shape
    cov = full_covariances(m.covariance_type, m.covariances_, K, D)[:, :3, :3]
    X = X[:, :3]
    # Pixels missing a channel (NaN) have no point in a colour projection: they are shown
    # by the fitted density only.
    complete = ~np.isnan(X).any(axis=1)
    if not complete.all():
        X, rgb = X[complete], rgb[complete]
        weight = None if weight is None else weight[complete]
    rows = (
        f"{len(X):,} pixels"
        if weight is None
        else f"{weight.sum():,.0f} pixels, {len(X):,} distinct colours"
    )
    return density_panels(
        X,
        m.weights_,
        m.means_[:, :3],
        cov,
        sample_colors=rgb,
        component_colors=palette / 255.0,
        feature_names=FEATURE_NAMES[space],
        sample_weight=weight,
        title=f"Gaussian mixture density: K = {K} component{'s' if K != 1 else ''}, {rows}",
    )
