"""Reports written from results (fast, no sandbox): summary CSV, grades CSVs, class report, terminal."""

import csv

from bncourse import grading
from bncourse.grading import gradebook, reports, text
from bncourse.grading.pipeline import CellResult, StudentResult, format_summary, write_summary

MISTAKE = ("out is wrong. It matches what this common mistake gives: normalized with the unbiased variance "
           "(ddof=1).\n  Hint: np.var uses ddof=0.")


def results():
    return [StudentResult("101", 5, 10, [CellResult("test_train", 0, 5, MISTAKE), CellResult("test_eval", 5, 5)],
                          name="=HYPERLINK(\"x\")"),
            StudentResult("102", 0, 10, [CellResult("test_train", 0, 5, MISTAKE), CellResult("test_eval", 0, 5, "x")],
                          flags=["evil\x1b[2J\nname, forged row" + "long sentence. " * 3000]),
            StudentResult("103", 10, 10, [CellResult("test_train", 5, 5), CellResult("test_eval", 5, 5)])]


def test_summary_csv_is_quoted_formula_free_and_within_spreadsheet_limits(tmp_path):
    path = tmp_path / "summary.csv"
    write_summary(results(), path, ["-note"])
    rows = list(csv.reader(open(path, newline="", encoding="utf-8")))
    assert len(rows) == 5
    assert rows[1][1].startswith("'=") and rows[4][5].startswith("'-")
    assert all(len(c) <= text.SPREADSHEET_CELL_CHARS and "\x1b" not in c for row in rows for c in row)
    assert "normalized with the unbiased variance (ddof=1)" in rows[1][5]  # never cut mid-hint
    assert rows[2][5].endswith("more characters]") and "sentence. […" in rows[2][5]


def test_terminal_table_has_no_escape_sequences():
    table = format_summary(results())
    assert "\x1b" not in table and "[2J" in table.replace("?[2J", "[2J")


def test_class_report_counts_named_mistakes_and_links_students(tmp_path):
    page = tmp_path / "reports" / "ex-class.html"
    reports.write_class_report(results(), "ex", page, lambda s: tmp_path / "feedback" / s / "ex" / "ex.html")
    html = page.read_text()
    assert "<b>2 of 3</b>" in html and "normalized with the unbiased variance (ddof=1)." in html
    assert 'href="../feedback/101/ex/ex.html"' in html and "<svg" in html
    assert "http" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")  # offline
    assert "=HYPERLINK" not in html or "&quot;" in html


def test_grades_and_canvas_csv_carry_names_and_ids_and_read_back(tmp_path, monkeypatch):
    from nbgrader.api import Gradebook

    monkeypatch.setenv("PATH", gradebook.tool_env()["PATH"])  # nbgrader runs alembic

    db = f"sqlite:///{tmp_path / 'gb.db'}"
    with Gradebook(db) as gb:
        gb.add_assignment("ex")
    gradebook.set_students(db, {"101": ("alicesmith", "101"), "555": ("alicesmith", "555"),
                                "plainbob": ("=cmd|' /C calc'!A0", None)})
    gradebook.export_csv(tmp_path, db, tmp_path / "grades.csv")
    rows = {r["student_id"]: r for r in csv.DictReader(open(tmp_path / "grades.csv", newline=""))}
    assert set(rows) == {"101", "555", "plainbob"}
    assert rows["101"]["last_name"] == "alicesmith" and rows["101"]["lms_user_id"] == "101"
    assert rows["plainbob"]["last_name"].startswith("'=")
    gradebook.export_canvas(db, "ex", tmp_path / "canvas.csv")
    canvas = list(csv.DictReader(open(tmp_path / "canvas.csv", newline="")))
    assert canvas[0]["Student"] == "Points Possible"
    by_id = {r["ID"] or r["SIS Login ID"]: r for r in canvas[1:]}
    assert set(by_id) == {"101", "555", "plainbob"} and by_id["101"]["ex"] == "0.0"
    assert by_id["plainbob"]["SIS Login ID"] == "plainbob" and by_id["plainbob"]["ID"] == ""


def test_feedback_pages_wrap_render_math_offline_and_link_the_published_chapter(tmp_path):
    page = tmp_path / "feedback" / "101" / "ex" / "ex.html"
    page.parent.mkdir(parents=True)
    original = ('<html><head><!-- Load mathjax --><script src="https://cdnjs.cloudflare.com/mathjax.js"></script>'
                '<!-- End of mathjax configuration --></head><body><a href="../../chapters/ch02_x.md">Chapter 2</a>'
                "$x^2$</body></html>")
    page.write_text(original)
    gradebook.finish_feedback_page(page, site="https://course.example.org/bn")
    html = page.read_text()
    assert "cdnjs" not in html and (page.parent / gradebook.MATHJAX_FILE).stat().st_size > 100_000
    assert 'href="https://course.example.org/bn/chapters/ch02_x.html"' in html and "pre-wrap" in html
    page.write_text(original)
    gradebook.finish_feedback_page(page, site="")
    assert "html.baseurl in _config.yml) is not set" in page.read_text()
