"""Intake without sandboxes (fast): LMS file names, never merging two students, hostile files."""

import io
import json
import os
import time
import zipfile

import nbformat
import pytest

from bncourse.grading import intake, lms
from submissions import notebooks
from wrong_answers.ex02_batchnorm_forward import EXERCISE


@pytest.fixture(scope="module")
def good():
    return nbformat.writes(notebooks()[1]).encode()


@pytest.mark.parametrize("name, key, display, kind", [
    (f"alicesmith_101_9001_{EXERCISE}.ipynb", "101", "alicesmith", "canvas"),
    (f"alicesmith_late_555_9002_{EXERCISE}-1.ipynb", "555", "alicesmith", "canvas"),
    (f"bob_99_{EXERCISE}.ipynb", "99", "bob", "canvas"),
    (f"Alice Smith_12345_assignsubmission_file_{EXERCISE}.ipynb", "12345", "Alice Smith", "moodle"),
    (f"Exercise 2_jdoe_attempt_2026-11-01-12-00-00_{EXERCISE}.ipynb", "jdoe", "", "blackboard"),
    (f"carol_{EXERCISE}.ipynb", "carol", "", "plain"),
    ("dave.zip", "dave", "", "plain"),
])
def test_each_lms_naming_gives_the_lms_id(name, key, display, kind):
    who = lms.owner(name)
    assert (who.key, who.name, who.lms) == (key, display, kind)


def test_two_students_with_the_same_name_are_never_merged(tmp_path, good):
    released = nbformat.writes(notebooks()[0]).encode()
    (tmp_path / f"alicesmith_101_1_{EXERCISE}.ipynb").write_bytes(good)
    newer = tmp_path / f"alicesmith_555_2_{EXERCISE}.ipynb"
    newer.write_bytes(released)
    os.utime(newer, (time.time() + 60, time.time() + 60))
    submissions, _ = intake.from_lms_folder(tmp_path, EXERCISE)
    by_key = {s.student: s for s in submissions}
    assert sorted(by_key) == ["101", "555"]
    assert by_key["101"].data == good and by_key["555"].data == released
    assert by_key["101"].name == by_key["555"].name == "alicesmith"
    assert any("same name" in f and "555" in f for f in by_key["101"].flags)


def test_the_newest_submission_wins_over_a_higher_copy_number(tmp_path, good):
    old = tmp_path / f"bob_7_1_{EXERCISE}-9.ipynb"
    old.write_bytes(b"{}")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    (tmp_path / f"bob_7_1_{EXERCISE}.ipynb").write_bytes(good)
    (submission,), _ = intake.from_lms_folder(tmp_path, EXERCISE)
    assert submission.data == good and any("the latest" in f for f in submission.flags)


def test_blackboard_attempt_time_orders_attempts(tmp_path, good):
    (tmp_path / f"Ex 2_jdoe_attempt_2026-11-02-09-00-00_{EXERCISE}.ipynb").write_bytes(good)
    later_written = tmp_path / f"Ex 2_jdoe_attempt_2026-11-01-09-00-00_{EXERCISE}.ipynb"
    later_written.write_bytes(b"{}")
    (submission,), _ = intake.from_lms_folder(tmp_path, EXERCISE)
    assert submission.student == "jdoe" and submission.data == good


def test_links_are_never_followed(tmp_path, good):
    secret = tmp_path / "solution.ipynb"
    secret.write_bytes(good)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    (downloads / f"eve_1_2_{EXERCISE}.ipynb").symlink_to(secret)
    submissions, notes = intake.from_lms_folder(downloads, EXERCISE)
    assert submissions == [] and any("link" in n for n in notes)
    submitted = tmp_path / "submitted"
    (submitted / "mallory" / EXERCISE).mkdir(parents=True)
    (submitted / "mallory" / EXERCISE / f"{EXERCISE}.ipynb").symlink_to(secret)
    (submitted / "mallory" / EXERCISE / "timestamp.txt").symlink_to("/etc/hostname")
    (submitted / "trudy").symlink_to(submitted / "mallory")
    (submitted / "dir-stamp" / EXERCISE / "timestamp.txt").mkdir(parents=True)
    (submitted / "dir-stamp" / EXERCISE / f"{EXERCISE}.ipynb").write_bytes(good)
    by_key = {s.student: s for s in intake.from_submitted_folder(submitted, EXERCISE)}
    assert by_key["mallory"].data is None and by_key["mallory"].error
    assert by_key["trudy"].data is None and "link" in by_key["trudy"].error
    assert by_key["dir-stamp"].data == good and by_key["dir-stamp"].timestamp is None
    assert any("timestamp.txt" in f for f in by_key["dir-stamp"].flags)


