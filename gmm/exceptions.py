"""Warnings raised by the :mod:`gmm` package."""


class ConvergenceWarning(UserWarning):
    """EM stopped before the change of the objective fell below ``tol``."""


class FewDistinctPointsWarning(UserWarning):
    """The data hold fewer distinct points than the requested number of components."""


class UnobservedRowsWarning(UserWarning):
    """Rows whose every value is missing (NaN) were left out of a fit."""
