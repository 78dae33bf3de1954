"""Student-controlled text made safe for each place a report puts it (terminal, CSV, HTML).

Names and messages come from folder names, file names and notebooks: never trusted. Terminal:
no control characters (no escape sequences). CSV: always quoted by :mod:`csv`, no cell starts a
spreadsheet formula (``=``, ``+``, ``-``, ``@``, tab, carriage return), no cell over a
spreadsheet's 32,767 characters. Messages are shortened only at the end of a sentence.
"""

from __future__ import annotations

import re

SPREADSHEET_CELL_CHARS = 32_767
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_SENTENCE_END = re.compile(r"[.;!?)](?=\s)|\n")


def printable(text: str) -> str:
    """Without control characters (escape sequences become '?'); newlines kept."""
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return "".join(ch if ch.isprintable() or ch == "\n" else "?" for ch in text)


def one_line(text: str) -> str:
    return " ".join(printable(text).split())


def shorten(text: str, limit: int) -> str:
    """``text`` on one line, cut (when longer than ``limit``) after its last whole sentence that fits."""
    text = one_line(text)
    if len(text) <= limit:
        return text
    ends = [m.end() for m in _SENTENCE_END.finditer(text, 0, limit)]
    cut = ends[-1] if ends and ends[-1] > limit // 3 else text.rfind(" ", 0, limit)
    cut = cut if cut > 0 else limit
    return text[:cut].rstrip() + f" […{len(text) - cut} more characters]"


def cell(value) -> str:
    """A value for a CSV cell a spreadsheet will open: never a formula, never over its limit."""
    if value is None:
        return ""
    text = printable(str(value)) if not isinstance(value, (int, float)) else str(value)
    if isinstance(value, str) and text.startswith(FORMULA_START) and not _is_number(text):
        text = "'" + text
    if len(text) > SPREADSHEET_CELL_CHARS:
        text = shorten(text, SPREADSHEET_CELL_CHARS - 40)
    return text


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False
