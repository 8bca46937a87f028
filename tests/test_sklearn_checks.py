"""scikit-learn's own estimator checks, run completely."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from mogsgd import SGDGaussianMixture


@parametrize_with_checks([SGDGaussianMixture(), SGDGaussianMixture(n_components=2, n_init=2)])
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
