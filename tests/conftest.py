"""Shared fixtures: paths of the repository and helpers to build notebooks for tests."""

import functools
import http.server
import subprocess
import sys
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))  # tests/wrong_answers/, tests/submissions.py

ASSIGNMENTS = sorted(p.name for p in (REPO / "solutions").iterdir() if p.is_dir())


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def site(tmp_path_factory) -> Path:
    """The book built into a fresh folder, with Sphinx warnings as errors: no execution cache, so every
    chapter is executed. Shared by the book tests and the student-kit tests."""
    out = tmp_path_factory.mktemp("book")
    jupyter_book = Path(sys.executable).parent / "jupyter-book"
    result = subprocess.run([str(jupyter_book), "build", str(REPO), "--path-output", str(out), "-W", "--keep-going"],
                            capture_output=True, text=True)
    assert result.returncode == 0, f"book build failed:\n{result.stdout[-6000:]}\n{result.stderr[-3000:]}"
    return out / "_build" / "html"


@pytest.fixture(scope="session")
def server(site):
    """The built site served over HTTP on localhost."""
    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):  # keep the test log readable
            pass

    handler = functools.partial(QuietHandler, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def printed_json_of_notebook_run(source: str, marker: str, limits):
    """Run a one-cell notebook whose code prints ``marker`` followed by JSON in the grader's notebook sandbox
    (slot 0), and return that JSON decoded."""
    import json

    from bncourse.grading import trusted

    notebook = {"cells": [{"cell_type": "code", "id": "probe", "metadata": {}, "outputs": [], "execution_count": None,
                           "source": source}],
                "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
                "nbformat": 4, "nbformat_minor": 5}
    executed, note = trusted.execute_notebook(notebook, limits, slot=0)
    assert note == ""
    text = "".join(o.get("text", "") for o in json.loads(executed)["cells"][0]["outputs"])
    return json.loads(text.split(marker, 1)[1])
