"""From whatever students handed in to one clean notebook per student (trusted side, no execution).

Two steps, both pure reading of the originals (which are never modified):

1. **Find** each student's submission: nbgrader's ``submitted/<student>/<assignment>/`` layout,
   or a folder downloaded from an LMS (``<student>_…_<assignment>[-N].ipynb`` files and
   ``<student>….zip`` archives, read without extracting to disk, so a ``../`` path in a zip
   cannot write anywhere). Students are keyed by the LMS's own identifier (:mod:`.lms` lists the
   naming of Canvas, Moodle and Blackboard), never merged by name. When a student has several
   notebooks, the latest wins: the newest (the LMS's attempt time, else the modification time),
   then the highest copy number ``-N``. A renamed notebook is used when it is the only candidate.
   Only regular files are read, never through a symbolic link (:mod:`.files`).
2. **Rebuild** the notebook from the released version: every read-only and test cell comes from
   the release (so deleted, edited or retyped test cells and broken nbgrader metadata such as
   ``"schema_version": 99`` do not matter), the student's answer cells are matched by their
   ``grade_id`` (or, when that metadata was lost, by the function they define), and the cells the
   student added are kept where they were. Every repair is reported in words.
"""

from __future__ import annotations

import ast
import copy
import hashlib
import io
import json
import re
import zipfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Callable

from . import lms
from .copies import copied_from_reference, function_shapes as _function_shapes  # noqa: F401 (re-exported)
from .files import NotARegularFile, is_real_dir, is_regular, read_regular, write_atomic  # noqa: F401

MAX_NOTEBOOK_BYTES = 20 * 2**20
MAX_EXTRA_CELLS = 200
MAX_ZIP_MEMBERS = 2000
STUDENT_ID = lms.STUDENT_ID
RESUBMISSION = re.compile(r"-(\d+)$")
READ_ERRORS = (OSError, zipfile.BadZipFile, ValueError, RuntimeError, NotImplementedError, EOFError,
               zipfile.LargeZipFile, MemoryError, RecursionError, OverflowError)


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
    student: str  # the key: nbgrader's student id (from an LMS, the LMS's own identifier)
    data: bytes | None = None
    flags: list[str] = field(default_factory=list)
    error: str = ""
    timestamp: str | None = None  # nbgrader's timestamp.txt (from `nbgrader collect`), when valid
    name: str = ""  # the display name the LMS gave (printable, one line); '' when none
    lms: str = ""  # which LMS naming the files followed ("canvas", "moodle", ...); '' for nbgrader's layout
    recordable: bool = True  # False when the folder name cannot be an id: reported, never put in the gradebook


def safe_key(raw: str) -> str:
    """A stand-in id for a folder whose name cannot be one (newlines, commas, non-UTF-8 bytes...)."""
    return "invalid-name-" + hashlib.sha256(raw.encode("utf-8", "surrogateescape")).hexdigest()[:10]


# ---------------------------------------------------------------------------------------------
# Finding submissions
# ---------------------------------------------------------------------------------------------

def _candidate(label: str, name: str, load: Callable[[], bytes], mtime: float, assignment: str) -> Candidate:
    stem = PurePosixPath(name).stem
    match = RESUBMISSION.search(stem)
    number = int(match.group(1)) if match and len(match.group(1)) < 10 else 0
    return Candidate(label, load, mtime, number, assignment in stem)


def choose(student: str, candidates: list[Candidate], assignment: str) -> Submission:
    """The latest notebook wins (the newest, then the highest copy number ``-N``); the others are
    named in the flags."""
    if not candidates:
        return Submission(student, error=f"no notebook was found for {assignment}")
    ordered = sorted(candidates, key=lambda c: (c.named_right, c.mtime, c.resubmission, c.label))
    unreadable = []
    for chosen in reversed(ordered):  # the latest that can be read
        try:
            data = chosen.load()
        except READ_ERRORS as exc:
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


def _file_loader(path: Path) -> Callable[[], bytes]:
    return lambda: read_regular(path, MAX_NOTEBOOK_BYTES)


class _Archive:
    """A zip opened once for all its members (reopening it per member re-reads the whole directory)."""

    def __init__(self, path: Path):
        self.path = path
        self.data = read_regular(path, 16 * MAX_NOTEBOOK_BYTES)
        if len(self.data) > 16 * MAX_NOTEBOOK_BYTES:
            raise ValueError(f"larger than {16 * MAX_NOTEBOOK_BYTES // 2**20} MB")
        self.zip = zipfile.ZipFile(io.BytesIO(self.data))

    def loader(self, name: str) -> Callable[[], bytes]:
        def load() -> bytes:
            with self.zip.open(name) as f:
                return f.read(MAX_NOTEBOOK_BYTES + 1)  # the size in the header may lie
        return load


