"""One way to turn a ``random_state`` argument into a NumPy ``Generator``.

Every function of mogsgd that draws random numbers takes ``random_state`` and
passes it through :func:`check_random_state`; nothing uses the global NumPy RNG.
"""

from __future__ import annotations

import numbers

import numpy as np

__all__ = ["RandomStateLike", "check_random_state"]

RandomStateLike = int | np.integer | np.random.Generator | np.random.SeedSequence | None


def check_random_state(random_state: RandomStateLike = None) -> np.random.Generator:
    """Return a ``numpy.random.Generator`` for ``random_state``.

    Parameters
    ----------
    random_state : None, int >= 0, numpy.random.SeedSequence or numpy.random.Generator
        ``None`` gives a fresh generator seeded from the operating system; an
        integer or a ``SeedSequence`` gives a reproducible generator; a
        ``Generator`` is returned as it is (not copied), so successive calls
        that share it draw successive numbers.

    Raises
    ------
    TypeError
        For anything else, including the legacy ``numpy.random.RandomState``
        and booleans.
    ValueError
        For a negative integer seed.
    """
    if random_state is None:
        return np.random.default_rng()
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, np.random.SeedSequence):
        return np.random.default_rng(random_state)
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool | np.bool_):
        if random_state < 0:
            raise ValueError(f"random_state must be a non-negative integer, got {random_state}")
        return np.random.default_rng(int(random_state))
    if isinstance(random_state, np.random.RandomState):
        raise TypeError(
            "random_state must be None, an int or a numpy.random.Generator; the legacy "
            "numpy.random.RandomState is not supported (use numpy.random.default_rng(seed))"
        )
    raise TypeError(
        "random_state must be None, a non-negative int, a numpy.random.SeedSequence or a "
        f"numpy.random.Generator, got {type(random_state).__name__}: {random_state!r}"
    )
