"""The copy detector: answer functions that are the course's reference implementation, pasted in."""

from __future__ import annotations

import ast


def function_shapes(source: str) -> dict[str, str]:
    """Each top-level function's arguments and body (docstring left out) as a canonical AST dump.

    A crafted cell (an expression nested thousands deep, or too big to parse) gives no shapes."""
    try:
        tree = ast.parse(source)
        shapes = {}
        for node in tree.body:
            if isinstance(node, ast.FunctionDef):
                body = node.body[1:] if (node.body and isinstance(node.body[0], ast.Expr)
                                         and isinstance(node.body[0].value, ast.Constant)) else node.body
                shapes[node.name] = ast.dump(node.args) + ast.dump(ast.Module(body=body, type_ignores=[]))
        return shapes
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return {}


def copied_from_reference(plan: list[dict]) -> list[str]:
    """Flags for answer functions that are the course's reference implementation, pasted in.

    Students never get the reference (only the kit, which holds no code that computes an answer),
    but it may leak (a former student, a shared repository); the trusted checks pass a pasted copy
    like honest work, so this catches the verbatim copy for the instructor."""
    import inspect

    from .. import reference, reference_practice

    # Exercises 1-6 answer from bncourse.reference, Exercise 7 from bncourse.reference_practice.
    references = {shape: f"{module.__name__}.{name}"
                  for module in (reference, reference_practice)
                  for name, shape in function_shapes(inspect.getsource(module)).items()}
    flags = []
    for cell in plan:
        if cell["role"] == "setup":
            continue
        for name, shape in function_shapes(cell["source"]).items():
            if shape in references:
                flags.append(f"COPIED: function {name} in cell '{cell['name']}' is the course's reference "
                             f"implementation ({references[shape]}) pasted in")
    return flags
