"""One BLAS thread while gmm works.

Every matrix product of the E-step is small (a block of a few thousand rows times a few
dozen features); a multi-threaded BLAS splits each one across threads and then spends longer
synchronising them than computing, 10–30× longer on a loaded 2-core machine (measured in
benchmarks/bench_em.py). The limit applies only inside gmm's own calls.
"""

import functools

from threadpoolctl import threadpool_limits


def single_threaded(method):
    """Run ``method`` with BLAS limited to one thread."""

    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        with threadpool_limits(limits=1, user_api="blas"):
            return method(*args, **kwargs)

    return wrapper
