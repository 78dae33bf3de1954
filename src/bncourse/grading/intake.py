"""From whatever students handed in to one clean notebook per student (trusted side, no execution).

Two steps, both pure reading of the originals (which are never modified):

1. **Find** each student's submission: nbgrader's ``submitted/<student>/<assignment>/`` layout,
   or a folder downloaded from an LMS (``<student>_…_<assignment>[-N].ipynb`` files and
   ``<student>….zip`` archives, read without extracting to disk, so a ``../`` path in a zip
   cannot write anywhere). When a student has several notebooks, the latest wins: the highest
   resubmission number ``-N``, then the newest modification time. A renamed notebook is used
   when it is the only candidate.
2. **Rebuild** the notebook from the released version: every read-only and test cell comes from
   the release (so deleted, edited or retyped test cells and broken nbgrader metadata such as
   ``"schema_version": 99`` do not matter), the student's answer cells are matched by their
   ``grade_id`` (or, when that metadata was lost, by the function they define), and the cells the
   student added are kept where they were. Every repair is reported in words.
"""

from __future__ import annotations

import ast
import copy
import json
import os
import re
import zipfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Callable

MAX_NOTEBOOK_BYTES = 20 * 2**20
MAX_EXTRA_CELLS = 200
MAX_ZIP_MEMBERS = 2000
STUDENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,99}$")
RESUBMISSION = re.compile(r"-(\d+)$")


@dataclass
class Candidate:
    """One notebook a student handed in; only the chosen one is ever read."""

    label: str  # where it came from, for messages
    load: Callable[[], bytes]
    mtime: float
    resubmission: int = 0
    named_right: bool = True


@dataclass
class Submission:
    student: str
    data: bytes | None = None
    flags: list[str] = field(default_factory=list)
    error: str = ""
    timestamp: str | None = None  # nbgrader's timestamp.txt (from `nbgrader collect`), when valid


# ---------------------------------------------------------------------------------------------
# Finding submissions
# ---------------------------------------------------------------------------------------------

def _candidate(label: str, name: str, load: Callable[[], bytes], mtime: float, assignment: str) -> Candidate:
    stem = PurePosixPath(name).stem
    match = RESUBMISSION.search(stem)
    return Candidate(label, load, mtime, int(match.group(1)) if match else 0, assignment in stem)


def choose(student: str, candidates: list[Candidate], assignment: str) -> Submission:
    """The latest notebook wins; the others are named in the flags."""
    if not candidates:
        return Submission(student, error=f"no notebook was found for {assignment}")
    ordered = sorted(candidates, key=lambda c: (c.named_right, c.resubmission, c.mtime, c.label))
    unreadable = []
    for chosen in reversed(ordered):  # the latest that can be read
        try:
            data = chosen.load()
        except (OSError, zipfile.BadZipFile, ValueError, RuntimeError, NotImplementedError) as exc:
            unreadable.append(f"{chosen.label} ({exc})")
            continue
        if len(data) > MAX_NOTEBOOK_BYTES:
            unreadable.append(f"{chosen.label} (larger than {MAX_NOTEBOOK_BYTES // 2**20} MB)")
            continue
        break
    else:
        return Submission(student, error="no notebook could be read: " + "; ".join(unreadable))
    submission = Submission(student, data)
    if unreadable:
        submission.flags.append("could not read " + "; ".join(unreadable) + f"; graded {chosen.label} instead")
    if len(candidates) > 1:
        others = ", ".join(c.label for c in ordered if c is not chosen)
        submission.flags.append(f"{len(candidates)} notebooks were handed in; the latest, {chosen.label}, was "
                                f"graded (ignored: {others})")
    if not chosen.named_right:
        submission.flags.append(f"the notebook was renamed ({chosen.label}); it was graded as {assignment}.ipynb")
    return submission


def _file_loader(path: Path) -> Callable[[], bytes] | None:
    return (lambda: path.read_bytes()) if path.stat().st_size <= MAX_NOTEBOOK_BYTES else None


def _member_loader(archive: Path, name: str) -> Callable[[], bytes]:
    def load() -> bytes:
        with zipfile.ZipFile(archive) as z, z.open(name) as f:
            return f.read(MAX_NOTEBOOK_BYTES + 1)  # the size in the header may lie
    return load


