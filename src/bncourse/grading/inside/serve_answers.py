"""Run a student's answer cells, then call their functions on request (inside the sandbox).

Usage: python serve_answers.py CELLS_JSON REQUEST_FD REPLY_FD

CELLS_JSON lists the code cells to run, in order: the exercise's setup cells and the student's
answer and extra cells, never the test cells. The trusted grader then sends calls such as
``{"call": "batchnorm_forward", "args": [...], "kwargs": {...}}`` and gets back the value the
function returned plus the arguments as they are after the call (so that in-place updates, like
running statistics stored into ``bn_param``, are seen outside), or, when it raised, the exception's
classes and the line of the cell it came from (never its message, which the secret inputs could be
in). The verdict is made outside: nothing this process says is trusted.

Events sent while starting: ``{"event": "cell", "index": i}`` before each cell,
``{"event": "cell_done", "index": i, "error": str|None}`` after it, then ``{"event": "ready"}``.
A cell that never finishes or ends the process is detected by the grader from the missing
``cell_done``; it restarts this program with that cell in the skip list.
"""

import ast
import json
import os
import sys

import wire


# Magics that only measure or capture: the code they wrap still runs here.
RUNS_ITS_CODE = {"time", "timeit", "capture", "prun"}


class _Shell:
    """Stands in for IPython here. Timing and capturing magics run the code they wrap; the others
    (shell commands, %matplotlib, ...) do nothing: answers do not need them."""

    def __init__(self, namespace: dict):
        self._namespace = namespace

    def _run(self, code: str) -> None:
        exec(compile(_python(code), "<magic>", "exec"), self._namespace)

    def run_cell_magic(self, name, line, cell):
        if name in RUNS_ITS_CODE:
            self._run(cell)

    def run_line_magic(self, name, line, *args):
        if name in RUNS_ITS_CODE:
            # The line may start with the magic's options (-n 3 ...); they are not code.
            self._run(line.split(" -- ", 1)[-1] if name == "timeit" else line)

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


def _python(source: str) -> str:
    # IPython's own translation, so that only real magics change (not a continued line starting with %).
    from IPython.core.inputtransformer2 import TransformerManager

    code = TransformerManager().transform_cell(source)
    # It drops leading blank lines; put them back, so that line numbers are the cell's own.
    dropped = _leading_blank_lines(source) - _leading_blank_lines(code)
    return "\n" * dropped + code if dropped > 0 else code


def _leading_blank_lines(text: str) -> int:
    count = 0
    for line in text.splitlines():
        if line.strip():
            break
        count += 1
    return count


def _describe(exc: BaseException) -> str:
    try:
        text = str(exc)
    except BaseException:  # noqa: BLE001 - an exception whose message itself fails
        text = "(no message)"
    return f"{type(exc).__name__}: {text}"[:500]


# Library errors whose cause the grader can name, each by a fixed code: the message itself is never
# sent (torch's quote the shapes of the secret inputs). The grader's words for each code are in
# ``answer_server.LIBRARY_ERRORS``. A student who raises one of these texts only gets its hint.
KNOWN_LIBRARY_ERRORS = (
    ("torch_gradient_count", "returned an incorrect number of gradients"),
    ("torch_gradient_shape", "returned an invalid gradient at index"),
    ("torch_gradient_not_a_tensor", "expected Variable or None (got"),
    ("torch_numpy_of_grad_tensor", "Can't call numpy() on Tensor that requires grad"),
)


def _known_library_error(exc: BaseException) -> str | None:
    try:
        message = str(exc)[:1000] if type(exc).__str__ is BaseException.__str__ else ""
    except BaseException:  # noqa: BLE001 - a message that misbehaves
        return None
    return next((code for code, text in KNOWN_LIBRARY_ERRORS if text in message), None)


def _type_and_place(exc: BaseException) -> dict:
    """What the grader may say about an exception raised during a call: its classes (the grader names
    the first built-in one), the innermost line of a notebook cell it came through, or "library"
    when none, and the code of a known library error. Never its message: the function was called on
    the grader's secret inputs."""
    try:
        types = [cls.__name__ for cls in type(exc).__mro__][:64]
    except BaseException:  # noqa: BLE001 - a class that misbehaves
        types = []
    where, tb = "library", exc.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename.startswith("<cell ") and filename.endswith(">"):
            where = [filename[len("<cell "):-1], tb.tb_lineno]
        tb = tb.tb_next
    return {"types": types, "where": where, "known": _known_library_error(exc)}


def run_cell(cell: dict, namespace: dict):
    """Run one cell; returns the error in words, or None."""
    try:
        tree = ast.parse(_python(cell["source"]), filename=f"<cell {cell['name']}>")
    except (SyntaxError, ValueError) as exc:
        return _describe(exc)
    if cell["role"] == "setup":
        # Statement by statement: the course package is hidden here, so its import fails,
        # and the other imports of the setup cell must still happen.
        error = None
        for statement in tree.body:
            try:
                exec(compile(ast.Module([statement], []), f"<cell {cell['name']}>", "exec"), namespace)
            except Exception as exc:  # noqa: BLE001
                error = error or _describe(exc)
        return None if error and "bncourse" in error else error
    try:
        exec(compile(tree, f"<cell {cell['name']}>", "exec"), namespace)
    except BaseException as exc:  # noqa: BLE001 - SystemExit and KeyboardInterrupt included
        return _describe(exc)
    return None


def serve(namespace: dict, requests: int, replies: int) -> None:
    while True:
        try:
            request = wire.receive(requests)
        except EOFError:
            return
        name = request.get("call")
        function = namespace.get(name) if isinstance(name, str) else None
        if not callable(function):
            wire.send(replies, {"ok": False, "missing": True})
            continue
        try:
            args, kwargs = wire.decode(request["args"]), wire.decode(request["kwargs"])
            result = function(*args, **kwargs)
            reply = {"ok": True, "result": wire.encode(result), "args": wire.encode(args),
                     "kwargs": wire.encode(kwargs)}
        except BaseException as exc:  # noqa: BLE001 - the student's error, reported by type and place only
            reply = {"ok": False, **_type_and_place(exc)}
        wire.send(replies, reply)


def main() -> None:
    cells_path, requests, replies = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    with open(cells_path, encoding="utf-8") as f:
        plan = json.load(f)
    # Keep the channel on private descriptors and silence the student's prints: stdout is not
    # part of the protocol, and nothing printed here is shown to anyone.
    requests, replies = os.dup(requests), os.dup(replies)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    namespace = {"__name__": "__main__", "__builtins__": __builtins__}
    shell = _Shell(namespace)
    namespace["get_ipython"] = lambda: shell
    skip = set(plan["skip"])
    for cell in plan["cells"]:
        if cell["index"] in skip:
            continue
        wire.send(replies, {"event": "cell", "index": cell["index"]})
        error = run_cell(cell, namespace)
        wire.send(replies, {"event": "cell_done", "index": cell["index"], "error": error})
    # The locked cells (setup, given wrappers) once more, last: the grader calls the given wrappers, so a
    # definition of the same name in an answer or an added cell must not replace them.
    for cell in plan["cells"]:
        if cell["role"] == "setup" and cell["index"] not in skip:
            run_cell(cell, namespace)
    wire.send(replies, {"event": "ready"})
    serve(namespace, requests, replies)


if __name__ == "__main__":
    main()
