"""Shared fixtures: small parameter sets and data drawn from seeded Generators only."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from mogsgd import MixtureParams  # noqa: E402


def random_params(rng: np.random.Generator, k: int, d: int, dtype=np.float64) -> MixtureParams:
    """Well-conditioned random parameters: means in [-3, 3], sigmas in [0.5, 2]."""
    return MixtureParams(
        means=rng.uniform(-3, 3, size=(k, d)).astype(dtype),
        log_sigma=np.log(rng.uniform(0.5, 2.0, size=(k, d))).astype(dtype),
        logits=rng.normal(size=k).astype(dtype),
    )


def sample_mixture(rng: np.random.Generator, params: MixtureParams, n: int):
    """Draw (X, y) from ``params`` (an independent sampler, not the library's)."""
    y = rng.choice(params.n_components, size=n, p=params.weights)
    X = params.means[y] + rng.standard_normal((n, params.n_features)) * params.sigma[y]
    return X, y


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
