"""Exceptions raised by mogsgd. All derive from the built-in types users already catch."""

from __future__ import annotations

__all__ = ["ValidationError", "ModelFileError", "DataFileError", "ConvergenceWarning",  # noqa: F822
           "FallbackWarning", "DroppedDataWarning", "NearConstantWarning"]


class ValidationError(ValueError):
    """Bad input: wrong shape, NaN/inf, too few points, a hyper-parameter out of range."""


class ModelFileError(ValueError):
    """A model or checkpoint file that is corrupt, truncated, foreign or of another format."""


class DataFileError(ValueError):
    """A data file that cannot be read as the data it claims to hold."""


def __getattr__(name: str):
    """``ConvergenceWarning`` is made on first use, as a subclass of scikit-learn's own
    (code that filters scikit-learn's warning sees ours), so that importing the NumPy core
    does not import scikit-learn."""
    if name == "ConvergenceWarning":
        from sklearn.exceptions import ConvergenceWarning as SklearnConvergenceWarning

        cls = type("ConvergenceWarning", (SklearnConvergenceWarning,), {
            "__module__": __name__,
            "__doc__": "Training stopped at its budget before the convergence criterion was "
                       "met (a subclass of ``sklearn.exceptions.ConvergenceWarning``)."})
        globals()["ConvergenceWarning"] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class FallbackWarning(RuntimeWarning):
    """The compiled fast path is unavailable and the NumPy reference is used instead."""


class DroppedDataWarning(UserWarning):
    """Labels or parameters were not written because the chosen format cannot hold them."""


class NearConstantWarning(UserWarning):
    """Features on which (almost) every row has the same value: each component's variance
    there sits at the floor, so a held-out row with another value scores absurdly low.

    ``features`` holds their indices, ``spreads`` their standard deviations and
    ``values`` the value most rows hold (their median)."""

    def __init__(self, message: str, features=(), spreads=(), values=()) -> None:
        super().__init__(message)
        self.features = tuple(int(f) for f in features)
        self.spreads = tuple(float(s) for s in spreads)
        self.values = tuple(float(v) for v in values)
