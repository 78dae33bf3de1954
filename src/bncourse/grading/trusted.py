"""Verdicts the grader can trust, and the untrusted run whose outputs students see.

Two sandboxed runs per submission (see :mod:`.sandbox`):

* :func:`execute_notebook` runs the whole rebuilt notebook in a Jupyter kernel, as nbgrader would.
  Its outputs go into the feedback and give nbgrader's usual *in-kernel* verdict (a test cell
  passes when it shows no error). Student code runs in that kernel, so it can fake this verdict
  (``np.allclose = lambda *a, **k: True``, a patched ``run_cell``, a ``numpy.py`` of its own).
* :class:`AnswerServer` runs only the student's setup, answer and added cells in a second sandbox
  where the course package, with its reference implementations, is hidden, and calls the
  student's functions on request. The exercise's trusted checks (``assignments/<name>.py``) run
  *here, outside the sandbox*: they draw secret inputs from a per-student seed, send each call
  across, and compare what comes back with the reference implementations. Nothing in the
  student's process takes part in the comparison, so patching it changes nothing.

The trusted verdict is what counts; where the two disagree the report says so.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import hmac
import json
import os
import select
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import sandbox
from .inside import wire

MAX_EXECUTED_BYTES = 20 * 2**20
MAX_TEXT_CHARS = 10_000
MAX_IMAGE_CHARS = 2 * 2**20
ALLOWED_DATA = ("text/plain", "image/png", "image/jpeg")  # no HTML or JavaScript from students


class AnswerError(AssertionError):
    """The student's function could not be called, raised, or did not return in time."""


class SandboxFailure(RuntimeError):
    """The sandbox itself did not start: a fault of the grading machine, not of the submission."""


@dataclass
class CellVerdict:
    passed: bool
    message: str = ""