def test_names_that_cannot_be_ids_are_reported_not_recorded(tmp_path, good):
    submitted = tmp_path / "submitted"
    for raw in ("evil\nname,0,10", "=cmd|calc", os.fsdecode(b"caf\xe9")):
        (submitted / raw / EXERCISE).mkdir(parents=True)
        (submitted / raw / EXERCISE / f"{EXERCISE}.ipynb").write_bytes(good)
    found = intake.from_submitted_folder(submitted, EXERCISE)
    assert len(found) == 3
    for s in found:
        assert not s.recordable and s.error and intake.STUDENT_ID.match(s.student)
        assert s.name.isprintable()
        s.name.encode("utf-8")


def test_crafted_notebooks_are_contained(good):
    released = notebooks()[0]
    released_dict = json.loads(nbformat.writes(released))
    deep = json.loads(good)
    for c in deep["cells"]:
        if c.get("metadata", {}).get("nbgrader", {}).get("solution"):
            c["source"] = "def batchnorm_forward(x):\n    return " + "(" * 100_000 + ")" * 100_000
    _, plan, _, error = intake.rebuild(json.dumps(deep).encode(), released_dict)
    assert not error
    assert intake.copied_from_reference(plan) == []
    long_int = json.dumps(json.loads(good)).replace('"nbformat_minor": ', '"nbformat_minor": ' + "9" * 100_000
                                                    + ', "x": ', 1).encode()
    notebook, plan, _, error = intake.rebuild(long_int, released_dict)
    assert notebook is not None and not error and plan
    shallow = json.loads(good)
    for c in shallow["cells"]:
        if c.get("metadata", {}).get("nbgrader", {}).get("solution"):
            c["source"] += "\n\ndef helper():\n    return " + "1+" * 100_000 + "1"
    _, plan, _, error = intake.rebuild(json.dumps(shallow).encode(), released_dict)
    assert not error and intake.copied_from_reference(plan) == []
    nested = b"[" * 200_000 + b"]" * 200_000
    assert intake.rebuild(nested, released_dict)[3]


def test_a_pasted_reference_is_flagged_for_every_exercise():
    """Exercise 7's answers come from reference_practice, the others' from reference: both are caught,
    renamed or not, and an honest answer (the solution notebook's own code) is not."""
    import inspect

    from bncourse import reference, reference_practice
    fold = inspect.getsource(reference_practice.fold_batchnorm_into_conv).replace(
        "def fold_batchnorm_into_conv(", "def my_fold(")
    plan = [{"role": "setup", "name": "setup", "source": inspect.getsource(reference)},
            {"role": "answer", "name": "fold", "source": "import numpy as np\n\n" + fold},
            {"role": "answer", "name": "forward", "source": inspect.getsource(reference.batchnorm_forward)}]
    flags = intake.copied_from_reference(plan)
    assert len(flags) == 2, flags
    assert "my_fold in cell 'fold'" in flags[0] and "bncourse.reference_practice.fold_batchnorm_into_conv" in flags[0]
    assert "bncourse.reference.batchnorm_forward" in flags[1]
    honest = fold.replace("return", "result = None\n    return", 1)
    assert intake.copied_from_reference([{"role": "answer", "name": "fold", "source": honest}]) == []


def test_a_zip_is_read_once_for_all_its_members(tmp_path, good, monkeypatch):
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        for i in range(300):
            z.writestr(f"broken/{EXERCISE}-{i}.ipynb", b"x")
        z.writestr(f"{EXERCISE}.ipynb", good)
    (tmp_path / "zoe_5_6_work.zip").write_bytes(archive.getvalue())
    opened = []
    real = zipfile.ZipFile.__init__
    monkeypatch.setattr(zipfile.ZipFile, "__init__", lambda self, *a, **k: (opened.append(1), real(self, *a, **k))[1])
    (submission,), _ = intake.from_lms_folder(tmp_path, EXERCISE)
    assert submission.student == "5" and len(opened) == 1


def test_saved_results_fingerprint_covers_checks_kit_and_trusted_checks(monkeypatch):
    from pathlib import Path

    from bncourse.grading import pipeline

    read = []
    real = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda self: (read.append(self.as_posix()), real(self))[1])
    pipeline._code_fingerprint()
    assert any("/bncourse/checks/ex02_batchnorm_forward.py" in p for p in read)
    assert any("/bnkit/ex02_batchnorm_forward.py" in p for p in read)
    assert any("/grading/assignments/ex02_batchnorm_forward.py" in p for p in read)


def test_moodle_folders_are_read_by_participant_id(tmp_path, good):
    folder = tmp_path / "Alice Smith_12345_assignsubmission_file_"
    folder.mkdir()
    (folder / f"{EXERCISE}.ipynb").write_bytes(good)
    (folder / "other.ipynb").symlink_to(folder / f"{EXERCISE}.ipynb")
    (tmp_path / "random-folder").mkdir()
    (submission,), notes = intake.from_lms_folder(tmp_path, EXERCISE)
    assert (submission.student, submission.name, submission.lms) == ("12345", "Alice Smith", "moodle")
    assert submission.data == good
    assert any("other.ipynb: a link" in n for n in notes) and any("random-folder" in n for n in notes)
