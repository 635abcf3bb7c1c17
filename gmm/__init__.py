"""gmm: Gaussian mixture models fitted by EM that streams over chunks of data.

Arrays in, arrays out: no file I/O, no images, no printing. See :class:`GaussianMixture`.
"""

from ._checks import COVARIANCE_TYPES, INIT_METHODS, check_random_state
from .bernoulli import BernoulliMixture
from .chunks import ArraySource, ChunkSource, IterableSource
from .covariance import full_covariances, n_parameters
from .distributed import DaskSource, fit_dask
from .exceptions import ConvergenceWarning, FewDistinctPointsWarning, UnobservedRowsWarning
from .init import lloyd
from .model import GaussianMixture
from .select import Selection, grow_mixture, select_model

__all__ = [
    "COVARIANCE_TYPES",
    "INIT_METHODS",
    "ArraySource",
    "BernoulliMixture",
    "ChunkSource",
    "ConvergenceWarning",
    "DaskSource",
    "FewDistinctPointsWarning",
    "GaussianMixture",
    "IterableSource",
    "Selection",
    "UnobservedRowsWarning",
    "check_random_state",
    "fit_dask",
    "full_covariances",
    "grow_mixture",
    "lloyd",
    "n_parameters",
    "select_model",
]
