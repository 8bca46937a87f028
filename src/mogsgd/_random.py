"""The one way mogsgd turns a seed into randomness: a ``numpy.random.Generator``."""

from __future__ import annotations

import numbers

import numpy as np

__all__ = ["check_random_state", "state_copy"]


def check_random_state(random_state=None) -> np.random.Generator:
    """``None`` -> fresh entropy; an int -> ``default_rng(int)``; a Generator -> itself.

    A legacy ``RandomState`` (as scikit-learn's tooling passes) seeds a new Generator
    from its stream, so results stay reproducible from it.
    """
    if random_state is None:
        return np.random.default_rng()
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        if random_state < 0:
            raise ValueError(f"random_state must be a non-negative integer, got {random_state}")
        return np.random.default_rng(int(random_state))
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(0, 2**31 - 1))
    raise TypeError(
        f"random_state must be None, an int or a numpy.random.Generator, got {random_state!r}"
    )


def state_copy(state):
    """A copy of a bit generator's ``state`` (nested dicts of ints, strings and arrays) that
    shares nothing mutable with it: ``copy.deepcopy``'s result without its memo bookkeeping
    (about 3x cheaper; the training loop records the state after every epoch)."""
    if isinstance(state, dict):
        return {key: state_copy(value) for key, value in state.items()}
    if isinstance(state, np.ndarray):
        return state.copy()
    if isinstance(state, list | tuple):
        return type(state)(state_copy(value) for value in state)
    return state
