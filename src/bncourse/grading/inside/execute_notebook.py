"""Execute a notebook in a Jupyter kernel, cell by cell, whatever the cells do (inside the sandbox).

Usage: python execute_notebook.py NOTEBOOK CELL_TIMEOUT RESULT_FD

This is the run whose outputs the student sees in their feedback (nbgrader's "in-kernel" verdict).
It differs from nbgrader's Execute in what it survives: a cell that ignores the interrupt sent at
its time limit (a loop that swallows KeyboardInterrupt), or that kills the kernel (``os._exit``),
loses only that cell. The kernel is restarted, the cells before it are replayed silently, and the
notebook goes on. The executed notebook is written to RESULT_FD as JSON; the grader treats it as
untrusted data.
"""

import asyncio
import copy
import json
import os
import sys

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import DeadKernelError

GRACE_AFTER_INTERRUPT = 10  # seconds a timed-out cell gets to honour the interrupt
MAX_RESTARTS = 4


def _note(cell, text: str) -> None:
    cell.outputs.append(nbformat.v4.new_output("error", ename="GradingNote", evalue=text, traceback=[text]))


async def execute(nb, timeout: int) -> None:
    client = NotebookClient(
        nb, timeout=timeout, interrupt_on_timeout=True, allow_errors=True, kernel_name="python3",
        startup_timeout=120, shutdown_kernel="immediate",
        extra_arguments=["--HistoryManager.hist_file=:memory:", "--InteractiveShell.xmode=Minimal"],
        resources={"metadata": {"path": os.getcwd()}})
    code = [i for i, cell in enumerate(nb.cells) if cell.cell_type == "code"]
    skipped, start = set(), 0
    for _ in range(MAX_RESTARTS + 1):
        async with client.async_setup_kernel():
            try:
                for i in code:
                    if i in skipped:
                        continue
                    cell = nb.cells[i] if i >= start else copy.deepcopy(nb.cells[i])  # replays are silent
                    await asyncio.wait_for(client.async_execute_cell(cell, i), timeout + GRACE_AFTER_INTERRUPT)
                return
            except DeadKernelError:
                _note(nb.cells[i], "the kernel died while this cell ran (os._exit, a crash, or the memory limit); "
                                   "it was restarted and the notebook continued after this cell")
            except asyncio.TimeoutError:
                _note(nb.cells[i], f"this cell ran past the {timeout} s limit and ignored the interrupt; the kernel "
                                   "was restarted and the notebook continued after this cell")
            skipped.add(i)
            start = i + 1
    for i in code:
        if i >= start and not nb.cells[i].get("outputs"):
            _note(nb.cells[i], "not run: the kernel failed too many times")


def main() -> None:
    path, timeout, result_fd = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    private = os.dup(result_fd)  # not inheritable: the kernel (a child process) must not get it
    os.close(result_fd)
    result_fd = private
    nb = nbformat.read(path, as_version=4)
    asyncio.run(execute(nb, timeout))
    data = json.dumps(nb).encode("utf-8")
    view = memoryview(data)
    while view:
        view = view[os.write(result_fd, view):]
    os.close(result_fd)


if __name__ == "__main__":
    main()
