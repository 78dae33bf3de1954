"""What every check shares: failing with a message in plain words, comparing arrays, naming mistakes.

A failed check raises :class:`CheckFailed`. In Jupyter it renders as its message alone (IPython
asks an exception for ``_render_traceback_``), so a student sees what is wrong, not a traceback
through the kit. Nothing here writes to stderr: nbgrader would count that as a failure.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Float64 inputs and NumPy code agree with the reference to ~1e-15; these tolerances are far
# above rounding but far below the effect of any real mistake (epsilon = 1e-5 included).
RTOL = 1e-7
ATOL = 1e-9

_KIT = Path(__file__).resolve().parent


class CheckFailed(AssertionError):
    """A check found a mistake; the message says what it is in plain words."""

    def _render_traceback_(self):
        # IPython shows these lines instead of a traceback: the message is the whole story.
        return ["\x1b[1;31m\u2717 check failed\x1b[0m" + str(self)]


@dataclass
class Mistake:
    """A known wrong answer: what it would have produced and what to tell the student."""

    expected_if_made: np.ndarray
    explanation: str


def _fail(subject: str, problem: str, hint: str | None = None) -> None:
    message = f"\n{subject}: {problem}"
    if hint:
        message += f"\n  Hint: {hint}"
    raise CheckFailed(message)


_output = threading.local()


@contextlib.contextmanager
def quiet():
    """No success lines from checks run in this thread (the grader runs them outside notebooks)."""
    _output.quiet = True
    try:
        yield
    finally:
        _output.quiet = False


def _passed(message: str) -> None:
    if not getattr(_output, "quiet", False):
        print(f"\u2713 {message}")


def _your_line(exc: BaseException) -> str:
    """Where in the student's own code an exception was raised ('' when it was not there)."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith(str(_KIT))]
    if not frames:
        return ""
    frame = frames[-1]
    where = f"in {frame.name}" if frame.name not in ("<module>", "<lambda>") else "in your code"
    return f" ({where}, at `{frame.line.strip()}`)" if frame.line else f" ({where})"


def student_facing(check):
    """Decorate a kit check so that an exception from the student's code becomes a CheckFailed that
    names it and the line it came from, instead of a traceback through the kit."""

    @functools.wraps(check)
    def run(*args, **kwargs):
        try:
            return check(*args, **kwargs)
        except CheckFailed:
            raise
        except NotImplementedError:
            raise CheckFailed(f"\n{check.__name__}: your function is not written yet: replace "
                              "`raise NotImplementedError()` with your code.") from None
        except Exception as exc:  # noqa: BLE001 - the student's error, reported in words
            raise CheckFailed(f"\n{check.__name__}: your code raised {type(exc).__name__}: {exc}"
                              f"{_your_line(exc)}.") from None

    return run


def _given_entries(result, subject, wrapper, names):
    """The dict a given (read-only) wrapper of the notebook returns, after checking it has every named entry."""
    missing = list(names) if not isinstance(result, dict) else [name for name in names if name not in result]
    if missing:
        got = f"a {type(result).__name__}" if not isinstance(result, dict) else f"a dict without {missing}"
        _fail(subject, f"the given wrapper `{wrapper}` was changed: it returns a dict with the entries "
                       f"{list(names)}, but it returned {got}.",
              f"restore the given cell that defines `{wrapper}` (take it from a fresh copy of the notebook) and "
              "run it again.")
    return result


def _close(a, b) -> bool:
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=RTOL, atol=ATOL))


def _as_array(value, subject: str, name: str) -> np.ndarray:
    if value is None:
        _fail(subject, f"{name} is None.", "did you forget a `return` statement or to store the value?")
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        _fail(subject, f"{name} should be a NumPy array but is a {type(value).__name__}.")
    return array


def _unpack_pair(result, subject: str):
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        kind = type(result).__name__ if not isinstance(result, (tuple, list)) else f"{len(result)}-tuple"
        _fail(subject, f"the function must return a pair `(out, cache)`, but it returned a {kind}.",
              "end with `return out, cache`.")
    return result


def _locate(index, shape) -> str:
    return "[" + ", ".join(str(i) for i in np.unravel_index(index, shape)) + "]"


def _compare(subject: str, name: str, got, expected: np.ndarray, mistakes=(), context: str = "",
             hint: str | None = None) -> None:
    """Fail with a precise message unless ``got`` matches ``expected``.

    The order of the checks is the order in which a student should fix things: the shape,
    then NaN or infinity, then a known mistake, then the largest difference.
    """
    got = _as_array(got, subject, name)
    expected = np.asarray(expected, dtype=np.float64)
    where = f" {context}" if context else ""
    if got.shape != expected.shape:
        _fail(subject, f"{name} has shape {got.shape} but should have shape {expected.shape}{where}.",
              "statistics reduced over the wrong axis, or a missing/extra dimension, usually cause this.")
    bad = ~np.isfinite(got)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        _fail(subject, f"{name} contains {int(bad.sum())} NaN or infinite value(s){where}; the first is at "
              f"{name}{_locate(first, got.shape)} = {got.flat[first]}.",
              "a division by zero is the usual cause: a feature that is constant in the batch has variance 0, "
              "so dividing by sqrt(var) without adding eps inside the square root gives 0/0.")
    if _close(got, expected):
        return
    for mistake in mistakes:
        if _close(got, np.asarray(mistake.expected_if_made, dtype=np.float64)):
            _fail(subject, f"{name} is wrong{where}. It matches what this common mistake gives: "
                  f"{mistake.explanation}", hint)
    diff = np.abs(got - expected)
    worst = int(np.argmax(diff))
    n_bad = int((~np.isclose(got, expected, rtol=RTOL, atol=ATOL)).sum())
    want, have = expected.flat[worst], got.flat[worst]
    tiny = f"{want:.6g}" == f"{have:.6g}"     # six digits would print the same number twice
    digits = ".12g" if tiny else ".6g"
    detail = (f"{name} differs from the reference in {n_bad} of {got.size} elements{where}. The largest difference "
              f"is at {name}{_locate(worst, got.shape)}: expected {want:{digits}}, got {have:{digits}} "
              f"(off by {diff.flat[worst]:.3g}).")
    if tiny:
        detail += (" The first six digits agree: a difference this small usually comes from arithmetic in float32 "
                   "where float64 is expected (torch's default dtype, .float(), np.float32), or from a small term "
                   "such as eps left out or put in another place.")
    if got.ndim == 2 and n_bad:
        wrong_cols = np.flatnonzero((~np.isclose(got, expected, rtol=RTOL, atol=ATOL)).any(axis=0))
        if len(wrong_cols) < got.shape[1]:
            detail += f" Only column(s) {wrong_cols.tolist()} are wrong."
    _fail(subject, detail, hint)