def from_submitted_folder(submitted: Path, assignment: str) -> list[Submission]:
    """Students in nbgrader's layout ``submitted/<student>/<assignment>/*.ipynb``."""
    found = []
    for folder in sorted(submitted.glob(f"*/{assignment}")):
        student = folder.parent.name
        if not STUDENT_ID.match(student):
            found.append(Submission(student, error=f"the folder name {student!r} cannot be a student id "
                                    "(use letters, digits and _ . @ + - only)"))
            continue
        candidates, too_big = [], []
        for path in sorted(folder.glob("*.ipynb")):
            load = _file_loader(path)
            if load is None:
                too_big.append(path.name)
                continue
            candidates.append(_candidate(path.name, path.name, load, path.stat().st_mtime, assignment))
        submission = choose(student, candidates, assignment)
        submission.timestamp = _timestamp(folder / "timestamp.txt", submission.flags)
        if too_big:
            submission.flags.append(f"ignored {', '.join(too_big)}: larger than {MAX_NOTEBOOK_BYTES // 2**20} MB")
        found.append(submission)
    return found


def _timestamp(path: Path, flags: list[str]) -> str | None:
    """The submission time nbgrader recorded, checked: it decides late penalties."""
    from nbgrader.utils import parse_utc  # the parser nbgrader itself will apply

    if not path.exists():
        return None
    text = path.read_text(errors="replace").strip()[:100]
    try:
        parse_utc(text)
    except (ValueError, OverflowError, TypeError):
        flags.append(f"timestamp.txt ({text!r}) is not a date; the submission was treated as on time")
        return None
    return text


def _zip_candidates(path: Path, assignment: str, flags: list[str]) -> list[Candidate]:
    """Notebooks inside a zip, read in memory; unsafe or oversized members are skipped."""
    candidates = []
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            if len(members) > MAX_ZIP_MEMBERS:
                flags.append(f"{path.name} has {len(members)} entries; only the first {MAX_ZIP_MEMBERS} were read")
            for member in members[:MAX_ZIP_MEMBERS]:
                name = member.filename.replace("\\", "/")
                parts = PurePosixPath(name).parts
                if name.startswith("/") or ".." in parts or (parts and ":" in parts[0]):
                    flags.append(f"{path.name} contains an entry with an unsafe path ({member.filename!r}); "
                                 "it was ignored")
                    continue
                if member.is_dir() or not name.endswith(".ipynb") or "__MACOSX" in parts \
                        or ".ipynb_checkpoints" in parts:
                    continue
                if member.file_size > MAX_NOTEBOOK_BYTES:
                    flags.append(f"{path.name}: {name} is larger than {MAX_NOTEBOOK_BYTES // 2**20} MB; ignored")
                    continue
                mtime = datetime(*member.date_time).timestamp()
                candidates.append(_candidate(f"{path.name}:{name}", name, _member_loader(path, member.filename),
                                             mtime, assignment))
    except (zipfile.BadZipFile, OSError, ValueError, RuntimeError, NotImplementedError) as exc:
        flags.append(f"{path.name} is not a readable zip file ({exc})")
    return candidates


def from_lms_folder(downloads: Path, assignment: str) -> tuple[list[Submission], list[str]]:
    """Students from LMS downloads. Returns the submissions and notes on files that belong to nobody."""
    per_student: dict[str, list[Candidate]] = {}
    flags: dict[str, list[str]] = {}
    unassigned = []
    for path in sorted(p for p in downloads.iterdir() if p.is_file()):
        student = path.stem.split("_")[0]
        if path.suffix not in (".ipynb", ".zip") or not STUDENT_ID.match(student):
            unassigned.append(f"ignored {path.name}: not named <student>_…_{assignment}.ipynb or <student>….zip")
            continue
        student_flags = flags.setdefault(student, [])
        found = per_student.setdefault(student, [])
        if path.suffix == ".zip":
            found.extend(_zip_candidates(path, assignment, student_flags))
        else:
            load = _file_loader(path)
            if load is None:
                student_flags.append(f"ignored {path.name}: larger than {MAX_NOTEBOOK_BYTES // 2**20} MB")
                continue
            found.append(_candidate(path.name, path.name, load, path.stat().st_mtime, assignment))
    submissions = []
    for student, candidates in sorted(per_student.items()):
        submission = choose(student, candidates, assignment)
        submission.flags[:0] = flags[student]
        submissions.append(submission)
    return submissions, unassigned


# ---------------------------------------------------------------------------------------------
# Rebuilding the notebook from the release
# ---------------------------------------------------------------------------------------------

