"""The notebook run without a Jupyter kernel (``grading/inside/execute_notebook.py``).

It must give the outputs a Jupyter kernel gives (the feedback shows them, and nbgrader's in-kernel
verdict reads them), so one notebook with every kind of output runs both ways, through the grader's
sandbox and through nbclient with a real kernel, and the outputs are compared. Then what only the
grader's run survives: a cell that swallows the interrupt, a cell that ends its process.
"""

import nbformat
from nbclient import NotebookClient

from bncourse.grading import notebook_run, sandbox
from conftest import REPO

LIMITS = sandbox.Limits(cell_seconds=3, wall_seconds=90)

EVERY_KIND_OF_OUTPUT = [
    "x = 6\nx * 7",
    "print('before'); from IPython.display import display, Markdown; display(Markdown('**bold**')); print('after')",
    "import sys\nprint('to stderr', file=sys.stderr)",
    "raise ValueError('boom')",
    "def broken(:\n    pass",
    "from IPython.display import clear_output\nprint('gone'); clear_output(); print('kept')",
    "import numpy as np\nnp.arange(3)",
    "%time y = x + 1\ny",
    "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3]); plt.show()",
    "from bnkit._core import CheckFailed\nraise CheckFailed('\\nmy_function: the output is wrong.')",
    "x;",
    "print(x)",
]


def _notebook(sources):
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources],
                                    metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                             "language": "python"}})


def _graders_run(nb) -> nbformat.NotebookNode:
    executed, note = notebook_run.execute_notebook(nb, LIMITS, slot=0)
    assert note == ""
    return nbformat.reads(executed.decode(), as_version=4)


def _summary(output) -> tuple:
    """What the feedback and the verdict use of an output; the image's bytes and timings vary."""
    kind = output["output_type"]
    if kind == "stream":
        text = output["text"]
        return kind, output["name"], "CPU times" if text.startswith("CPU times") else text
    if kind == "error":
        return kind, output["ename"], output["evalue"].split("(")[0]
    return kind, tuple(sorted(output["data"])), output["data"].get("text/plain", "")[:40] if "image/png" not in \
        output["data"] else "figure", output.get("execution_count")


def test_the_outputs_are_those_of_a_jupyter_kernel(tmp_path):
    nb = _notebook(EVERY_KIND_OF_OUTPUT)
    ours = _graders_run(nb)
    # The kernel the grader used before: ipykernel, with inline figures as Jupyter shows them, and the
    # student kit importable as in the sandbox.
    theirs = _notebook(EVERY_KIND_OF_OUTPUT)
    NotebookClient(theirs, timeout=60, allow_errors=True, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}},
                   extra_arguments=["--InteractiveShell.xmode=Minimal",
                                    "--IPKernelApp.matplotlib=inline"]).execute()
    for mine, kernel, source in zip(ours.cells, theirs.cells, EVERY_KIND_OF_OUTPUT):
        assert [_summary(o) for o in mine.outputs] == [_summary(o) for o in kernel.outputs], source
        assert mine.execution_count == kernel.execution_count, source


def test_a_cell_that_swallows_the_interrupt_or_ends_its_process_costs_only_that_cell():
    nb = _notebook([
        "import time\nvalue = 1",
        "while True:\n    try:\n        time.sleep(0.1)\n    except KeyboardInterrupt:\n        pass",
        "value += 1\nprint(value)",
        "import os\nos._exit(3)",
        "print(value * 10)",
        "time.sleep(60)",  # honours the interrupt: an error in this cell only, no restart
        "print('end', value)",
    ])
    cells = _graders_run(nb).cells
    assert "ignored the interrupt" in cells[1].outputs[-1]["evalue"]
    assert cells[2].outputs[0]["text"] == "2\n"
    assert "kernel died" in cells[3].outputs[-1]["evalue"]
    # The cells before were replayed silently after each restart: value is 2 again, not 3.
    assert cells[4].outputs[0]["text"] == "20\n"
    assert cells[5].outputs[-1]["ename"] == "KeyboardInterrupt"
    assert cells[6].outputs[0]["text"] == "end 2\n"


def test_a_flood_of_output_is_capped_in_the_sandbox():
    cells = _graders_run(_notebook(["for i in range(3_000_000):\n    print('spam spam spam')", "print('next')"])).cells
    assert len(cells[0].outputs[0]["text"]) <= 1_000_000
    assert cells[1].outputs[0]["text"] == "next\n"


def test_an_error_is_kept_after_a_flood_of_output_and_a_huge_message():
    cells = _graders_run(_notebook(["for i in range(200):\n    print(i, flush=True)\n    display(i)\n"
                                    "raise ValueError('x' * 10_000_000)"])).cells
    assert cells[0].outputs[-1]["ename"] == "ValueError"


def test_the_released_exercise_fails_only_where_the_student_has_work_to_do():
    exercise = "ex02_batchnorm_forward"
    released = nbformat.read(REPO / "exercises" / exercise / f"{exercise}.ipynb", as_version=4)
    cells = _graders_run(released).cells
    errors = [o["ename"] for c in cells if c.cell_type == "code" for o in c.outputs if o["output_type"] == "error"]
    assert errors and set(errors) <= {"CheckFailed", "NotImplementedError"}
