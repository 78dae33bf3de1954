"""The answers server: a student's functions, living in a sandbox, callable from the trusted side.

Only the student's setup, answer and added cells run there, in a sandbox where the course package,
with its reference implementations, is hidden. The trusted checks (:mod:`.trusted`) send each call
across and compare what comes back outside. Nothing the sandbox says is believed: replies are
decoded strictly (:mod:`.inside.wire`), and an exception the student's function raised is reported
by its type and the line of the student's cell it came from, never by its message, which could
carry the secret inputs into the feedback.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from . import sandbox
from .inside import wire

# The exception types an error report may name: Python's own (a student's class is reported by its
# first built-in base class, so that no name made up in the sandbox reaches the feedback).
BUILTIN_EXCEPTIONS = frozenset(name for name, value in vars(builtins).items()
                               if isinstance(value, type) and issubclass(value, BaseException))


class AnswerError(AssertionError):
    """The student's function could not be called, raised, or did not return in time."""


class SandboxFailure(RuntimeError):
    """The sandbox itself did not start: a fault of the grading machine, not of the submission."""


def _reflect(originals, after) -> None:
    """Apply in-place changes the student's function made to its arguments to the caller's objects."""
    for original, new in zip(originals, after):
        if isinstance(original, np.ndarray) and isinstance(new, np.ndarray):
            if original.shape == new.shape and original.flags.writeable \
                    and not np.array_equal(original, new, equal_nan=True):
                with contextlib.suppress(TypeError, ValueError):
                    original[...] = new
        elif isinstance(original, dict) and isinstance(new, dict):
            original.clear()
            original.update(new)
        elif isinstance(original, list) and isinstance(new, list):
            original[:] = new


#: What the grader says for each known library error (codes from ``inside/serve_answers.py``).
LIBRARY_ERRORS = {
    "torch_gradient_count": "torch says the Function's backward returned the wrong number of gradients; backward "
                            "must return one gradient per input of forward (None for one that needs none, such as eps)",
    "torch_gradient_shape": "torch says a gradient returned by backward has the wrong shape; each must have the "
                            "shape of its input (dx like x, dgamma and dbeta like gamma)",
    "torch_gradient_not_a_tensor": "torch says backward returned something that is not a tensor (a NumPy array?); "
                                   "convert each gradient with torch.from_numpy",
    "torch_numpy_of_grad_tensor": "torch refuses .numpy() on a tensor that requires grad; use .detach().numpy()",
}


