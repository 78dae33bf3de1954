"""Run notebook cells in an IPython shell, as a Jupyter kernel would, without the kernel (inside the sandbox).

Usage: python run_cells.py JOB_FD EVENTS_FD

Started by :mod:`execute_notebook`, which sends one job on JOB_FD (:mod:`wire` format)::

    {"cells": [[index, source], ...], "replay_before": i}

Cells whose index is below ``replay_before`` are replayed silently (their outputs were recorded by
an earlier run that this one restarts after). For every cell this program sends
``{"begin": index}``, then ``{"done": index, "outputs": [...], "execution_count": n}`` with the
outputs in nbformat's form (streams, rich displays, the result, errors), and ``{"finished": true}``
at the end. It does what ipykernel does for a notebook run (the same IPython shell, display
machinery, tracebacks and inline figures) minus ZeroMQ and the kernel process's own start-up,
which were most of the time a short notebook took. Everything it sends is untrusted.
"""

import io
import os
import sys

import wire

MAX_STREAM_CHARS = 1_000_000  # per stream per cell; the grader keeps far less
MAX_OUTPUTS = 100  # per cell, as the grader keeps
MAX_CELL_BYTES = 6 * 2**20  # everything a cell shows, so that its message fits on the wire
MAX_ERROR_CHARS = 10_000  # an error's message and each traceback line, as the grader keeps
INLINE_FIGURES = "module://matplotlib_inline.backend_inline"


class Outputs:
    """The outputs of the cell that is running, in the order they were produced."""

    def __init__(self):
        self.items, self.size, self.recording = [], 0, True
        self.execution_count = None  # of the cell that is running, as Jupyter numbers it

    def reset(self, recording: bool) -> list:
        items, self.items, self.size, self.recording = self.items, [], 0, recording
        return items

    def _add(self, output: dict, size: int) -> None:
        if self.recording and len(self.items) < MAX_OUTPUTS and self.size + size <= MAX_CELL_BYTES:
            self.items.append(output)
            self.size += size

    def stream(self, name: str, text: str) -> None:
        if not self.recording or not text:
            return
        last = self.items[-1] if self.items else None
        if last is not None and last["output_type"] == "stream" and last["name"] == name:
            room = min(MAX_STREAM_CHARS - len(last["text"]), MAX_CELL_BYTES - self.size)
            last["text"] += text[:max(room, 0)]
            self.size += min(len(text), max(room, 0))
        else:
            text = text[:MAX_STREAM_CHARS]
            self._add({"output_type": "stream", "name": name, "text": text}, len(text))

    def rich(self, output_type: str, data: dict, **extra) -> None:
        data = {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)}
        self._add({"output_type": output_type, "data": data, "metadata": {}, **extra},
                  sum(len(v) for v in data.values()))

    def error(self, ename: str, evalue: str, traceback: list) -> None:
        # Always kept, whatever the cell printed before: an error is what fails a test cell.
        if self.recording:
            self.items.append({"output_type": "error", "ename": ename[:200], "evalue": evalue[:MAX_ERROR_CHARS],
                               "traceback": [line[:MAX_ERROR_CHARS] for line in traceback[-20:]]})

    def clear(self) -> None:
        if self.recording:
            self.items, self.size = [], 0


OUTPUTS = Outputs()


class Stream:
    """sys.stdout or sys.stderr of the notebook: what is written becomes a stream output."""

    encoding, errors = "utf-8", "replace"

    def __init__(self, name: str):
        self.name = name

    def write(self, text) -> int:
        text = text if isinstance(text, str) else str(text)
        OUTPUTS.stream(self.name, text)
        return len(text)

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        raise io.UnsupportedOperation("the notebook's output stream has no file descriptor")

    @property
    def closed(self) -> bool:
        return False


def make_shell():
    """An IPython shell whose displays, results and tracebacks go to :data:`OUTPUTS`."""
    from IPython.core.displayhook import DisplayHook
    from IPython.core.displaypub import DisplayPublisher
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets import Type
    from traitlets.config import Config

    class Publisher(DisplayPublisher):
        def publish(self, data, metadata=None, source=None, *, transient=None, update=False, **kwargs):
            OUTPUTS.rich("display_data", data or {})

        def clear_output(self, wait=False):
            OUTPUTS.clear()

    class ResultHook(DisplayHook):
        # Like ipykernel's: the result becomes an execute_result output, with no "Out[n]:" prompt.
        def start_displayhook(self):
            pass

        def write_output_prompt(self):
            pass

        def write_format_data(self, format_dict, md_dict=None):
            OUTPUTS.rich("execute_result", format_dict, execution_count=OUTPUTS.execution_count)

        def finish_displayhook(self):
            pass

    class Shell(InteractiveShell):
        displayhook_class = Type(ResultHook)
        display_pub_class = Type(Publisher)

        def enable_gui(self, gui=None):
            pass  # `%matplotlib inline` needs no event loop; interactive backends cannot work here anyway

        def _showtraceback(self, etype, evalue, stb):
            try:
                value = str(evalue)
            except Exception:  # noqa: BLE001 - an exception whose message itself fails
                value = "(no message)"
            OUTPUTS.error(getattr(etype, "__name__", "Error"), value, [str(line) for line in stb])

    config = Config()
    config.HistoryManager.enabled = False
    config.InteractiveShell.xmode = "Minimal"
    config.InteractiveShell.colors = "NoColor"
    return Shell.instance(config=config)


def main() -> None:
    job_fd, events = int(sys.argv[1]), int(sys.argv[2])
    job = wire.receive(job_fd)
    os.close(job_fd)
    events = os.dup(events)  # off the low numbers that the notebook's code could write to by accident
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):  # what bypasses sys.stdout (C code, os.write, subprocesses) is not shown
        os.dup2(devnull, fd)
    os.environ["MPLBACKEND"] = INLINE_FIGURES  # figures become PNG displays, as in Jupyter
    shell = make_shell()
    sys.stdout, sys.stderr = Stream("stdout"), Stream("stderr")
    for index, source in job["cells"]:
        replay = index < job["replay_before"]
        OUTPUTS.reset(recording=not replay)
        OUTPUTS.execution_count = None if replay else shell.execution_count
        wire.send(events, {"begin": index})
        shell.run_cell(source, store_history=not replay, silent=replay)
        outputs = OUTPUTS.reset(recording=False)
        wire.send(events, {"done": index, "outputs": outputs, "execution_count": OUTPUTS.execution_count})
    wire.send(events, {"finished": True})
    os._exit(0)  # no clean-up code of the notebook's may run after the last message


if __name__ == "__main__":
    main()
