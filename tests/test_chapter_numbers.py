"""No measured number is typed into a chapter's prose: a number the code measured reaches the text
through myst-nb's glue (``{glue:text}`name:.2f```), where the build recomputes it.

A number that may stand in the prose as typed is one of
* a setting of the chapter's own code: the same value is a literal in one of its code cells
  (a batch of 256, 12 layers, a target of 90%);
* a reference (Chapter 4, Section 4.1, Figure 1, Exercise 2, Theorem 1, ResNet-50), a list number,
  or a heading's number;
* an entry of TYPED below, with the reason it is not a measurement of ours (a figure quoted from a
  paper, a mathematical fact).
Numbers in display math and in inline math are formulas, except decimals and powers of ten
written in inline math ($10^{-10}$), which are checked like the prose.
"""

import io
import re
import tokenize

import pytest

from conftest import REPO

CHAPTERS = sorted((REPO / "chapters").glob("ch*.md"))

# chapter stem -> {number as written: why it is typed}
TYPED = {
    "ch01_vanishing_exploding": {
        "0.64": "n s^2 = 256 x 0.05^2, arithmetic on the chapter's settings",
    },
    "ch04_training_with_bn": {
        "15": "the paper's 15th, 50th and 85th percentiles (Figure 1), the keys of the result file",
        "50": "the paper's 15th, 50th and 85th percentiles (Figure 1), the keys of the result file",
        "85": "the paper's 15th, 50th and 85th percentiles (Figure 1), the keys of the result file",
    },
    "ch06_why_bn_works": {
        "2.30": "ln 10, the loss of a uniform guess over ten classes",
        "8.7": "Brock et al.'s reported training speed-up of NFNets over EfficientNet-B7",
    },
    "ch05_layernorm_and_relatives": {
        "80": "the 80/20 split, set by the code as len(images) * 4 // 5",
        "20": "the 80/20 split, set by the code as len(images) * 4 // 5",
        "10.6%": "Wu & He's reported ImageNet error difference (Figure 1 of their paper)",
        "7%": "Zhang & Sennrich's reported range of running-time reductions",
        "64%": "Zhang & Sennrich's reported range of running-time reductions",
    },
}

# A reference names one thing ("Chapter 4", "Section 4.1"), or, in the plural, a list that ends with
# "and"/"or"/"to" or a dash ("Chapters 4, 5 and 6", "Figures 2-3"), so a number after a comma that does not
# continue such a list ("as in Chapter 4, 0.93 of the runs") is still read as a number.
_REF_NUMBER = r"\d+(?:\.\d+)*"
REFERENCE = re.compile(
    rf"\b(?:(?:Chapters|Sections|Figures|Exercises|Tables)\s*{_REF_NUMBER}"
    rf"(?:(?:\s*,\s*{_REF_NUMBER})*\s*,?\s*(?:and|or|to)\s+{_REF_NUMBER}|\s*[-\u2013]\s*{_REF_NUMBER})?"
    rf"|(?:Chapter|Section|Figure|Exercise|Theorem|Table|Eq\.|ResNet-)\s*{_REF_NUMBER})", re.I)
# A leading minus is part of the number ("a slope of -0.48"); a number glued to a word or a dot is not one.
NUMBER = re.compile(r"(?<![\w.^{])(-?(?:\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?(?:e-?\d+)?))\s?(%|\u00d7|x\b)?")
POWER_OF_TEN = re.compile(r"10\^\{?(-?\d+)\}?")
# Fenced blocks whose body is code or a formula; any other directive (an admonition, say) is prose.
NOT_PROSE = re.compile(r"^```(?:\{code-cell\}|\{math\}|\{literalinclude\}|[\w-]*$)[^\n]*\n.*?^```\s*$",
                       re.S | re.M)


def split_cells(text: str) -> tuple[str, str]:
    """(the prose, the code of every code cell) of a MyST notebook. An admonition's body is prose; its
    fences and option lines are not."""
    text = text.split("\n---\n", 1)[1] if text.startswith("---") else text
    code = "\n".join(re.findall(r"^```\{code-cell\}[^\n]*\n(.*?)^```\s*$", text, flags=re.S | re.M))
    prose = NOT_PROSE.sub("", text)
    prose = re.sub(r"^```.*$|^:[\w-]+:.*$", "", prose, flags=re.M)
    return prose, code


