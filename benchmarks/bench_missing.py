"""EM with missing values: how well the parameters are recovered as values are removed.

Values are removed completely at random (each value independently, fraction 0, 10, 30 and
50 %) from a synthetic mixture (K=3, D=4, full covariances, known parameters) and, with
``--faithful``, from the Old Faithful data (2 features; there the truth is the fit of the
complete data). Three fits of the same model on the same incomplete data:

- ``marginalize``: ``gmm.GaussianMixture`` on the rows with NaN (the exact EM);
- ``complete-case``: the rows with no missing value only;
- ``mean-imputed``: every NaN replaced by its column's mean.

Reported per fraction and method, averaged over ``--repeats`` draws: the mean absolute error
of the means and of the covariance entries (components matched to the truth by an optimal
assignment of the means), and the mean log-likelihood per row of held-out complete data
(synthetic) or of the complete data (Old Faithful), minus that of the true parameters;
the fit's time (2 initialisations) and EM iterations of the best one.

Usage: python benchmarks/bench_missing.py [--faithful tests/data/old_faithful/faithful.csv]
       [--n 20000] [--repeats 3]
"""

import argparse
import time
import warnings

import numpy as np
from scipy.optimize import linear_sum_assignment

import gmm

FRACTIONS = (0.0, 0.1, 0.3, 0.5)
METHODS = ("marginalize", "complete-case", "mean-imputed")


def synthetic_truth(rng, D=4):
    means = np.array([[0.0] * D, [4.0, 1.0, -2.0, 0.0][:D], [0.0, 5.0, 2.0, 3.0][:D]])
    covs = []
    for _ in range(3):
        B = rng.normal(size=(D, D)) * 0.6
        covs.append(B @ B.T + 0.3 * np.eye(D))
    return np.full(3, 1 / 3), means, np.array(covs)


def draw(rng, weights, means, covs, n):
    counts = rng.multinomial(n, weights)
    return np.concatenate(
        [rng.multivariate_normal(m, c, k) for m, c, k in zip(means, covs, counts, strict=True)]
    )


def remove(rng, X, fraction):
    Xm = X.copy()
    Xm[rng.random(X.shape) < fraction] = np.nan
    return Xm


def fit(method, Xm, K, seed):
    if method == "complete-case":
        X = Xm[~np.isnan(Xm).any(axis=1)]
    elif method == "mean-imputed":
        X = np.where(np.isnan(Xm), np.nanmean(Xm, axis=0), Xm)
    else:
        X = Xm
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return gmm.GaussianMixture(
            K, dtype=np.float64, tol=1e-6, max_iter=500, n_init=2, random_state=seed
        ).fit(X)


def errors(model, means, covs):
    cost = ((model.means_[:, None, :] - means[None, :, :]) ** 2).sum(axis=2)
    rows, cols = linear_sum_assignment(cost)
    order = rows[np.argsort(cols)]
    mean_err = float(np.abs(model.means_[order] - means).mean())
    cov_err = float(np.abs(model.covariances_[order] - covs).mean())
    return mean_err, cov_err


def true_loglik(X, weights, means, covs):
    # A model with exactly these parameters, scored without fitting.
    truth = gmm.GaussianMixture(len(weights), dtype=np.float64)
    truth.weights_, truth.means_ = np.asarray(weights), np.asarray(means)
    truth.covariances_ = np.asarray(covs)
    truth.precisions_cholesky_ = np.linalg.cholesky(np.linalg.inv(covs))
    return truth.score(X)


def run(name, X_train_fn, test, truth, K, repeats, seed):
    weights, means, covs = truth
    base = true_loglik(test, weights, means, covs)
    rows = []
    for fraction in FRACTIONS:
        acc = {m: [] for m in METHODS}
        for r in range(repeats):
            rng = np.random.default_rng(seed + 1000 * r)
            Xm = remove(rng, X_train_fn(rng), fraction)
            for method in METHODS:
                t0 = time.perf_counter()
                model = fit(method, Xm, K, seed + r)
                seconds = time.perf_counter() - t0
                me, ce = errors(model, means, covs)
                acc[method].append((me, ce, model.score(test) - base, seconds, model.n_iter_))
        for method in METHODS:
            me, ce, dll, sec, iters = np.mean(acc[method], axis=0)
            rows.append((name, f"{fraction:.0%}", method, me, ce, dll, sec, iters))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--faithful", help="Old Faithful CSV (eruptions,waiting with a header)")
    ap.add_argument("--n", type=int, default=20000, help="synthetic training rows")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    rows = []
    truth = synthetic_truth(np.random.default_rng(args.seed))
    test = draw(np.random.default_rng(args.seed + 7), *truth, 20000)
    rows += run(
        f"synthetic K=3 D=4 N={args.n}",
        lambda rng: draw(rng, *truth, args.n),
        test,
        truth,
        3,
        args.repeats,
        args.seed,
    )
    if args.faithful:
        X = np.loadtxt(args.faithful, delimiter=",", skiprows=1)
        full = fit("marginalize", X, 2, args.seed)
        order = np.argsort(full.means_[:, 0])
        ftruth = (full.weights_[order], full.means_[order], full.covariances_[order])
        rows += run("Old Faithful (truth: complete fit)", lambda rng: X, X, ftruth, 2, 5, 1)

    head = (
        "data",
        "missing",
        "method",
        "|Δμ| mean",
        "|ΔΣ| mean",
        "Δ loglik/row",
        "fit s",
        "EM iters",
    )
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for name, frac, method, me, ce, dll, sec, iters in rows:
        print(
            f"| {name} | {frac} | {method} | {me:.4f} | {ce:.4f} | {dll:+.4f} | {sec:.2f} "
            f"| {iters:.0f} |"
        )


if __name__ == "__main__":
    main()
