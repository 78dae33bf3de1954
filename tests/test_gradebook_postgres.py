"""The gradebook on a real PostgreSQL server, as a course with several graders would run it.

The fixture starts Debian's PostgreSQL on loopback in a temporary data directory (``make test``
installs the ``postgresql`` package), and the grader writes to it through nbgrader's ``db_url``.
"""

import csv
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

from bncourse import grading
from submissions import FULL, make_class, new_course
from test_grading import LIMITS
from wrong_answers.ex02_batchnorm_forward import EXERCISE, TEST_CELL_POINTS

pytestmark = pytest.mark.slow
SUPERUSER = "grader"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url():
    binaries = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    assert binaries, "PostgreSQL is not installed: `make test` installs Debian's postgresql package"
    bin_dir = Path(binaries[-1]).parent
    data = Path(tempfile.mkdtemp(prefix="bncourse-pg-"))
    as_postgres = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        shutil.chown(data, "postgres", "postgres")
        as_postgres = ["runuser", "-u", "postgres", "--"]
    port = _free_port()

    def run(*cmd):
        subprocess.run([*as_postgres, *cmd], check=True, capture_output=True, text=True)

    run(str(bin_dir / "initdb"), "-D", str(data / "db"), "-U", SUPERUSER, "--auth=trust", "--no-sync")
    run(str(bin_dir / "pg_ctl"), "-D", str(data / "db"), "-l", str(data / "db" / "server.log"), "-w",
        "-o", f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={data}", "start")
    try:
        run(str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", SUPERUSER, "gradebook")
        yield f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{port}/gradebook"
    finally:
        subprocess.run([*as_postgres, str(bin_dir / "pg_ctl"), "-D", str(data / "db"), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(data, ignore_errors=True)


def test_grading_into_a_postgresql_gradebook(postgres_url, tmp_path):
    from nbgrader.api import Gradebook

    course = new_course(tmp_path / "course")
    expected = make_class(course, only=["solved", "blank", "wrong-missing_eps", "not-json"])
    results = {r.student: r for r in grading.grade_assignment(grading.Course(course, postgres_url), EXERCISE,
                                                               limits=LIMITS, progress=False)}
    assert results["solved"].score == FULL and results["blank"].score == 0
    assert results["wrong-missing_eps"].score == sum(expected["wrong-missing_eps"][0].values())
    assert results["not-json"].error
    with Gradebook(postgres_url) as gb:
        assert {s.id for s in gb.students} == set(expected)
        assert gb.find_assignment(EXERCISE).max_score == sum(TEST_CELL_POINTS.values())
        for student in ("solved", "blank", "wrong-missing_eps"):
            assert gb.find_submission(EXERCISE, student).score == results[student].score
    with open(course / "autograder" / "grades.csv", newline="") as f:
        assert {row["student_id"]: float(row["score"]) for row in csv.DictReader(f)}["solved"] == FULL
    assert not (course / "autograder" / "gradebook.db").exists()  # nothing went to the default SQLite file
