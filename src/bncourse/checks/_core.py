"""What the instructor-side checks share.

The comparison machinery (``CheckFailed``, ``Mistake``, ``_compare``, ...) is the student kit's
(:mod:`bnkit._core`), re-exported here; this module adds the input builders the cases share.
"""

from __future__ import annotations

import numpy as np
from bnkit._core import (ATOL, RTOL, CheckFailed, Mistake, _as_array, _close, _compare, _fail,  # noqa: F401
                         _locate, _passed, _unpack_pair, quiet)


def _torch():
    """torch, imported when a case first needs it, so that the checks of the NumPy-only exercises load
    without it."""
    import torch
    return torch


# ---------------------------------------------------------------------------------------------
# Inputs shared by the normalization exercises
# ---------------------------------------------------------------------------------------------

def _features(rng, n: int, d: int, constant_feature: bool = False) -> np.ndarray:
    """A batch whose features have clearly different means and scales, so that statistics
    taken over the wrong axis give visibly wrong answers."""
    means = rng.uniform(-5, 5, size=d)
    scales = rng.uniform(0.5, 3.0, size=d)
    x = rng.normal(means, scales, size=(n, d))
    if constant_feature:
        x[:, rng.integers(d)] = means[0]
    return x


def _affine(rng, d: int):
    return rng.uniform(0.5, 2.0, size=d), rng.uniform(-1.0, 1.0, size=d)
