"""The exercises' nbgrader sources are MyST markdown notebooks; nbgrader needs ``.ipynb``.

    python -m bncourse.solution_sources [--check]      (``make solution-notebooks``)

``solutions/exNN_topic/exNN_topic.md`` is what authors edit and commit (a change reviews as a text
diff; jupytext keeps every cell's nbgrader metadata). This writes ``exNN_topic.ipynb`` beside it
(git-ignored), with no outputs and with cell ids taken from the cells' ``grade_id`` (or their
position), so the same source always gives the same notebook and ``make exercises`` the same
release. With ``--check`` it writes nothing and fails when a notebook is missing or out of date.
"""

from __future__ import annotations

import sys
from pathlib import Path

SOLUTIONS = Path(__file__).resolve().parents[2] / "solutions"


def sources(solutions: Path = SOLUTIONS) -> list[Path]:
    return sorted(p / f"{p.name}.md" for p in solutions.iterdir() if (p / f"{p.name}.md").exists())


def to_notebook_text(source: Path) -> str:
    """The ``.ipynb`` text of one MyST source, deterministic."""
    import jupytext
    import nbformat

    notebook = jupytext.read(source, fmt="md:myst")
    notebook.metadata.pop("jupytext", None)
    notebook.metadata.setdefault("language_info", {"name": "python"})
    for index, cell in enumerate(notebook.cells):
        cell["id"] = cell.metadata.get("nbgrader", {}).get("grade_id") or f"cell-{index}"
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nbformat.validate(notebook)
    return nbformat.writes(notebook) + "\n"


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for source in sources():
        target = source.with_suffix(".ipynb")
        text = to_notebook_text(source)
        if target.exists() and target.read_text(encoding="utf-8") == text:
            continue
        stale.append(target)
        if not check:
            target.write_text(text, encoding="utf-8")
    if check and stale:
        print("out of date (run `make solution-notebooks`): " + ", ".join(map(str, stale)))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
