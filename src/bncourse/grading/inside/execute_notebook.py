"""Execute a notebook cell by cell, whatever the cells do (inside the sandbox).

Usage: python execute_notebook.py NOTEBOOK CELL_TIMEOUT RESULT_FD

This is the run whose outputs the student sees in their feedback (nbgrader's "in-kernel" verdict).
The cells run in an IPython shell in a child process (:mod:`run_cells`): the same shell a Jupyter
kernel runs, without ZeroMQ and the kernel's start-up. It differs from nbgrader's Execute in what
it survives: a cell that ignores the interrupt sent at its time limit (a loop that swallows
KeyboardInterrupt), or that ends its process (``os._exit``, a crash, the memory limit), loses only
that cell. The shell is restarted, the cells before it are replayed silently, and the notebook goes
on. The executed notebook is written to RESULT_FD as JSON; the grader treats it as untrusted data.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import wire

GRACE_AFTER_INTERRUPT = 10  # seconds a timed-out cell gets to honour the interrupt
MAX_RESTARTS = 4
STARTUP_SECONDS = 120  # for the shell to start and reach the first cell


def _note(cell, text: str) -> None:
    cell.setdefault("outputs", []).append({"output_type": "error", "ename": "GradingNote", "evalue": text,
                                           "traceback": [text]})


def _source(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


class Shell:
    """One run of :mod:`run_cells` on the code cells from ``replay_before`` on."""

    def __init__(self, code_cells: list, replay_before: int):
        job_read, job_write = os.pipe()
        self.events, events_write = os.pipe()
        self.process = subprocess.Popen(
            [sys.executable, "-s", str(Path(__file__).with_name("run_cells.py")), str(job_read), str(events_write)],
            pass_fds=(job_read, events_write), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        os.close(job_read)
        os.close(events_write)
        try:
            wire.send(job_write, {"cells": code_cells, "replay_before": replay_before})
        except OSError:
            pass  # it died at once: seen as the end of its events
        finally:
            os.close(job_write)

    def next_event(self, deadline: float) -> dict | None:
        """The next event, None when the process ended; TimeoutError at the deadline."""
        try:
            return wire.receive(self.events, deadline)
        except (EOFError, wire.WireError):
            return None

    def interrupt(self) -> None:
        try:
            self.process.send_signal(signal.SIGINT)
        except ProcessLookupError:
            pass

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        os.close(self.events)


def _run_once(nb: dict, code: list[int], replay_before: int, skipped: set, timeout: int) -> tuple[str, int | None]:
    """Run the cells once; returns ("finished", None) or (why it stopped, the cell it stopped in)."""
    shell = Shell([[i, _source(nb["cells"][i])] for i in code if i not in skipped], replay_before)
    current, interrupted = None, False
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            try:
                event = shell.next_event(deadline)
            except TimeoutError:
                if current is None:
                    return "died", None
                if not interrupted:
                    shell.interrupt()
                    interrupted, deadline = True, time.monotonic() + GRACE_AFTER_INTERRUPT
                    continue
                return "timeout", current
            if event is None:
                return "died", current
            if event.get("finished"):
                return "finished", None
            if isinstance(event.get("begin"), int):
                current, interrupted = event["begin"], False
                deadline = time.monotonic() + timeout
            elif event.get("done") == current and current is not None:
                if current >= replay_before:
                    cell = nb["cells"][current]
                    outputs = event.get("outputs")
                    cell["outputs"] = outputs if isinstance(outputs, list) else []
                    count = event.get("execution_count")
                    cell["execution_count"] = count if isinstance(count, int) else None
                current, deadline = None, time.monotonic() + STARTUP_SECONDS
    finally:
        shell.close()


def execute(nb: dict, timeout: int) -> None:
    code = [i for i, cell in enumerate(nb["cells"]) if cell.get("cell_type") == "code"]
    for i in code:
        nb["cells"][i]["outputs"], nb["cells"][i]["execution_count"] = [], None
    skipped, replay_before = set(), 0
    for _ in range(MAX_RESTARTS + 1):
        why, cell = _run_once(nb, code, replay_before, skipped, timeout)
        if why == "finished":
            return
        if cell is None:  # it stopped between cells: at start-up, or killed by a thread of a cell
            for i in code:
                if i >= replay_before and i not in skipped and not nb["cells"][i].get("outputs"):
                    _note(nb["cells"][i], "not run: the notebook's process stopped before this cell")
            return
        if why == "died":
            _note(nb["cells"][cell], "the kernel died while this cell ran (os._exit, a crash, or the memory limit); "
                                     "it was restarted and the notebook continued after this cell")
        else:
            _note(nb["cells"][cell], f"this cell ran past the {timeout} s limit and ignored the interrupt; the "
                                     "kernel was restarted and the notebook continued after this cell")
        skipped.add(cell)
        replay_before = cell + 1
    for i in code:
        if i >= replay_before and not nb["cells"][i].get("outputs"):
            _note(nb["cells"][i], "not run: the kernel failed too many times")


def main() -> None:
    path, timeout, result_fd = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    private = os.dup(result_fd)  # not inheritable: the shell (a child process) must not get it
    os.close(result_fd)
    result_fd = private
    with open(path, encoding="utf-8") as f:
        nb = json.load(f)
    execute(nb, timeout)
    data = json.dumps(nb).encode("utf-8")
    view = memoryview(data)
    while view:
        view = view[os.write(result_fd, view):]
    os.close(result_fd)


if __name__ == "__main__":
    main()
