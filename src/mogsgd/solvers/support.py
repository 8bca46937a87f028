"""What works with what: the support table, as code, with one error format.

Each feature a fit can ask for needs one capability of the source
(:data:`mogsgd.data.base.CAPABILITIES`); :func:`check_supported` refuses a combination
before any work starts with one message naming the feature, the input kind and the fix.
:func:`support_table` renders the table for the README (a test keeps the two equal).
"""

from __future__ import annotations

from mogsgd.data import Source
from mogsgd.data.base import KINDS
from mogsgd.errors import SettingsError

__all__ = ["FEATURES", "check_supported", "support_table", "unsupported_message"]

#: feature -> (capability it needs, what to do instead)
FEATURES: dict[str, tuple[str, str]] = {
    "solver='em'": ("em", "use solver='sgd' or 'online_em', or pass the rows as an array "
                          "or a re-readable file"),
    "solver='online_em'": ("online_em", "use solver='sgd' or 'em', or stream the array "
                                        "without a cluster client"),
    "sample_weight": ("weights", "repeat rows instead, or load the rows and pass an array"),
    "checkpoint_path/resume": ("checkpoint", "remove checkpoint_path and resume=, or load "
                                             "the rows and pass an array"),
    "partial_fit": ("partial_fit", "use fit"),
    "covariance_type='full'/'tied'/'spherical'": (
        "families", "use covariance_type='diag', or device='cpu-numpy' to fit on the NumPy "
                    "path"),
}
#: The feature name of the non-diagonal covariance types.
FAMILIES_FEATURE = "covariance_type='full'/'tied'/'spherical'"

#: Fixes that depend on the input kind as well: (feature, kind) -> what to do instead.
KIND_FIXES: dict[tuple[str, str], str] = {
    ("solver='em'", "tensor"): "use solver='sgd' on the device, or device='cpu-numpy' to "
                               "fit on the NumPy path",
    ("solver='online_em'", "tensor"): "use solver='sgd' on the device, or "
                                      "device='cpu-numpy' to fit on the NumPy path",
    ("solver='em'", "dask"): "use solver='sgd', or solver='online_em' without a client",
    ("solver='online_em'", "one-shot iterator"): "use solver='sgd'",
}


def unsupported_message(feature: str, source: Source) -> str:
    """The one error format: ``<feature> is not supported for <input kind>: <fix>``."""
    fix = KIND_FIXES.get((feature, source.kind), FEATURES[feature][1])
    return f"{feature} is not supported for {source.description}: {fix}"


def check_supported(source: Source, *, solver: str, sample_weight: bool = False,
                    checkpoint: bool = False, partial: bool = False,
                    covariance_type: str = "diag") -> None:
    """Refuse (``SettingsError``) a fit the source cannot run, before any work."""
    asked = [f"solver={solver!r}"] if f"solver={solver!r}" in FEATURES else []
    if covariance_type != "diag":
        asked.append(FAMILIES_FEATURE)
    if sample_weight:
        asked.append("sample_weight")
    if checkpoint:
        asked.append("checkpoint_path/resume")
    if partial:
        asked.append("partial_fit")
    for feature in asked:
        if FEATURES[feature][0] not in source.capabilities:
            raise SettingsError(unsupported_message(feature, source))
    if partial and solver == "em":
        raise SettingsError("partial_fit is not supported for solver='em' (batch EM needs "
                              "every row at each iteration): use solver='online_em' to fit "
                              "incrementally, or fit")
    if sample_weight and checkpoint:
        raise SettingsError("sample_weight is not supported with checkpoint_path/resume: "
                              "fit without checkpointing, or without weights")


def support_table() -> str:
    """The support table as Markdown: input kinds x features (yes / no)."""
    features = list(FEATURES)
    lines = ["| input | solver='sgd' | " + " | ".join(features) + " |",
             "|---" * (len(features) + 2) + "|"]
    for name, caps in KINDS.values():
        cells = ["yes"] + ["yes" if FEATURES[f][0] in caps else "no" for f in features]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
