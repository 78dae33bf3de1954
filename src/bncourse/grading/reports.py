"""The class report beside the grades: one offline HTML page (plots as inline SVG, no network).

It shows the grade distribution, each check's pass rate and the named mistakes counted across
the class ("14 of 60 normalized with the unbiased variance"), each linking to the feedback of the
students who made it. A check's message names a mistake with "It matches what this common
mistake gives: <explanation>" (or "It matches a common mistake: ..."): the report groups by that
explanation. Every name and message is escaped: they come from students.
"""

from __future__ import annotations

import html
import os
import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import Callable
from urllib.parse import quote

from .files import write_atomic
from .text import one_line, printable

MISTAKE = re.compile(r"(?:It matches what this common mistake gives|[Ii]t matches a common mistake|"
                     r"match a common mistake):\s*(?P<explanation>.+?)(?=\n|\s+Or:|\s+Hint:|$)", re.S)


def named_mistakes(results) -> dict[tuple[str, str], list[str]]:
    """(check, explanation) -> the students whose failed check names that mistake."""
    found: dict[tuple[str, str], list[str]] = defaultdict(list)
    for r in results:
        for c in r.cells:
            for m in MISTAKE.finditer(c.problem or ""):
                key = (c.grade_id, one_line(m["explanation"]))
                if r.student not in found[key]:
                    found[key].append(r.student)
    return dict(sorted(found.items(), key=lambda kv: (-len(kv[1]), kv[0])))


def pass_rates(results) -> dict[str, tuple[int, int]]:
    """check -> (students who passed it, students graded)."""
    rates: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for r in results:
        for c in r.cells:
            rates[c.grade_id][1] += 1
            rates[c.grade_id][0] += not c.problem
    return {k: (v[0], v[1]) for k, v in sorted(rates.items())}


def _bars(values: list[tuple[str, float]], maximum: float, unit: str = "") -> str:
    """A horizontal bar chart as inline SVG."""
    row, label_w, bar_w = 22, 220, 360
    height = row * max(len(values), 1) + 10
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_w + bar_w + 80}" height="{height}" '
             'role="img" font-family="sans-serif" font-size="13">']
    for i, (label, value) in enumerate(values):
        y = 5 + i * row
        w = 0 if not maximum else bar_w * value / maximum
        parts.append(f'<text x="{label_w - 6}" y="{y + 15}" text-anchor="end">{html.escape(label[:32])}</text>'
                     f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row - 6}" fill="#4c72b0"/>'
                     f'<text x="{label_w + w + 4:.1f}" y="{y + 15}">{value:g}{html.escape(unit)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def render(results, assignment: str, feedback_link: Callable[[str], str]) -> str:
    graded = [r for r in results if r.score is not None]
    esc = lambda text: html.escape(printable(str(text)))  # noqa: E731
    scores = Counter(r.score for r in graded)
    maximum = max((r.max_score or 0 for r in graded), default=0)
    distribution = [(f"{score:g} / {maximum:g}", scores.get(score, 0)) for score in sorted(scores)]
    rates = pass_rates(graded)
    mistakes = named_mistakes(graded)
    out = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{esc(assignment)}: class report</title>"
           "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto;line-height:1.4}"
           "td,th{padding:.2em .6em;text-align:left;vertical-align:top}li{overflow-wrap:anywhere}</style>"
           f"</head><body><h1>{esc(assignment)}: class report</h1>",
           f"<p>{len(results)} students; {len(graded)} graded, {len(results) - len(graded)} not graded "
           "(the summary CSV says why).</p>",
           "<h2>Grade distribution</h2>", _bars(distribution, max((n for _, n in distribution), default=0),
                                                " students"),
           "<h2>Pass rate of each check</h2>",
           _bars([(k, round(100 * p / n)) for k, (p, n) in rates.items()], 100, "%"),
           "<table><tr><th>check</th><th>passed</th></tr>"]
    out += [f"<tr><td>{esc(k)}</td><td>{p} of {n}</td></tr>" for k, (p, n) in rates.items()]
    out.append("</table><h2>Named mistakes across the class</h2>")
    if not mistakes:
        out.append("<p>No failed check matched a named mistake.</p>")
    else:
        out.append("<ul>")
        for (check, explanation), students in mistakes.items():
            links = ", ".join(f'<a href="{html.escape(feedback_link(s), quote=True)}">{esc(s)}</a>' for s in students)
            out.append(f"<li><b>{len(students)} of {len(graded)}</b> ({esc(check)}): {esc(explanation)}"
                       f"<br><small>{links}</small></li>")
        out.append("</ul>")
    out.append("</body></html>")
    return "\n".join(out)


def write_class_report(results, assignment: str, destination: Path, feedback_page: Callable[[str], Path]) -> None:
    def link(student: str) -> str:
        return quote(os.path.relpath(feedback_page(student), destination.parent))

    write_atomic(destination, render(results, assignment, link).encode())
