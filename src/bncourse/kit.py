"""Build the student kit: the ``bnkit`` wheel with the visible checks' cases stored as data.

    python -m bncourse.kit OUT_DIR        (``make kit`` runs it; the site build publishes the wheel)

For every exercise module ``bncourse.checks.exNN_topic`` this calls each case builder in its
``VISIBLE`` dict with the default parameters (the notebook's visible checks), encodes the cases
(inputs, expected outputs, the outputs of known mistakes) as JSON into a copy of ``kit/``, and
packs that copy as a wheel. The kit's code compares; it never computes an answer.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from . import checks

KIT_SOURCE = Path(__file__).resolve().parents[2] / "kit"


def exercise_modules() -> dict:
    """``{exercise: module}`` for every exercise's checks module."""
    names = sorted(m.name for m in pkgutil.iter_modules(checks.__path__) if m.name.startswith("ex"))
    return {name: importlib.import_module(f"{checks.__name__}.{name}") for name in names}


def fixtures() -> dict:
    """``{exercise: JSON text}``: every visible check's cases, from the reference implementations."""
    from bnkit import _fixtures

    return {name: json.dumps({check: _fixtures.encode(build()) for check, build in module.VISIBLE.items()},
                             sort_keys=True)
            for name, module in exercise_modules().items()}


def build(out_dir: Path) -> Path:
    """Write the kit's wheel into ``out_dir``; returns its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bnkit-build-") as tmp:
        source = Path(tmp) / "kit"
        shutil.copytree(KIT_SOURCE, source, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build"))
        target = source / "src" / "bnkit" / "fixtures"
        target.mkdir()
        for exercise, text in fixtures().items():
            (target / f"{exercise}.json").write_text(text, encoding="utf-8")
        for old in out_dir.glob("bnkit-*.whl"):
            old.unlink()
        subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                        "--wheel-dir", str(out_dir), str(source)], check=True)
    (wheel,) = out_dir.glob("bnkit-*.whl")
    return wheel


if __name__ == "__main__":
    print(build(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("_build/kit")))
