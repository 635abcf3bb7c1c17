"""gmm: Gaussian mixture models fitted by EM that streams over chunks of data.

Arrays in, arrays out: no file I/O, no images, no printing. See :class:`GaussianMixture`.
"""

from .chunks import ArraySource, ChunkSource, IterableSource
from .covariance import full_covariances, n_parameters
from .distributed import DaskSource, fit_dask
from .exceptions import ConvergenceWarning, FewDistinctPointsWarning
from .model import GaussianMixture

__all__ = [
    "ArraySource",
    "ChunkSource",
    "ConvergenceWarning",
    "DaskSource",
    "FewDistinctPointsWarning",
    "GaussianMixture",
    "IterableSource",
    "fit_dask",
    "full_covariances",
    "n_parameters",
]
