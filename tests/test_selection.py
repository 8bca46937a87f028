import numpy as np
import pytest

from mogsgd.datasets import make_mixture
from mogsgd.selection import select_n_components


def test_bic_picks_the_true_number_of_components():
    X, _, _ = make_mixture(1500, 2, 3, separation=3.0, random_state=3)
    result = select_n_components(X, range(1, 6), n_init=1, random_state=0)
    assert [r["k"] for r in result.rows] == [1, 2, 3, 4, 5]
    assert result.best("bic") == 3
    table = result.to_markdown()
    assert "**" in table and "Best K: BIC 3" in table
    assert all(np.isfinite(r["heldout_ll"]) for r in result.rows)


def test_selection_validates_its_arguments():
    X = np.random.default_rng(0).normal(size=(20, 2))
    with pytest.raises(ValueError, match="cannot support K=30"):
        select_n_components(X, [1, 30])
    with pytest.raises(ValueError, match="criterion"):
        select_n_components(X, [1], n_init=1, max_epochs=2).best("nll")
