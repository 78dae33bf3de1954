"""What the grader changes in how nbgrader keeps its gradebook (``grading/gradebook.py``)."""

import subprocess
import sys
from pathlib import Path

from bncourse.grading import gradebook


def test_the_schema_version_read_in_process_is_the_one_alembic_reports():
    # nbgrader's own way: the `alembic heads` command on its migration scripts, in a new process.
    from nbgrader.dbutil import _temp_alembic_ini

    alembic = Path(sys.executable).parent / "alembic"
    with _temp_alembic_ini("sqlite:////tmp/unused-gradebook.db") as ini:
        output = subprocess.run([str(alembic), "-c", ini, "heads"], capture_output=True, text=True,
                                check=True).stdout
    assert gradebook.alembic_head() == output.split()[0]