def as_plain_text(markdown: str) -> str:
    """Markdown from a student as a fenced code block: shown verbatim, never rendered. nbgrader's
    feedback template renders markdown without a sanitizer, so links such as ``javascript:`` and
    raw HTML would otherwise run in the instructor's browser."""
    longest = max((len(run) for run in re.findall(r"`+", markdown)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}text\n{markdown}\n{fence}"


def _text(source) -> str:
    if isinstance(source, list):
        return "".join(s for s in source if isinstance(s, str))
    return source if isinstance(source, str) else ""


def _nbgrader(cell: dict) -> dict:
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return meta if isinstance(meta, dict) else {}


def _functions_defined(source: str) -> set[str]:
    try:
        return {node.name for node in ast.parse(source).body if isinstance(node, ast.FunctionDef)}
    except (SyntaxError, ValueError):
        return set(re.findall(r"^def\s+(\w+)\s*\(", source, flags=re.M))


def _student_cells(notebook: dict, flags: list[str]) -> list[dict] | None:
    """The student's cells as plain dicts (type, source, metadata), from nbformat 4 or 3."""
    version = notebook.get("nbformat")
    if isinstance(notebook.get("cells"), list):
        raw = notebook["cells"]
        if version != 4:
            flags.append(f"the notebook says nbformat {version!r} (expected 4); its cells were read anyway")
    elif isinstance(notebook.get("worksheets"), list) and notebook["worksheets"] \
            and isinstance(notebook["worksheets"][0], dict):
        raw = [dict(c, source=c.get("input", c.get("source", ""))) for c in notebook["worksheets"][0].get("cells", [])
               if isinstance(c, dict)]
        flags.append("the notebook is in the old nbformat 3; it was converted")
    else:
        return None
    cells = []
    for cell in raw:
        if not isinstance(cell, dict):
            continue
        metadata = cell.get("metadata") if isinstance(cell.get("metadata"), dict) else {}
        cells.append({"cell_type": cell.get("cell_type") if isinstance(cell.get("cell_type"), str) else "code",
                      "source": _text(cell.get("source", "")), "metadata": metadata})
    return cells


def rebuild(data: bytes, released: dict) -> tuple[dict | None, list[dict], list[str], str]:
    """The notebook to grade, built from the release and the student's answers.

    Returns ``(notebook, plan, flags, error)``. ``plan`` lists the code cells a student's functions
    depend on (setup, answer and added cells; never test cells) for the answers sandbox.
    ``error`` is set, and ``notebook`` is None, when nothing can be graded.
    """
    flags: list[str] = []
    if len(data) > MAX_NOTEBOOK_BYTES:
        return None, [], flags, f"the file is larger than {MAX_NOTEBOOK_BYTES // 2**20} MB"
    try:
        notebook = json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        return None, [], flags, f"the notebook is not valid JSON and cannot be opened ({exc.__class__.__name__}: {exc})"
    if not isinstance(notebook, dict):
        return None, [], flags, "the file is JSON but not a notebook"
    cells = _student_cells(notebook, flags)
    if cells is None:
        return None, [], flags, "the file is JSON but has no notebook cells"

    released_cells = released["cells"]
    released_ids = {_nbgrader(c).get("grade_id"): i for i, c in enumerate(released_cells) if _nbgrader(c).get("grade_id")}
    matched: dict[int, dict] = {}  # released index -> student cell
    after: dict[int | None, list[dict]] = {}  # anchor (released index) -> added cells
    anchor = None
    for cell in cells:
        meta = cell["metadata"].get("nbgrader")
        grade_id = meta.get("grade_id") if isinstance(meta, dict) else None
        index = released_ids.get(grade_id) if isinstance(grade_id, str) else None
        if meta is not None and index is not None and (not isinstance(meta, dict) or meta.get("schema_version") != 3):
            flags.append(f"cell '{grade_id}' had unreadable grading metadata (schema_version "
                         f"{meta.get('schema_version')!r}); the released metadata was used")
        if index is not None and index in matched:
            flags.append(f"two cells have the id '{grade_id}'; the first counts, the second runs as an added cell")
            index = None
        if index is None:
            after.setdefault(anchor, []).append(cell)
        else:
            matched[index] = cell
            anchor = index

    # Answer cells whose metadata was lost: recognise them by the functions they define.
    for i, rcell in enumerate(released_cells):
        meta = _nbgrader(rcell)
        if not meta.get("solution") or i in matched or rcell.get("cell_type") != "code":
            continue
        wanted = _functions_defined(_text(rcell["source"]))
        for group in after.values():
            hit = next((c for c in group if wanted and c["cell_type"] == "code"
                        and wanted <= _functions_defined(c["source"])), None)
            if hit:
                group.remove(hit)
                matched[i] = hit
                flags.append(f"answer cell '{meta['grade_id']}' had lost its grading metadata; it was recognised "
                             f"by the function it defines ({', '.join(sorted(wanted))})")
                break

    out_cells, plan = [], []
    added = 0

    def add_student_cells(group):
        nonlocal added
        for cell in group:
            added += 1
            if added > MAX_EXTRA_CELLS:
                continue
            kind = "code" if cell["cell_type"] == "code" else "markdown"
            # Markdown a student added is shown as text, never as HTML: feedback pages and formgrader
            # render it in the instructor's browser.
            text = cell["source"] if kind == "code" else as_plain_text(cell["source"])
            new = {"cell_type": kind, "id": f"added-{added}", "metadata": {}, "source": text}
            if kind == "code":
                new.update(outputs=[], execution_count=None)
                plan.append({"index": len(out_cells), "name": f"added cell {added}", "role": "extra",
                             "source": cell["source"]})
            out_cells.append(new)

    add_student_cells(after.get(None, []))
    for i, rcell in enumerate(released_cells):
        meta = _nbgrader(rcell)
        grade_id = meta.get("grade_id", f"cell {i}")
        new = copy.deepcopy(rcell)
        if new.get("cell_type") == "code":
            new.update(outputs=[], execution_count=None)
        theirs = matched.get(i)
        if meta.get("solution"):
            if theirs is None:
                flags.append(f"answer cell '{grade_id}' is missing; it was graded as unanswered")
            else:
                if theirs["cell_type"] != rcell["cell_type"]:
                    flags.append(f"answer cell '{grade_id}' was changed to a {theirs['cell_type']} cell; its text "
                                 f"was used as {rcell['cell_type']}")
                new["source"] = theirs["source"] if rcell["cell_type"] == "code" else as_plain_text(theirs["source"])
        elif rcell.get("cell_type") == "code" and meta:
            kind = "test cell" if meta.get("grade") else "read-only cell"
            if theirs is None:
                flags.append(f"{kind} '{grade_id}' was deleted; it was restored before grading")
            elif theirs["cell_type"] != "code":
                flags.append(f"{kind} '{grade_id}' was changed to a {theirs['cell_type']} cell; it was restored")
            elif theirs["source"].strip() != _text(rcell["source"]).strip():
                flags.append(f"{kind} '{grade_id}' was edited; the original was restored before grading")
        if new.get("cell_type") == "code" and not meta.get("grade"):
            plan.append({"index": len(out_cells), "name": grade_id, "role": "answer" if meta.get("solution") else "setup",
                         "source": _text(new["source"])})
        out_cells.append(new)
        add_student_cells(after.get(i, []))
    if added > MAX_EXTRA_CELLS:
        flags.append(f"the notebook has {added} added cells; only the first {MAX_EXTRA_CELLS} were kept")
    rebuilt = {"cells": out_cells, "metadata": copy.deepcopy(released.get("metadata", {})),
               "nbformat": 4, "nbformat_minor": released.get("nbformat_minor", 5)}
    return rebuilt, plan, flags, ""


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary file next to ``path``, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with open(partial, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(partial, path)


def _function_shapes(source: str) -> dict[str, str]:
    """Each top-level function's arguments and body (docstring left out) as a canonical AST dump."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return {}
    shapes = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            body = node.body[1:] if (node.body and isinstance(node.body[0], ast.Expr)
                                     and isinstance(node.body[0].value, ast.Constant)) else node.body
            shapes[node.name] = ast.dump(node.args) + ast.dump(ast.Module(body=body, type_ignores=[]))
    return shapes


def copied_from_reference(plan: list[dict]) -> list[str]:
    """Flags for answer functions that are the course's reference implementation, pasted in.

    A student has the reference on their machine (the visible checks use it), so the trusted checks
    cannot tell a pasted copy from their own work; this catches the verbatim copy for the instructor."""
    import inspect

    from .. import reference

    references = {shape: name for name, shape in _function_shapes(inspect.getsource(reference)).items()}
    flags = []
    for cell in plan:
        if cell["role"] == "setup":
            continue
        for name, shape in _function_shapes(cell["source"]).items():
            if shape in references:
                flags.append(f"COPIED: function {name} in cell '{cell['name']}' is the course's reference "
                             f"implementation (bncourse.reference.{references[shape]}) pasted in")
    return flags