def student_seed(secret: bytes, assignment: str, student: str) -> int:
    """Secret per student and assignment: a student cannot predict the inputs, and a re-run of the
    grader draws the same ones (so grading is reproducible)."""
    digest = hmac.new(secret, f"{assignment}/{student}".encode(), hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big")


def _kill(process: subprocess.Popen | None, slot: int | None = None) -> None:
    if process and process.poll() is None:
        process.kill()  # bwrap dies; with it the sandbox's PID namespace and everything in it
    if process:
        process.wait()
        if slot is not None:
            sandbox.wait_until_gone(slot)


# ---------------------------------------------------------------------------------------------
# The in-kernel run
# ---------------------------------------------------------------------------------------------

def execute_notebook(notebook: dict, limits: sandbox.Limits, slot: int) -> tuple[bytes | None, str]:
    """Run the notebook in a sandboxed kernel. Returns (executed notebook JSON or None, note)."""
    with tempfile.TemporaryDirectory(prefix="bncourse-exec-") as tmp:
        inputs = Path(tmp)
        (inputs / "notebook.ipynb").write_text(json.dumps(notebook), encoding="utf-8")
        os.chmod(tmp, 0o755)
        read_end, write_end = os.pipe()
        cmd = sandbox.command("execute_notebook.py", ["/input/notebook.ipynb", str(limits.cell_seconds),
                                                      str(write_end)], limits=limits, slot=slot, inputs=inputs)
        process = subprocess.Popen(cmd, pass_fds=(write_end,), stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        os.close(write_end)
        deadline = time.monotonic() + limits.wall_seconds
        chunks, size, note = [], 0, ""
        try:
            while True:
                # One read per select: it never blocks, so the deadline always holds.
                ready, _, _ = select.select([read_end], [], [], max(0.0, deadline - time.monotonic()))
                if not ready:
                    raise TimeoutError
                chunk = os.read(read_end, 2**20)
                if not chunk:
                    break
                size += len(chunk)
                if size > MAX_EXECUTED_BYTES:
                    note = f"its outputs exceeded {MAX_EXECUTED_BYTES // 2**20} MB"
                    break
                chunks.append(chunk)
        except TimeoutError:
            note = f"it did not finish within {limits.wall_seconds:.0f} s"
        finally:
            os.close(read_end)
            _kill(process, slot)
        if note:
            return None, note
        data = b"".join(chunks)
        if not data:
            error = process.stderr.read().decode(errors="replace").strip().splitlines() if process.stderr else []
            return None, "the notebook run ended without a result" + (f" ({error[-1][:200]})" if error else "")
        return data, ""


def _clean_output(output) -> dict | None:
    """A student's output reduced to what is safe to show: text and images, capped."""
    if not isinstance(output, dict):
        return None
    kind = output.get("output_type")
    if kind == "stream":
        name = output.get("name") if output.get("name") in ("stdout", "stderr") else "stdout"
        return {"output_type": "stream", "name": name, "text": _cap(output.get("text"))}
    if kind == "error":
        ename, evalue = _cap(output.get("ename"), 200), _cap(output.get("evalue"))
        # Only the last line of a traceback: the rest could print the source of hidden tests.
        return {"output_type": "error", "ename": ename, "evalue": evalue, "traceback": [f"{ename}: {evalue}"]}
    if kind in ("execute_result", "display_data"):
        data = output.get("data") if isinstance(output.get("data"), dict) else {}
        kept = {}
        for mime in ALLOWED_DATA:
            value = data.get(mime)
            if mime == "text/plain" and value is not None:
                kept[mime] = _cap(value)
            elif isinstance(value, str) and len(value) <= MAX_IMAGE_CHARS and all(
                    ch.isalnum() or ch in "+/=\n" for ch in value):
                kept[mime] = value
        if not kept:
            return None
        cleaned = {"output_type": kind, "data": kept, "metadata": {}}
        if kind == "execute_result":
            count = output.get("execution_count")
            cleaned["execution_count"] = count if isinstance(count, int) else None
        return cleaned
    return None


def _cap(text, limit: int = MAX_TEXT_CHARS) -> str:
    if isinstance(text, list):
        text = "".join(t for t in text if isinstance(t, str))
    text = text if isinstance(text, str) else ""
    return text if len(text) <= limit else text[:limit] + f"\n… [{len(text) - limit} more characters cut]"


def merge_outputs(rebuilt: dict, executed: bytes | None) -> tuple[dict, str]:
    """The rebuilt notebook with the (untrusted) outputs of the in-kernel run copied in, cleaned.

    Sources and metadata always come from ``rebuilt``: the run can only contribute outputs."""
    notebook = copy.deepcopy(rebuilt)
    if executed is None:
        return notebook, ""
    try:
        theirs = json.loads(executed.decode("utf-8"))
        cells = theirs["cells"]
        if not isinstance(cells, list) or len(cells) != len(notebook["cells"]):
            raise ValueError("cell count changed")
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, RecursionError):
        return notebook, "the notebook run returned an unreadable notebook"
    for cell, ran in zip(notebook["cells"], cells):
        if cell["cell_type"] != "code" or not isinstance(ran, dict):
            continue
        outputs = ran.get("outputs") if isinstance(ran.get("outputs"), list) else []
        cell["outputs"] = [o for o in (_clean_output(x) for x in outputs[:100]) if o]
        count = ran.get("execution_count")
        cell["execution_count"] = count if isinstance(count, int) else None
    return notebook, ""


def in_kernel_verdicts(notebook: dict) -> dict[str, bool]:
    """nbgrader's own rule: a test cell passes when it shows no error (stderr is ignored)."""
    verdicts = {}
    for cell in notebook["cells"]:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("grade") and cell["cell_type"] == "code":
            verdicts[meta["grade_id"]] = not any(o["output_type"] == "error" for o in cell.get("outputs", []))
    return verdicts


# ---------------------------------------------------------------------------------------------
# The trusted checks
# ---------------------------------------------------------------------------------------------

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
        _kill(self.process, self.slot)
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
            cmd = sandbox.command("serve_answers.py", ["/input/cells.json", str(request_read), str(reply_write)],
                                  limits=self.limits, slot=self.slot, inputs=inputs, answers_only=True)
            with open(Path(self._tmp.name) / "stderr.txt", "wb") as stderr:
                self.process = subprocess.Popen(cmd, pass_fds=(request_read, reply_write), stdin=subprocess.DEVNULL,
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
            raise AnswerError(f"{name} raised {str(reply.get('error'))[:500]}")
        try:
            result = wire.decode(reply.get("result"))
            _reflect(args, wire.decode(reply.get("args")))
            after = wire.decode(reply.get("kwargs"))
            _reflect([kwargs[k] for k in kwargs], [after.get(k) for k in kwargs] if isinstance(after, dict) else [])
        except wire.WireError as exc:
            raise AnswerError(f"{name} returned something that could not be read ({exc})") from None
        return result

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


def run_trusted_checks(checks: dict, plan: list[dict], seed: int, limits: sandbox.Limits,
                       slot: int) -> tuple[dict[str, CellVerdict], dict[str, str]]:
    """Each test cell's trusted verdict, and the problems of the student's cells in words."""
    from .. import checks as check_helpers

    verdicts = {}
    with AnswerServer(plan, limits, slot) as server, check_helpers.quiet():
        answers = Answers(server)
        for number, (grade_id, check) in enumerate(checks.items()):
            rng = np.random.default_rng([seed, number])
            try:
                check(answers, rng)
                verdicts[grade_id] = CellVerdict(True)
            except AssertionError as exc:  # CheckFailed and AnswerError
                verdicts[grade_id] = CellVerdict(False, str(exc).strip())
            except SandboxFailure:
                raise  # the grader's fault: the caller keeps the previous grade and retries later
            except Exception as exc:  # noqa: BLE001 - e.g. a check choking on a strange return value
                verdicts[grade_id] = CellVerdict(False, f"{type(exc).__name__}: {exc}"[:500])
        return verdicts, dict(server.cell_errors)
