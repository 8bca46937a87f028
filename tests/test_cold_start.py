"""``mogsgd fit`` on a small file imports neither scikit-learn nor numba (issue 15 item 8:
each costs more than the fit), and the scikit-learn-free estimator it uses is the
estimator: same fit, same model file."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from mogsgd import SGDGaussianMixture, make_mixture
from mogsgd.mixture import SGDMixture
from mogsgd.model_io import load_model

_FIT = """
import sys
from mogsgd.cli import main
status = main(["fit", sys.argv[1], "-k", "3", "-q", "--out", sys.argv[2]] + sys.argv[3:])
print({"status": status, "sklearn": "sklearn" in sys.modules, "numba": "numba" in sys.modules,
       "scipy": "scipy" in sys.modules, "pandas": "pandas" in sys.modules,
       "matplotlib": "matplotlib" in sys.modules})
"""


def test_cli_fit_of_a_small_file_imports_no_heavy_package(tmp_path):
    X = make_mixture(1000, 3, 3, random_state=0)[0]
    np.save(tmp_path / "data.npy", X)
    out = subprocess.run([sys.executable, "-c", _FIT, str(tmp_path / "data.npy"),
                          str(tmp_path / "m.json")], capture_output=True, text=True,
                         check=True)
    seen = eval(out.stdout.strip().splitlines()[-1])  # a dict literal printed above
    assert seen == {"status": 0, "sklearn": False, "numba": False, "scipy": False,
                    "pandas": False, "matplotlib": False}, out.stderr
    model = load_model(tmp_path / "m.json")
    assert isinstance(model, SGDGaussianMixture)
    assert model.backend == "auto"   # the NumPy fit of this process is not a setting
    assert json.loads((tmp_path / "m.json").read_text())["body"]["estimator"] == \
        "SGDGaussianMixture"
    assert np.isfinite(model.score(X))


def test_cli_warm_start_of_a_small_model_imports_no_heavy_package(tmp_path):
    """``mogsgd fit --warm-start`` loads the model without scikit-learn too."""
    X = make_mixture(1000, 3, 3, random_state=0)[0]
    np.save(tmp_path / "data.npy", X)
    SGDGaussianMixture(3, random_state=0, backend="numpy").fit(X).save(tmp_path / "m.json")
    out = subprocess.run([sys.executable, "-c", _FIT, str(tmp_path / "data.npy"),
                          str(tmp_path / "m2.json"), "--warm-start", str(tmp_path / "m.json"),
                          "--epochs", "2"], capture_output=True, text=True, check=True)
    seen = eval(out.stdout.strip().splitlines()[-1])  # a dict literal printed above
    assert seen == {"status": 0, "sklearn": False, "numba": False, "scipy": False,
                    "pandas": False, "matplotlib": False}, out.stderr
    assert np.isfinite(load_model(tmp_path / "m2.json").score(X))


def test_scikit_learn_free_estimator_fits_exactly_like_the_estimator(tmp_path):
    X = make_mixture(600, 2, 3, random_state=1)[0]
    a = SGDMixture(3, random_state=0).fit(X)
    b = SGDGaussianMixture(3, random_state=0).fit(X)
    np.testing.assert_array_equal(a.means_, b.means_)
    np.testing.assert_array_equal(a.covariances_, b.covariances_)
    assert a.score(X) == b.score(X) and a.n_iter_ == b.n_iter_
    assert a.get_params() == b.get_params()
    a.save(tmp_path / "a.json")
    loaded = SGDGaussianMixture.load(tmp_path / "a.json")
    np.testing.assert_array_equal(loaded.predict_proba(X), b.predict_proba(X))
