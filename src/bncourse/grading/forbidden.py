"""Library calls an exercise asks students not to use, found in their answer cells and flagged.

An exercise that asks for batch norm's backward pass by hand is not answered by ``F.batch_norm``
and autograd, yet the numbers agree, so the trusted checks give full marks. Each assignment module
may declare what its answers must not use::

    FORBIDDEN = [
        Forbidden(names={"batch_norm", "BatchNorm1d"}, cells={"batchnorm_backward"},
                  why="the backward pass is to be written by hand in NumPy"),
    ]

``names`` are matched against the last part of every name and attribute the cell's code uses
(``F.batch_norm``, ``torch.nn.functional.batch_norm`` and ``from torch.nn.functional import
batch_norm`` all give ``batch_norm``); ``cells`` are the answer cells' grade_ids (empty: every
answer and added cell). The grader reports each use with the cell and the line, for the
instructor to judge; the score is left as the checks made it.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Forbidden:
    names: frozenset | set
    why: str
    cells: frozenset | set = field(default_factory=frozenset)


def _uses(source: str) -> list[tuple[str, int]]:
    """(name, line) of every name, attribute and imported name in ``source``."""
    try:
        tree = ast.parse(source)
        nodes = list(ast.walk(tree))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return []
    found = []
    for node in nodes:
        if isinstance(node, ast.Attribute):
            found.append((node.attr, node.lineno))
        elif isinstance(node, ast.Name):
            found.append((node.id, node.lineno))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            found += [(alias.name.rsplit(".", 1)[-1], node.lineno) for alias in node.names]
    return found


def flags(plan: list[dict], forbidden: list[Forbidden]) -> list[str]:
    """One flag per forbidden name used in a cell the rule covers (answers and added cells only)."""
    out = []
    for cell in plan:
        if cell["role"] not in ("answer", "extra"):
            continue
        uses = _uses(cell["source"])
        for rule in forbidden:
            if rule.cells and cell["name"] not in rule.cells and cell["role"] == "answer":
                continue
            hits = sorted({(name, line) for name, line in uses if name in rule.names}, key=lambda h: h[1])
            if hits:
                where = ", ".join(f"{name} (line {line})" for name, line in hits[:5])
                out.append(f"FORBIDDEN: cell '{cell['name']}' uses {where}, which this exercise rules out: {rule.why}. "
                           "The checks cannot tell; please look at this cell")
    return out
