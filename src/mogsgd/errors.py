"""Exceptions raised by mogsgd. All derive from the built-in types users already catch."""

from __future__ import annotations

__all__ = ["ValidationError", "ModelFileError", "DataFileError", "ConvergenceWarning",
           "FallbackWarning", "DroppedDataWarning"]


class ValidationError(ValueError):
    """Bad input: wrong shape, NaN/inf, too few points, a hyper-parameter out of range."""


class ModelFileError(ValueError):
    """A model or checkpoint file that is corrupt, truncated, foreign or of another format."""


class DataFileError(ValueError):
    """A data file that cannot be read as the data it claims to hold."""


class ConvergenceWarning(UserWarning):
    """Training stopped at its epoch budget before the convergence criterion was met."""


class FallbackWarning(RuntimeWarning):
    """The compiled fast path is unavailable and the NumPy reference is used instead."""


class DroppedDataWarning(UserWarning):
    """Labels or parameters were not written because the chosen format cannot hold them."""
