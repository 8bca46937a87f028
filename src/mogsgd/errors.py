"""Exceptions raised by mogsgd. All derive from the built-in types users already catch."""

from __future__ import annotations

__all__ = ["ValidationError", "SettingsError", "ColumnChoiceError", "ModelFileError",  # noqa: F822
           "DataFileError", "ConvergenceWarning",
           "FallbackWarning", "DroppedDataWarning", "NearConstantWarning"]


class ValidationError(ValueError):
    """Bad input: wrong shape, NaN/inf, too few points, a hyper-parameter out of range."""


class SettingsError(ValidationError):
    """A setting or argument the caller chose that is out of range, names something that
    is not there, or cannot go with another one; the data are not at fault (the command
    line exits with status 2 for these, 3 for problems of the data or files)."""


class ModelFileError(ValueError):
    """A model or checkpoint file that is corrupt, truncated, foreign or of another format."""


class DataFileError(ValueError):
    """A data file that cannot be read as the data it claims to hold."""


class ColumnChoiceError(SettingsError, DataFileError):
    """``columns=``, ``drop=`` or ``label_column=`` name a column the file does not have (or
    choose none): the fix is in the arguments, so a :class:`SettingsError`, and a
    :class:`DataFileError` like every other refusal of the file's reader."""


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