class AnswerServer:
    """A student's functions, living in a sandbox, callable from the trusted side.

    Started lazily and restarted after a call that hangs or kills the process; a cell that hangs
    or kills it while starting is skipped on the next start (and reported)."""

    def __init__(self, plan: list[dict], limits: sandbox.Limits, slot: int):
        self.plan, self.limits, self.slot = plan, limits, slot
        # One budget for everything this student's answers do (loading, restarts, every call), so
        # that no sequence of slow cells or chatty messages can hold a worker for longer.
        self.deadline = time.monotonic() + limits.wall_seconds
        self.skip: set[int] = set()
        self.cell_errors: dict[str, str] = {}  # cell name -> problem in words
        self.process: subprocess.Popen | None = None
        self._tmp = tempfile.TemporaryDirectory(prefix="bncourse-answers-")
        os.chmod(self._tmp.name, 0o755)
        self.starts = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        self._stop()
        self._tmp.cleanup()

    def _stop(self) -> None:
        sandbox.stop(self.process, self.slot)
        self.process = None
        for fd in getattr(self, "_fds", ()):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds = ()

    def _wait_until(self) -> float:
        """The deadline of the next message: a cell's or call's limit, within the student's budget."""
        now = time.monotonic()
        if now >= self.deadline:
            self._stop()
            raise AnswerError(f"the answers used up their time budget of {self.limits.wall_seconds:.0f} s")
        return min(now + self.limits.cell_seconds, self.deadline)

    def _start(self) -> None:
        names = {cell["index"]: cell["name"] for cell in self.plan}
        roles = {cell["index"]: cell["role"] for cell in self.plan}
        while True:
            self._wait_until()  # a spent budget ends here, before another sandbox is started
            self.starts += 1
            if self.starts > len(self.plan) + 3:
                raise AnswerError("the answers could not be loaded: the process kept dying")
            inputs = Path(self._tmp.name)
            (inputs / "cells.json").write_text(json.dumps({"cells": self.plan, "skip": sorted(self.skip)}))
            os.chmod(inputs / "cells.json", 0o644)
            request_read, request_write = os.pipe()
            reply_read, reply_write = os.pipe()
            with open(Path(self._tmp.name) / "stderr.txt", "wb") as stderr:
                self.process = sandbox.popen("serve_answers.py", ["/input/cells.json", str(request_read),
                                                                  str(reply_write)],
                                             limits=self.limits, slot=self.slot, inputs=inputs, answers_only=True,
                                             pass_fds=(request_read, reply_write), stdin=subprocess.DEVNULL,
                                             stdout=subprocess.DEVNULL, stderr=stderr)
            os.close(request_read)
            os.close(reply_write)
            os.set_blocking(request_write, False)  # sends time out if the sandbox stops reading
            self._fds = (request_write, reply_read)
            # The cells announce themselves in plan order; anything else is a protocol violation by
            # code running in the sandbox, and ends this start like a crash would.
            expected = [c["index"] for c in self.plan if c["index"] not in self.skip]
            current, heard = None, False
            try:
                while True:
                    event = wire.receive(reply_read, self._wait_until())
                    heard = True
                    kind, index = event.get("event"), event.get("index")
                    if kind == "ready" and current is None and not expected:
                        return
                    if kind == "cell" and current is None and expected and index == expected[0]:
                        current = expected.pop(0)
                    elif kind == "cell_done" and current is not None and index == current:
                        error = event.get("error")
                        if isinstance(error, str) and roles[current] != "setup":
                            self.cell_errors.setdefault(names[current], f"raised {error[:300]}")
                        current = None
                    else:
                        raise wire.WireError("unexpected message")
            except TimeoutError:
                if time.monotonic() >= self.deadline:
                    self._stop()
                    raise AnswerError(f"the answers used up their time budget of {self.limits.wall_seconds:.0f} s")
                problem = f"did not finish within {self.limits.cell_seconds} s"
            except (EOFError, wire.WireError):
                problem = "ended the process (os._exit, a crash, a resource limit, or tampering with the grader)"
            self._stop()
            if not heard:  # nothing of the student's ran yet: the sandbox itself failed
                lines = (Path(self._tmp.name) / "stderr.txt").read_text(errors="replace").strip().splitlines()
                raise SandboxFailure("the answers sandbox did not start" + (f": {lines[-1][:300]}" if lines else ""))
            if current is None:
                raise AnswerError("the answers could not be loaded: their process sent messages out of order "
                                  "(code in the notebook wrote to the grader's channel)")
            self.cell_errors.setdefault(names[current], problem + "; it was skipped")
            self.skip.add(current)

    def call(self, name: str, args: tuple, kwargs: dict):
        if self.process is None:
            self._start()
        request_write, reply_read = self._fds
        deadline = self._wait_until()
        try:
            wire.send(request_write, {"call": name, "args": wire.encode(list(args)), "kwargs": wire.encode(kwargs)},
                      deadline)
            reply = wire.receive(reply_read, deadline)
        except TimeoutError:
            self._stop()
            if time.monotonic() >= self.deadline:
                raise AnswerError(f"the answers used up their time budget of {self.limits.wall_seconds:.0f} s") \
                    from None
            raise AnswerError(f"{name} did not return within {self.limits.cell_seconds} s") from None
        except (EOFError, BrokenPipeError, wire.WireError):
            self._stop()
            raise AnswerError(f"calling {name} ended the process (os._exit, a crash, or a resource limit)") from None
        if "event" in reply:  # only the loader sends events: something in the sandbox wrote to the channel
            self._stop()
            raise AnswerError(f"calling {name} produced a message that is not a reply (tampering with the grader)")
        if reply.get("missing"):
            raise AnswerError(f"{name} is not defined: the cell that defines it raised an error or the function "
                              "was renamed")
        if reply.get("too_large"):
            raise AnswerError(f"{name} returned more than {wire.MAX_MESSAGE_BYTES // 2**20} MB of data")
        if not reply.get("ok"):
            raise AnswerError(f"{name} raised {self._describe_error(reply)}")
        try:
            result = wire.decode(reply.get("result"))
            _reflect(args, wire.decode(reply.get("args")))
            after = wire.decode(reply.get("kwargs"))
            _reflect([kwargs[k] for k in kwargs], [after.get(k) for k in kwargs] if isinstance(after, dict) else [])
        except wire.WireError as exc:
            raise AnswerError(f"{name} returned something that could not be read ({exc})") from None
        return result

    def _describe_error(self, reply: dict) -> str:
        """The exception a call raised, told without its message: the message is the student's text,
        made on the secret inputs (``raise ValueError(f"bad x {x}")``), and must not reach the feedback.
        Only a built-in type name and a line of one of the plan's cells can come through."""
        types = reply.get("types") if isinstance(reply.get("types"), list) else []
        kind = next((t for t in types[:64] if isinstance(t, str) and t in BUILTIN_EXCEPTIONS), "an exception")
        where = reply.get("where")
        sources = {cell["name"]: cell["source"] for cell in self.plan}
        if isinstance(where, list) and len(where) == 2 and isinstance(where[0], str) and where[0] in sources \
                and type(where[1]) is int and 1 <= where[1] <= sources[where[0]].count("\n") + 1:
            place = f" at line {where[1]} of the cell {where[0]!r}"
        else:
            place = " outside the notebook's cells (in a library it called)" if where == "library" else ""
        known = LIBRARY_ERRORS.get(reply.get("known")) if isinstance(reply.get("known"), str) else None
        cause = f": {known}" if known else ""
        return f"{kind}{place}{cause} (its message is not shown: it could contain the grader's secret inputs)"

    def function(self, name: str):
        def call(*args, **kwargs):
            return self.call(name, args, kwargs)
        call.__name__ = call.__qualname__ = name
        return call


class Answers:
    """``answers.batchnorm_forward(...)`` calls the student's function in the sandbox."""

    def __init__(self, server: AnswerServer):
        self._server = server

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        return self._server.function(name)
