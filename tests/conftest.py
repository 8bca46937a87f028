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


def component_covariance(cov, covariance_type: str, k: int, d: int) -> np.ndarray:
    """Component ``k``'s (D, D) covariance from ``cov`` in scikit-learn's shape for
    ``covariance_type``."""
    if covariance_type == "full":
        return cov[k]
    if covariance_type == "tied":
        return cov
    if covariance_type == "diag":
        return np.diag(cov[k])
    return cov[k] * np.eye(d)


def divergent_spherical_init():
    """scikit-learn's test_gaussian_mixture_setting_best_params: 30 uniform points in 3-D
    and spherical initial arrays that lead EM towards divergence, as ``(X, weights_init,
    means_init, precisions_init)``."""
    X = np.random.RandomState(0).uniform(size=(30, 3))
    means_init = np.array([
        [0.670637869618158, 0.21038256107384043, 0.12892629765485303],
        [0.09394051075844147, 0.5759464955561779, 0.929296197576212],
        [0.5033230372781258, 0.9569852381759425, 0.08654043447295741],
        [0.18578301420435747, 0.5531158970919143, 0.19388943970532435],
        [0.4548589928173794, 0.35182513658825276, 0.568146063202464],
        [0.609279894978321, 0.7929063819678847, 0.9620097270828052]])
    precisions_init = np.array([999999.999604483, 999999.9990869573, 553.7603944542167,
                                204.78596008931834, 15.867423501783637, 85.4595728389735])
    weights_init = [0.03333333333333341, 0.03333333333333341, 0.06666666666666674,
                    0.06666666666666674, 0.7000000000000001, 0.10000000000000007]
    return X, weights_init, means_init, precisions_init


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