def from_submitted_folder(submitted: Path, assignment: str) -> list[Submission]:
    """Students in nbgrader's layout ``submitted/<student>/<assignment>/*.ipynb``; links are never followed."""
    found = []
    if not is_real_dir(submitted):
        return found
    for student_folder in sorted(submitted.iterdir()):
        folder = student_folder / assignment
        raw = student_folder.name
        try:
            if not is_real_dir(folder) and not (student_folder.is_symlink() or folder.is_symlink()):
                continue
            found.append(_one_submitted(raw, student_folder, folder, assignment))
        except Exception as exc:  # noqa: BLE001 - one student's folder never stops the batch
            key = raw if STUDENT_ID.match(raw) else safe_key(raw)
            found.append(Submission(key, error=f"the submission could not be read ({type(exc).__name__}: "
                                    f"{lms.display(str(exc))})", name=lms.display(raw),
                                    recordable=key == raw))
    return found


def _one_submitted(raw: str, student_folder: Path, folder: Path, assignment: str) -> Submission:
    if not STUDENT_ID.match(raw):
        return Submission(safe_key(raw), name=lms.display(raw), recordable=False,
                          error=f"the folder name {lms.display(raw)!r} cannot be a student id "
                                "(use letters, digits and _ . @ + - only); it was not graded")
    if not is_real_dir(student_folder) or not is_real_dir(folder):
        return Submission(raw, error="the submission folder is a symbolic link; links are never followed")
    candidates, skipped = [], []
    for path in sorted(folder.iterdir()):
        if path.suffix != ".ipynb":
            continue
        if not is_regular(path):
            skipped.append(f"{path.name} (a link or not a regular file)")
            continue
        size = path.lstat().st_size
        if size > MAX_NOTEBOOK_BYTES:
            skipped.append(f"{path.name} (larger than {MAX_NOTEBOOK_BYTES // 2**20} MB)")
            continue
        candidates.append(_candidate(path.name, path.name, _file_loader(path), path.lstat().st_mtime, assignment))
    submission = choose(raw, candidates, assignment)
    submission.timestamp = _timestamp(folder / "timestamp.txt", submission.flags)
    if skipped:
        submission.flags.append("ignored " + ", ".join(skipped))
    return submission


def _timestamp(path: Path, flags: list[str]) -> str | None:
    """The submission time nbgrader recorded, checked: it decides late penalties."""
    from nbgrader.utils import parse_utc  # the parser nbgrader itself will apply

    if not path.exists() and not path.is_symlink():
        return None
    try:
        text = read_regular(path, 100).decode("utf-8", "replace").strip()[:100]
    except OSError as exc:
        flags.append(f"timestamp.txt could not be read ({lms.display(str(exc))}); the submission was treated "
                     "as on time")
        return None
    try:
        parse_utc(text)
    except (ValueError, OverflowError, TypeError, RecursionError):
        flags.append(f"timestamp.txt ({lms.display(text)!r}) is not a date; the submission was treated as on time")
        return None
    return text


def _zip_candidates(archive: _Archive, assignment: str, flags: list[str]) -> list[Candidate]:
    """Notebooks inside a zip, read in memory; unsafe or oversized members are skipped."""
    candidates = []
    label = lms.display(archive.path.name)
    members = archive.zip.infolist()
    if len(members) > MAX_ZIP_MEMBERS:
        flags.append(f"{label} has {len(members)} entries; only the first {MAX_ZIP_MEMBERS} were read")
    for member in members[:MAX_ZIP_MEMBERS]:
        name = member.filename.replace("\\", "/")
        parts = PurePosixPath(name).parts
        if name.startswith("/") or ".." in parts or (parts and ":" in parts[0]):
            flags.append(f"{label} contains an entry with an unsafe path ({lms.display(member.filename)!r}); "
                         "it was ignored")
            continue
        if member.is_dir() or not name.endswith(".ipynb") or "__MACOSX" in parts \
                or ".ipynb_checkpoints" in parts:
            continue
        if member.file_size > MAX_NOTEBOOK_BYTES:
            flags.append(f"{label}: {lms.display(name)} is larger than {MAX_NOTEBOOK_BYTES // 2**20} MB; ignored")
            continue
        try:
            mtime = datetime(*member.date_time).timestamp()
        except (ValueError, OverflowError):
            mtime = 0.0
        candidates.append(_candidate(f"{label}:{lms.display(name)}", name, archive.loader(member.filename),
                                     mtime, assignment))
    return candidates


def _lms_entries(downloads: Path, unassigned: list[str]) -> list[tuple[Path, "lms.Owner | None"]]:
    """The regular files of the download, and those inside Moodle's per-student folders
    (``<Full Name>_<id>_assignsubmission_file_/``, its "download submissions in folders"), each with
    the folder's owner; links and anything else are noted and never read."""
    entries = []
    for path in sorted(downloads.iterdir()):
        label = lms.display(path.name)
        if is_regular(path):
            entries.append((path, None))
            continue
        folder_owner = lms.owner(path.name) if is_real_dir(path) else None
        if folder_owner is not None and folder_owner.lms == "moodle":
            for inner in sorted(path.iterdir()):
                if is_regular(inner) and inner.suffix in (".ipynb", ".zip"):
                    entries.append((inner, folder_owner))
                elif inner.suffix in (".ipynb", ".zip"):
                    unassigned.append(f"ignored {label}/{lms.display(inner.name)}: a link or not a regular file")
        elif path.is_symlink() or not path.is_dir():
            unassigned.append(f"ignored {label}: a link or not a regular file")
        else:
            unassigned.append(f"ignored {label}: a folder (only the files the LMS downloaded are read)")
    return entries