def code_literals(code: str) -> set[float]:
    values = set()
    for token in tokenize.generate_tokens(io.StringIO(code).readline):
        if token.type == tokenize.NUMBER:
            try:
                values.add(float(token.string.replace("_", "")))
            except ValueError:
                pass
    return values


def typed_numbers(prose: str) -> list[tuple[str, float]]:
    """(as written, value) for every number a reader sees in the prose, outside glue, code, math,
    citations, links and references."""
    prose = re.sub(r"\$\$.*?\$\$", " ", prose, flags=re.S)
    found = []
    for math in re.findall(r"\$([^$\n]+)\$", prose):     # inline math: decimals and powers of ten only
        found += [(f"10^{m}", 10.0 ** int(m)) for m in POWER_OF_TEN.findall(math)]
        found += [(m, float(m)) for m in re.findall(r"\d+\.\d+", math)]
    prose = re.sub(r"\$[^$\n]+\$", " ", prose)
    prose = re.sub(r"\{[\w:-]+\}`[^`]*`", " ", prose)    # roles: glue, cite, ref, download
    prose = re.sub(r"`[^`]*`", " ", prose)                # inline code
    prose = re.sub(r"\]\([^)]*\)", "]", prose)            # link targets
    prose = re.sub(r"^\s*(?:#+|\d+\.|[*-])\s", " ", prose, flags=re.M)   # headings, list markers
    prose = re.sub(r"^\(\w+\)=$", " ", prose, flags=re.M)                # labels
    prose = REFERENCE.sub(" ", prose)
    for written, unit in NUMBER.findall(prose):
        value = abs(float(written.replace(",", "")))
        found.append((written + unit, value / 100 if unit == "%" else value))
    return found


def _same(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-9 * max(abs(a), abs(b))


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_no_measured_number_is_typed_into_the_prose(chapter):
    prose, code = split_cells(chapter.read_text())
    settings = code_literals(code)
    typed = TYPED.get(chapter.stem, {})
    unexplained = []
    for written, value in typed_numbers(prose):
        as_written = written.rstrip("%×x ").strip()
        if as_written in typed or written in typed:
            continue
        if any(_same(value, s) or (written.endswith("%") and _same(100 * value, s)) for s in settings):
            continue
        unexplained.append(written)
    assert not unexplained, (f"{chapter.name}: numbers typed into the prose that its code does not set: "
                             f"{sorted(set(unexplained))}. Glue a measured number from the code; add a quoted "
                             f"or mathematical one to TYPED with the reason.")


def test_the_scanner_finds_typed_measurements():
    """A typed accuracy, ratio, percentage and power of ten are found; glued, coded and cited ones are not."""
    prose = ("BN reaches 0.97 accuracy, 3.2x faster, 44% of the time, an error near $10^{-10}$; "
             "{glue:text}`acc:.2f` and `0.5` and {cite:t}`ioffe2015batch` and Chapter 4 and Section 4.1.\n")
    assert [w for w, _ in typed_numbers(prose)] == ["10^-10", "0.97", "3.2x", "44%"]
    # a number right after a reference, a negative number, and Chapters listed with "and"
    prose = "as in Chapter 4, 0.93 of the runs; a slope of -0.48 (Section 2.1, 37 of 40 seeds); Chapters 4, 5 and 6.\n"
    assert [w for w, _ in typed_numbers(prose)] == ["0.93", "-0.48", "37", "40"]


def test_an_admonitions_body_is_prose_and_a_code_cell_is_not():
    chapter = ("```{admonition} Note\n:class: tip\nThe loss fell to 0.31 here.\n```\n\n"
               "```{code-cell} ipython3\nbatch = 256\n```\n\n```console\n$ make 512\n```\nA batch of 256.\n")
    prose, code = split_cells(chapter)
    assert code.strip() == "batch = 256"
    assert [w for w, _ in typed_numbers(prose)] == ["0.31", "256"]


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_claims_are_asserted_next_to_them(chapter):
    """Every chapter holds its claims with hidden assert cells, and glues the numbers it states."""
    text = chapter.read_text()
    hidden_asserts = re.findall(r":tags: \[remove-cell\]\n(?:#[^\n]*\n)*[^`]*?assert ", text)
    assert len(hidden_asserts) >= 3, f"{chapter.name}: claims without hidden assert cells"
    assert "{glue:text}" in text, f"{chapter.name}: no number glued from the code"
