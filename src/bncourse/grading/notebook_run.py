"""The in-kernel run: the whole rebuilt notebook in a sandboxed IPython shell, as nbgrader's Execute would run it.

Its outputs go into the feedback and give nbgrader's usual *in-kernel* verdict (a test cell passes
when it shows no error). Student code runs in that kernel, so it can fake this verdict
(``np.allclose = lambda *a, **k: True``, a patched ``run_cell``, a ``numpy.py`` of its own): the
verdict that counts is the trusted one (:mod:`.trusted`). The course package is importable here (the
visible checks need it), so this sandbox must share nothing with the answers sandbox
(see :mod:`.seccomp`).
"""

from __future__ import annotations

import copy
import json
import os
import select
import subprocess
import tempfile
import time
from pathlib import Path

from . import sandbox

MAX_EXECUTED_BYTES = 20 * 2**20
MAX_TEXT_CHARS = 10_000
MAX_OUTPUTS = 100  # per cell
MAX_IMAGE_CHARS = 2 * 2**20
ALLOWED_DATA = ("text/plain", "image/png", "image/jpeg")  # no HTML or JavaScript from students


def execute_notebook(notebook: dict, limits: sandbox.Limits, slot: int) -> tuple[bytes | None, str]:
    """Run the notebook in a sandboxed IPython shell. Returns (executed notebook JSON or None, note)."""
    with tempfile.TemporaryDirectory(prefix="bncourse-exec-") as tmp:
        inputs = Path(tmp)
        (inputs / "notebook.ipynb").write_text(json.dumps(notebook), encoding="utf-8")
        os.chmod(tmp, 0o755)
        read_end, write_end = os.pipe()
        process = sandbox.popen("execute_notebook.py", ["/input/notebook.ipynb", str(limits.cell_seconds),
                                                        str(write_end)], limits=limits, slot=slot, inputs=inputs,
                                pass_fds=(write_end,), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
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
            sandbox.stop(process, slot)
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
        # The first outputs, and the cell's error even after many of them: the error fails the cell.
        errors = [x for x in outputs[MAX_OUTPUTS:] if isinstance(x, dict) and x.get("output_type") == "error"]
        cell["outputs"] = [o for o in (_clean_output(x) for x in outputs[:MAX_OUTPUTS] + errors[-1:]) if o]
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
