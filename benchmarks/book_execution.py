"""How long the book takes to execute: seconds per chapter, from a clean build.

    .venv/bin/python benchmarks/book_execution.py [--out results.json]

Builds the whole book into a temporary folder (no execution cache, so every chapter runs, as in the
tests and CI), reads myst-nb's "Executed notebook in N seconds" lines and prints the per-chapter times
and the whole build's wall time as JSON. COURSE.md's budget is 10 minutes for the whole book on 2
cores; the issues give 3 minutes for Chapter 4 and 2 for Chapter 5. Numbers go in the README; nothing
asserts them.
"""

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    jupyter_book = Path(sys.executable).parent / "jupyter-book"
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        build = subprocess.run([str(jupyter_book), "build", str(ROOT), "--path-output", tmp], capture_output=True,
                               text=True)
        wall = time.perf_counter() - started
    if build.returncode != 0:
        sys.exit(f"the book did not build:\n{build.stdout[-3000:]}\n{build.stderr[-3000:]}")
    chapters = {Path(path).stem: float(seconds) for path, seconds in
                re.findall(r"^(\S+\.md): Executed notebook in ([0-9.]+) seconds", build.stdout + build.stderr, re.M)}
    report = {"cores": os.cpu_count(), "machine": platform.machine(), "python": platform.python_version(),
              "date": time.strftime("%Y-%m-%d"), "build_wall_seconds": round(wall, 1),
              "execution_seconds": chapters, "execution_seconds_total": round(sum(chapters.values()), 1)}
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