def from_lms_folder(downloads: Path, assignment: str) -> tuple[list[Submission], list[str]]:
    """Students from LMS downloads (the naming patterns are in :mod:`.lms`), keyed by the LMS's own
    identifier: two identifiers are never merged, whatever their names. Returns the submissions and
    notes on files that belong to nobody. Links and anything but regular files are never read."""
    per_student: dict[str, list[Candidate]] = {}
    owners: dict[str, list[lms.Owner]] = {}
    flags: dict[str, list[str]] = {}
    unassigned, archives = [], []
    for path, who in _lms_entries(downloads, unassigned):
        label = lms.display(path.name)
        if who is None:
            who = lms.owner(path.name) if path.suffix in (".ipynb", ".zip") else None
        if who is None or not STUDENT_ID.match(who.key):
            unassigned.append(f"ignored {label}: not named as an LMS download of {assignment} "
                              "(see `make help` for the file names each LMS uses)")
            continue
        student_flags = flags.setdefault(who.key, [])
        owners.setdefault(who.key, []).append(who)
        found = per_student.setdefault(who.key, [])
        try:
            if path.suffix == ".zip":
                archive = _Archive(path)
                archives.append(archive)
                candidates = _zip_candidates(archive, assignment, student_flags)
            else:
                if path.lstat().st_size > MAX_NOTEBOOK_BYTES:
                    student_flags.append(f"ignored {label}: larger than {MAX_NOTEBOOK_BYTES // 2**20} MB")
                    continue
                candidates = [_candidate(label, path.name, _file_loader(path), path.lstat().st_mtime, assignment)]
        except READ_ERRORS as exc:
            student_flags.append(f"{label} is not a readable file ({lms.display(str(exc))})")
            continue
        if who.attempt is not None:  # the LMS's attempt time orders the attempts
            for c in candidates:
                c.mtime = who.attempt
        found.extend(candidates)
    by_name: dict[str, set[str]] = {}
    for key, its in owners.items():
        for name in {o.name for o in its if o.name}:
            by_name.setdefault(name, set()).add(key)
    submissions = []
    try:
        for student, candidates in sorted(per_student.items()):
            its = owners[student]
            submission = choose(student, candidates, assignment)
            submission.name = next((o.name for o in its if o.name), "")
            submission.lms = its[0].lms
            submission.flags[:0] = flags[student]
            names = sorted({o.name for o in its if o.name})
            if len(names) > 1:
                submission.flags.append(f"the files of {its[0].lms} id {student} carry different names "
                                        f"({', '.join(names)}); they were graded as one student, by the id")
            same = sorted(k for name in names for k in by_name[name] if k != student)
            if same:
                submission.flags.append(f"another student has the same name ({submission.name}; id "
                                        f"{', '.join(same)}); they were graded separately, by the id")
            if any(o.late for o in its):
                submission.flags.append(f"{its[0].lms} marked this submission late")
            submissions.append(submission)
    finally:
        for archive in archives:
            archive.zip.close()
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
    except (SyntaxError, ValueError, RecursionError, MemoryError):
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
        # An integer literal too long for Python to read (execution_count: 10**100000) reads as None.
        notebook = json.loads(data.decode("utf-8-sig"), parse_int=lambda text: int(text) if len(text) < 4000 else None)
    except (ValueError, RecursionError, MemoryError) as exc:  # also: an integer literal too long to read
        return None, [], flags, f"the notebook is not valid JSON and cannot be opened ({exc.__class__.__name__}: {exc})"
    if not isinstance(notebook, dict):
        return None, [], flags, "the file is JSON but not a notebook"
    cells = _student_cells(notebook, flags)
    if cells is None:
        return None, [], flags, "the file is JSON but has no notebook cells"

    matched, after = _match_cells(cells, released["cells"], flags)
    _recover_lost_answers(released["cells"], matched, after, flags)
    notebook, plan = _assemble(released, matched, after, flags)
    return notebook, plan, flags, ""


def _match_cells(cells: list[dict], released_cells: list[dict], flags: list[str]):
    """Each student cell matched to its released cell by ``grade_id``; the rest are added cells,
    kept after the released cell they followed. Returns ``(matched, after)``."""
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
    return matched, after


def _recover_lost_answers(released_cells: list[dict], matched: dict, after: dict, flags: list[str]) -> None:
    """Answer cells whose grading metadata was lost, recognised by the functions they define."""
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


def _assemble(released: dict, matched: dict, after: dict, flags: list[str]) -> tuple[dict, list[dict]]:
    """The notebook to grade: the released cells (test and read-only cells as released), the
    student's answers in place and their added cells where they were; and the answers plan."""
    released_cells = released["cells"]
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
    return rebuilt, plan
