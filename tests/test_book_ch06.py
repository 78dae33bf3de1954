"""Chapter 6 in the built book: its claims, read from its executed outputs, and the numbers its prose
shows (glued from the code) are the numbers its cells printed. The book is built once per session
(``conftest.site``); the helpers are test_book's."""

import re

import numpy as np
import pytest

from test_book import chapter_text, cites

pytestmark = pytest.mark.slow
CHAPTER = "ch06_why_bn_works"


def _numbers(text):
    return np.array([float(v) for v in re.findall(r"[-+]?\d+\.?\d*(?:e[-+]?\d+)?|nan", text)])


def _prose(whole_page):
    """The page as plain text: tags removed, whitespace collapsed (glued numbers sit in their own spans)."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", whole_page))


@pytest.fixture(scope="module")
def chapter(site):
    whole_page, outputs = chapter_text(site, CHAPTER)
    return whole_page, outputs, _prose(whole_page)


def after(outputs, heading):
    """The outputs that follow a printed heading line."""
    assert heading in outputs, heading
    return outputs.split(heading, 1)[1]


def test_noisy_batch_norm_moves_the_inputs_and_still_trains_at_the_larger_rate(chapter):
    _, outputs, prose = chapter
    moved = {kind: _numbers(values) for kind, values in re.findall(
        r"\n  (without BN|with BN|noisy BN) *: \[([0-9. ]+)\]", after(outputs, "spreads per 10 steps, per seed"))[:3]}
    assert set(moved) == {"without BN", "with BN", "noisy BN"}
    assert moved["with BN"].max() < 0.05 * moved["without BN"].min()
    assert moved["noisy BN"].min() > moved["without BN"].max()
    plain = moved["without BN"]
    assert f"move by {plain.min():.2f} to {plain.max():.2f} spreads every 10 steps" in prose
    reached = {(kind, lr): [None if s == "None" else int(s) for s in steps.split(", ")] for kind, lr, steps in
               re.findall(r"  (without BN|with BN|noisy BN) +lr = (0\.[13]): \[([0-9, None]+)\]", outputs)}
    assert len(reached) == 6
    assert None not in reached["noisy BN", "0.3"] and sum(s is not None for s in reached["without BN", "0.3"]) <= 1
    noisy = reached["noisy BN", "0.3"]
    assert f"after {min(noisy)} to {max(noisy)} steps" in prose


def test_batch_norm_does_not_reduce_the_change_of_gradients(chapter):
    _, outputs, prose = chapter
    cosines = {kind: (_numbers(start), _numbers(median)) for kind, start, median in re.findall(
        r"  (without BN|with BN) *: at step 0 \[([0-9. -]+)\], median over training \[([0-9. -]+)\]", outputs)}
    assert cosines["with BN"][0].max() < cosines["without BN"][0].min()
    lower = int((cosines["with BN"][1] < cosines["without BN"][1]).sum())
    assert lower >= 3 and f"it is lower with batch norm in {lower} of the 4 seeds" in prose


def test_the_landscape_is_smoother_over_a_step_but_not_over_the_shortest_one(chapter):
    _, outputs, prose = chapter
    medians = {}
    for kind, block in re.findall(r"  (without BN|with BN):\n((?:    .*\n){3})", after(outputs, "medians over training")):
        medians[kind] = {name.strip(): _numbers(values) for name, values in re.findall(r"    ([a-z ]+?) *\[([^\]]*)\]",
                                                                                    block)}
    assert (medians["without BN"]["loss range"] > 5 * medians["with BN"]["loss range"]).all()
    assert (medians["without BN"]["gradient change"] > 2 * medians["with BN"]["gradient change"]).all()
    ratio = medians["without BN"]["smoothness"] / medians["with BN"]["smoothness"]
    assert (ratio < 1.5).all() and (ratio > 1 / 1.5).all()
    profile = {kind: _numbers(values) for kind, values in re.findall(
        r"  (without BN|with BN) *: \[([0-9. ]+)\]", after(outputs, "gradient change / |eta g|"))[:2]}
    assert (np.diff(profile["with BN"]) < 0).all() and profile["with BN"][-1] < 0.5 * profile["without BN"][-1]
    assert f"to {profile['with BN'][-1]:.1f} at η = 0.4" in prose


def test_batch_norm_tolerates_a_much_larger_learning_rate(chapter):
    _, outputs, prose = chapter
    rows = re.findall(r"\n *(\d\.\d\d)  \[([^\]]*)\] +\[([^\]]*)\]", after(outputs, "training loss after 100 steps"))
    assert len(rows) == 8
    rates = [float(rate) for rate, _, _ in rows]
    plain = [_numbers(values) for _, values, _ in rows]
    normalized = [_numbers(values) for _, _, values in rows]
    largest = {name: max(rate for rate, losses in zip(rates, table) if (losses < 1).all())
               for name, table in (("plain", plain), ("bn", normalized))}
    assert largest["bn"] >= 16 * largest["plain"]
    assert not any(np.isnan(losses).any() for losses in normalized) and np.isnan(plain[-1]).all()
    assert f"is {largest['plain']:g} without batch norm and {largest['bn']:g} with it" in prose


def test_scale_invariant_weights_are_orthogonal_to_their_gradients_and_tune_their_rate(chapter):
    _, outputs, prose = chapter
    rows = re.findall(r"\n +(\d) +([-+][0-9.]+e[-+]\d+) +([-+][0-9.]+e[-+]\d+)", outputs)
    assert len(rows) == 9
    assert all(abs(float(default)) < 1e-5 and abs(float(tiny)) < 1e-12 for _, default, tiny in rows[:-1])
    assert abs(float(rows[-1][1])) > 1e-2
    runs = {name: [_numbers(v) for v in values] for name, *values in re.findall(
        r"(lr 0\.1|lr 0\.5|lr 0\.1, weight decay):\n  \|W\| \[([^\]]*)\] -> \[([^\]]*)\]; rate \[([^\]]*)\] -> "
        r"\[([^\]]*)\]", outputs)}
    assert len(runs) == 3
    assert (runs["lr 0.1"][1] > 1.3 * runs["lr 0.1"][0]).all() and (runs["lr 0.5"][1] > runs["lr 0.1"][1]).all()
    end_ratio = runs["lr 0.5"][3] / runs["lr 0.1"][3]        # printed to 3 decimals: a loose check
    assert (end_ratio < 2.5).all()
    assert (runs["lr 0.1, weight decay"][3] > runs["lr 0.1"][3]).all()
    assert cites(chapter[0], "Laarhoven", "Sanjeev Arora")


def test_ghost_batches_shrink_the_generalization_gap(chapter):
    _, outputs, prose = chapter
    table = {name: (int(steps), float(test), float(test_sd), float(gap), float(gap_sd)) for name, steps, _, test,
             test_sd, gap, gap_sd in re.findall(r"\n(B = \d+(?:, ghost 16)?) +(\d+) +([0-9.]+) +([0-9.]+)±([0-9.]+) +"
                                                 r"([0-9.]+)±([0-9.]+)", outputs)}
    assert len(table) == 5 and table["B = 256"][0] == 58 and table["B = 16"][0] == 937
    assert table["B = 16"][3] < table["B = 64"][3] < table["B = 256"][3]
    for size in (64, 256):
        plain, ghost = table[f"B = {size}"], table[f"B = {size}, ghost 16"]
        assert plain[3] - ghost[3] > plain[4] + ghost[4]
    assert f"at B = 256 to {table['B = 256, ghost 16'][3]:.3f} ± {table['B = 256, ghost 16'][4]:.3f}" in prose
    assert cites(chapter[0], "Elad Hoffer", "Ping Luo")


def test_where_batch_norm_hurts(chapter):
    whole_page, outputs, prose = chapter
    dropout = {p: [_numbers(v) for v in values] for p, *values in re.findall(
        r"p = (0\.[025]): \[([0-9. ]+)\]; \[([0-9. ]+)\] -> \[([0-9. ]+)\]", outputs)}
    assert len(dropout) == 3
    assert (abs(dropout["0.0"][0] - 1) < 0.1).all() and dropout["0.5"][0].max() < dropout["0.2"][0].min() < 0.9
    assert (dropout["0.5"][2] > dropout["0.5"][1]).all()
    depth = {kind: (_numbers(values), float(factor)) for kind, values, factor in re.findall(
        r"(without BN|with BN): ([0-9.e+ ]+?) +([0-9.]+)\n", after(outputs, "median over seeds"))}
    assert depth["with BN"][0][-1] > 100 and (np.diff(np.log(depth["with BN"][0])) > 0).all()
    assert depth["without BN"][0].max() < 10 and depth["with BN"][1] > 1.1
    assert f"by a factor of about {depth['with BN'][1]:.2f} per layer" in prose
    assert cites(whole_page, "Xiang Li", "Greg Yang", "Soham De", "Andrew Brock")


def test_the_closing_table_and_the_exercise_link(chapter):
    whole_page, _, prose = chapter
    assert "What the evidence says" in prose and "how sure" in prose
    table = whole_page.split("What the evidence says", 1)[1].split("</table>", 1)[0]
    assert table.count("<tr") == 7                      # a header and six explanations
    assert "ex06_why_bn_works.html" in whole_page and cites(whole_page, "Ioffe", "Santurkar")
