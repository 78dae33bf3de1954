"""The visible checks' fixed inputs, expected outputs and mistakes' outputs, stored as JSON.

``encode``/``decode`` turn nested dicts, lists, tuples, numbers, strings, NumPy arrays and
:class:`Mistake` objects into JSON and back exactly (arrays as base64 of their bytes). The course
writes ``fixtures/<exercise>.json`` when the kit is built: a dict from each check's name to its
cases.
"""

from __future__ import annotations

import base64
import functools
import json
from importlib import resources

import numpy as np

from ._core import Mistake, student_facing


def encode(value):
    """A JSON-ready form of ``value``."""
    if isinstance(value, Mistake):
        return {"__mistake__": [encode(value.expected_if_made), value.explanation]}
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            raise TypeError(f"only numeric arrays go into fixtures, not {value.dtype}")
        array = np.ascontiguousarray(value)
        return {"__array__": base64.b64encode(array.tobytes()).decode("ascii"), "dtype": array.dtype.str,
                "shape": list(value.shape)}  # ascontiguousarray makes 0-d arrays 1-d
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return {"__tuple__": [encode(v) for v in value]}
    if isinstance(value, list):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise TypeError("fixture dicts need string keys")
        return {k: encode(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot store a {type(value).__name__} in a fixture")


def decode(value):
    """The inverse of :func:`encode`."""
    if isinstance(value, list):
        return [decode(v) for v in value]
    if isinstance(value, dict):
        if "__array__" in value:
            data = base64.b64decode(value["__array__"])
            return np.frombuffer(data, dtype=np.dtype(value["dtype"])).reshape(value["shape"]).copy()
        if "__tuple__" in value:
            return tuple(decode(v) for v in value["__tuple__"])
        if "__mistake__" in value:
            expected, explanation = value["__mistake__"]
            return Mistake(decode(expected), explanation)
        return {k: decode(v) for k, v in value.items()}
    return value


@functools.lru_cache(maxsize=None)
def _load(exercise: str) -> str:
    path = resources.files("bnkit") / "fixtures" / f"{exercise}.json"
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RuntimeError(f"this copy of bnkit has no fixtures for {exercise}; install the kit's wheel from "
                           "the exercise's bundle or the course site") from None


def cases(exercise: str, check: str):
    """The stored cases of one visible check (a fresh copy at every call: checks may mutate them)."""
    return decode(json.loads(_load(exercise))[check])


def stored_check(exercise: str, verify):
    """The notebook's check ``check_<x>(function)``: ``verify_<x>`` on the cases stored in the kit,
    reporting the student's own errors in words (see :func:`student_facing`)."""
    name = verify.__name__.replace("verify_", "check_", 1)

    def check(*functions):
        return verify(*functions, cases(exercise, name))

    check.__name__ = check.__qualname__ = name
    check.__doc__ = verify.__doc__
    return student_facing(check)
