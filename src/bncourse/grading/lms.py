"""Who handed in a file downloaded from an LMS, read from its name (trusted side; names are never trusted).

Each LMS names the files of its "download all submissions" in its own way. The student is keyed
by the LMS's own identifier, never by the name: two students with the same name stay two
students, and the grades export carries the identifier the LMS imports back.

=========== ============================================================== ==========================
LMS         file name                                                      key (nbgrader student id)
=========== ============================================================== ==========================
Canvas      ``<name>_<userid>_<submissionid>_<file>`` (``<name>_late_…``   the Canvas user id
            for late work; the submission id may be missing)
Moodle      ``<Full Name>_<participantid>_assignsubmission_file_<file>``   the participant id
            (or a folder ``<Full Name>_<participantid>_assignsubmission_file_/``)
Blackboard  ``<Assignment>_<username>_attempt_<YYYY-MM-DD-HH-MM-SS>[_<file>]`` the username
plain       ``<student>.ipynb``, ``<student>.zip`` or ``<student>_<file>``  ``<student>``
=========== ============================================================== ==========================

The plain form keys by the text before the first ``_``: use it only when that text is each
student's unique login.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime

STUDENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,99}$")

CANVAS = re.compile(r"^(?P<name>[^_]+?)_(?P<late>late_)?(?P<id>\d+)_(?:(?P<submission>\d+)_)?(?P<file>.+)$")
MOODLE = re.compile(r"^(?P<name>.+?)_(?P<id>\d+)_assignsubmission_(?:file|onlinetext)_(?P<file>.*)$")
BLACKBOARD = re.compile(r"^(?P<assignment>.+?)_(?P<id>[A-Za-z0-9][A-Za-z0-9.@+-]{0,99})_attempt_"
                        r"(?P<when>\d{4}-\d\d-\d\d-\d\d-\d\d-\d\d)(?:_(?P<file>.+))?$")
PLAIN = re.compile(r"^(?P<id>[^_]+?)(?:_(?P<file>.+))?$")


@dataclass(frozen=True)
class Owner:
    """The student a downloaded file belongs to."""

    key: str  # the LMS identifier: the nbgrader student id
    name: str  # the display name the LMS wrote in the file name ('' when none)
    lms: str  # "canvas", "moodle", "blackboard" or "plain"
    late: bool = False  # the LMS marked the work late (Canvas)
    attempt: float | None = None  # the attempt's time, when the name says it (Blackboard)
    file: str = ""  # the student's own file name, as far as the LMS kept it


def display(text: str) -> str:
    """A name for reports: printable characters only, one line, at most 100 characters."""
    text = unicodedata.normalize("NFC", text.encode("utf-8", "surrogateescape").decode("utf-8", "replace"))
    return " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())[:100]


def owner(filename: str) -> Owner | None:
    """Who handed in ``filename`` (a file name, no folder), or None when no pattern fits."""
    stem = filename
    if (m := MOODLE.match(stem)) and STUDENT_ID.match(m["id"]):
        return Owner(m["id"], display(m["name"]), "moodle", file=m["file"])
    if m := BLACKBOARD.match(stem):
        try:
            when = datetime.strptime(m["when"], "%Y-%m-%d-%H-%M-%S").timestamp()
        except (ValueError, OverflowError):
            when = None
        return Owner(m["id"], "", "blackboard", attempt=when, file=m["file"] or "")
    if m := CANVAS.match(stem):
        return Owner(m["id"], display(m["name"]), "canvas", late=bool(m["late"]), file=m["file"])
    if (m := PLAIN.match(stem)) and STUDENT_ID.match(m["id"]) and "." not in m["id"]:
        return Owner(m["id"], "", "plain", file=m["file"] or "")
    if (m := PLAIN.match(stem.rsplit(".", 1)[0])) and STUDENT_ID.match(m["id"]):
        return Owner(m["id"], "", "plain", file=m["file"] or "")
    return None
