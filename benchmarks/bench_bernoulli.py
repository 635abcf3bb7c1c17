"""Cluster purity of a Bernoulli mixture on binary digits, with k-means on the same bits.

``python benchmarks/bench_bernoulli.py tests/data/digits/digits_binary.npz``
(``--figure images/readme/digits-bernoulli-means.png`` also draws the README's picture)

Purity: every cluster is labelled with its most frequent true digit; the fraction of images
whose cluster's label is their digit. Both methods get the same number of restarts (the best
by their own criterion is kept: log-posterior for the mixture, inertia for k-means) and the
same seeds; the table gives the mean and range over seeds.
"""

import argparse
import time

import numpy as np
from scipy.cluster.vq import kmeans2

from gmm import BernoulliMixture


def purity(labels, truth):
    hits = 0
    for k in np.unique(labels):
        hits += np.bincount(truth[labels == k]).max()
    return hits / len(truth)


def kmeans(X, K, n_init, seed):
    rng = np.random.default_rng(seed)
    best = None
    for _ in range(n_init):
        centres, labels = kmeans2(X, K, minit="++", seed=rng, iter=100)
        inertia = ((X - centres[labels]) ** 2).sum()
        if best is None or inertia < best[0]:
            best = (inertia, labels)
    return best[1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("npz")
    parser.add_argument("--ks", type=int, nargs="+", default=[10, 15, 20])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--n-init", type=int, default=5)
    parser.add_argument(
        "--figure", help="also write the means of a K=10 fit (seed 0) as this PNG, for the README"
    )
    args = parser.parse_args()
    data = np.load(args.npz)
    X, y = data["X"].astype(np.float64), data["y"]
    if args.figure:
        from PIL import Image

        from segment.binary import means_picture

        model = BernoulliMixture(10, n_init=args.n_init, max_iter=300, random_state=0).fit(X)
        Image.fromarray(means_picture(model.means_, (8, 8), model.weights_)).save(args.figure)
    print(f"{X.shape[0]} images of {X.shape[1]} bits; n_init={args.n_init}, seeds={args.seeds}")
    head = f"{'K':>3} | {'Bernoulli purity':>22} | {'k-means purity':>22}"
    print(f"{head} | {'BMM s':>6} | {'km s':>6}")
    for K in args.ks:
        bmm, km, tb, tk = [], [], 0.0, 0.0
        for seed in range(args.seeds):
            t = time.perf_counter()
            model = BernoulliMixture(K, n_init=args.n_init, max_iter=300, random_state=seed)
            bmm.append(purity(model.fit(X).predict(X), y))
            tb += time.perf_counter() - t
            t = time.perf_counter()
            km.append(purity(kmeans(X, K, args.n_init, seed), y))
            tk += time.perf_counter() - t

        def cell(v):
            return f"{np.mean(v):.3f} [{min(v):.3f}, {max(v):.3f}]"

        print(
            f"{K:>3} | {cell(bmm):>22} | {cell(km):>22} | {tb / args.seeds:6.2f} | "
            f"{tk / args.seeds:6.2f}"
        )


if __name__ == "__main__":
    main()
