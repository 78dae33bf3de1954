"""The book builds from clean with Sphinx warnings as errors and no cell errors, and the built
site works in a real browser (Debian's chromium driven by Playwright)."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ASSIGNMENTS, REPO

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHAPTERS = ["chapters/ch01_vanishing_exploding.html", "chapters/ch02_deriving_batchnorm.html",
            "chapters/ch03_backward_pass.html", "chapters/ch04_training_with_bn.html",
            "chapters/ch05_layernorm_and_relatives.html", "chapters/ch06_why_bn_works.html"]
EXERCISE_PAGES = [f"exercises/{name}/{name}.html" for name in ASSIGNMENTS]
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def executed_output(html_page: Path) -> str:
    """The text of a chapter's cell outputs only, unescaped: a pattern searched here cannot match the
    source of the print call that produced it."""
    from html.parser import HTMLParser

    class Outputs(HTMLParser):
        def __init__(self):
            super().__init__()
            self.depth, self.parts = 0, []   # depth > 0: inside a cell_output div

        def handle_starttag(self, tag, attrs):
            if tag != "div":
                return
            if self.depth:
                self.depth += 1
            elif "cell_output" in (dict(attrs).get("class") or "").split():
                self.depth = 1

        def handle_endtag(self, tag):
            if tag == "div" and self.depth:
                self.depth -= 1
                if not self.depth:
                    self.parts.append("\n")

        def handle_data(self, data):
            if self.depth:
                self.parts.append(data)

    parser = Outputs()
    parser.feed(html_page.read_text())
    return "".join(parser.parts)


def chapter_text(site: Path, chapter: str) -> tuple[str, str]:
    """(the whole page, unescaped; the text of its cell outputs only), after checking that no cell
    printed a traceback. Claims about measured numbers are read from the outputs, so that a pattern
    cannot match the source of the print call that produced it."""
    import html as html_lib

    page = site / "chapters" / f"{chapter}.html"
    whole = html_lib.unescape(page.read_text())
    assert "Traceback (most recent call last)" not in whole
    return whole, executed_output(page)


def cites(whole_page: str, *authors: str) -> bool:
    """Each author's name is in the hover text of a citation link into the bibliography (sphinxcontrib-
    bibtex writes the full reference there), not merely somewhere in the prose."""
    return all(re.search(r'href="../references.html#[^"]+" title="[^"]*' + re.escape(author), whole_page)
               for author in authors)


def test_pages_exist_and_solutions_are_not_published(site):
    for page in ["index.html", *CHAPTERS, *EXERCISE_PAGES, "references.html"]:
        assert (site / page).exists(), page
    published = "\n".join(p.read_text(errors="ignore") for p in site.rglob("*") if p.is_file()
                          and p.suffix in {".html", ".ipynb", ".md", ".txt", ".js"} and "mathjax" not in p.parts)
    assert "### BEGIN SOLUTION" not in published and "BEGIN HIDDEN TESTS" not in published
    assert not (site / "_sources" / "solutions").exists()


def test_chapter_shows_its_check_against_pytorch(site):
    html = (site / "chapters" / "ch02_deriving_batchnorm.html").read_text()
    assert "largest difference from nn.BatchNorm1d" in html and "largest difference from nn.BatchNorm2d" in html
    assert "Traceback (most recent call last)" not in html and "output traceback" not in html
    assert 'href="../references.html#' in html and "Ioffe and Christian Szegedy" in html  # cited, linked


def test_chapter_1_prose_matches_what_its_code_measured(site):
    """Chapter 1 says the deep sigmoid nets stall while tanh/Xavier and ReLU/He learn, and that the
    variance algebra predicts the per-layer factor: check the executed numbers say so too."""
    whole_page, page = chapter_text(site, "ch01_vanishing_exploding")
    accuracy = {name: float(value) for name, value in
                re.findall(r"(sigmoid, s = 0\.05|sigmoid, Xavier|tanh, Xavier|ReLU, He)\s+test accuracy after \d+ "
                           r"steps: ([0-9.]+)", page)}
    assert accuracy["sigmoid, s = 0.05"] < 0.2 and accuracy["sigmoid, Xavier"] < 0.2
    assert accuracy["tanh, Xavier"] > 0.9 and accuracy["ReLU, He"] > 0.9
    predicted = float(re.search(r"predicted factor per layer n\*s\^2 = ([0-9.]+)", page).group(1))
    measured = float(re.search(r"measured factor per layer \(layers 5-12\): ([0-9.]+)", page).group(1))
    assert abs(measured - predicted) < 0.05
    assert "largest sigmoid derivative: 0.2500" in page
    assert cites(whole_page, "Glorot", "Kaiming He")


def test_chapter_3_prose_matches_what_its_code_measured(site):
    """Chapter 3's claims, read from its executed outputs: the hand-written gradients agree with
    torch, gradcheck accepts the closed form and rejects detached statistics, the weight gradient
    is perpendicular to the weights, the norm-based error of a correct gradient is tiny while the
    elementwise one is much larger, and detached statistics make the bias before BN drift."""
    whole_page, page = chapter_text(site, "ch03_backward_pass")
    for name in ("dx", "dgamma", "dbeta"):
        difference = float(re.search(rf"{name}\s+largest difference from torch autograd: ([0-9.e+-]+)", page).group(1))
        assert difference < 1e-12, name
    assert "gradcheck, closed-form backward: True" in page
    assert "gradcheck, detached statistics: Jacobian mismatch" in page
    cosines = [float(v) for v in re.findall(r"largest \|cos\(W_j, dL/dW_j\)\| = ([0-9.e+-]+)", page)]
    assert len(cosines) == 2 and max(cosines) < 1e-5
    norm_based = float(re.search(r"correct gradient, norm-based relative error:\s+([0-9.e+-]+)", page).group(1))
    elementwise = float(re.search(r"correct gradient, largest elementwise rel. error: ([0-9.e+-]+)", page).group(1))
    assert norm_based < 1e-8 and elementwise > 100 * norm_based
    bias = {name: (float(first), float(last)) for name, first, last in
            re.findall(r"(full gradient|statistics detached)\s+final loss [0-9.]+; after step 1 and step \d+: "
                       r"\|b1\| ([0-9.]+) and ([0-9.]+)", page)}
    assert bias["full gradient"] == (0.0, 0.0) and bias["statistics detached"][1] > 5 * bias["statistics detached"][0]
    assert cites(whole_page, "Laarhoven")


def test_chapter_4_prose_matches_its_recorded_runs(site):
    """Chapter 4's claims about the CPU run, read from the page: BN learns at once where the plain
    network does not, the sigmoid input drifts only without BN, BN saves steps and tolerates every
    learning rate in the sweep, more init settings train with BN, BN fails at batch size 2 and in
    train mode on one-class batches, and folding keeps the output."""
    whole_page, page = chapter_text(site, "ch04_training_with_bn")
    assert "cpu run: CPU" in page and "command: python -m bncourse.experiments.bn_training --size cpu" in page
    live = {name: [float(v) for v in values.split(", ")] for name, values in
            re.findall(r"(without|with) BN: test accuracy after steps \[[0-9, ]+\]: ([0-9., ]+)\n", page)}
    assert live["with"][-1] > live["without"][-1] + 0.2
    paper = {name: (float(first), float(low), float(high)) for name, first, low, high in re.findall(
        r"cpu (without BN|with BN)\s*: mean test accuracy after \d+ steps ([0-9.]+), at the end [0-9.]+; median sigmoid "
        r"input moves over \[([0-9.-]+), ([0-9.-]+)\]", page)}
    assert paper["with BN"][0] > 0.9 and paper["without BN"][0] < 0.5
    assert paper["without BN"][2] - paper["without BN"][1] > 2 * (paper["with BN"][2] - paper["with BN"][1])
    paper_ratio = float(re.search(r"the paper: Inception .*: ([0-9.]+)x \(the headline", page).group(1))
    assert float(re.search(r"cpu run, steps saved by BN: ([0-9.]+)x at each one's best rate", page).group(1)) > 1
    # "well below the paper's", for either target, even at the top of what the evaluation interval leaves open
    best_rates = re.search(r"cpu run, with evaluations \d+ steps apart the ratio at the best rates lies between "
                           r"([0-9.]+)x and ([0-9.]+)x", page)
    papers_measure = re.search(r"cpu run, the paper's measure: .*: ([0-9.]+)x \(between ([0-9.]+)x and ([0-9.]+)x\)",
                               page)
    assert 1 < float(best_rates.group(1)) and float(best_rates.group(2)) < paper_ratio
    assert 1 < float(papers_measure.group(2)) and float(papers_measure.group(3)) < paper_ratio
    diverged = re.search(r"cpu run, settings where some seed diverged: (.*)\n", page).group(1)
    assert "without BN" in diverged and "with BN" not in diverged.replace("without BN", "")
    good = {name: int(n) for name, n in re.findall(r"cpu run, (without BN|with BN): (\d+) of \d+ settings reach", page)}
    assert good["with BN"] > 2 * good["without BN"]
    by_batch = {name: {int(b): float(a) for b, a in re.findall(r"B=(\d+): ([0-9.]+)", values)} for name, values in
                re.findall(r"cpu run, (without BN|with BN)\s*: (B=2: .*)\n", page)}
    bn, plain = by_batch["with BN"], by_batch["without BN"]
    assert bn[2] < 0.7 < plain[2]                                       # BN fails at B = 2
    assert abs(bn[4] - plain[4]) < 0.02                                 # "about as accurate" from a few on
    assert all(bn[b] >= plain[b] for b in bn if b >= 8)                 # "as accurate or more" from eight on
    largest = max(plain)
    assert plain[largest] < bn[largest] - 0.1                           # the plain network breaks down at the end
    rates_line = re.search(r"cpu run, learning rate: +(.*)\n", page).group(1)
    rates = {int(b): float(r) for b, r in re.findall(r"B=(\d+): ([0-9.]+)", rates_line)}
    assert max(rates, key=rates.get) == largest
    eval_mode = float(re.search(r"cpu run: eval mode ([0-9.]+);", page).group(1))
    one_class_line = re.search(r"cpu run: eval mode .*one class per batch: (.*)\n", page).group(1)
    one_class = [float(v) for v in re.findall(r"B=\d+: ([0-9.]+)", one_class_line)]
    assert eval_mode > 0.9 and max(one_class) < eval_mode - 0.3
    assert float(re.search(r"cpu run, inference.*largest output difference ([0-9.e+-]+)", page).group(1)) < 1e-4
    composite = re.search(r"cpu run,\s+hand-written \(composite ops\) .*\(([0-9.]+) x nn.BatchNorm2d\)", page)
    assert float(composite.group(1)) > 1                                      # "the slowest"
    assert "cpu run, torch.compile of the hand-written code is faster than nn.BatchNorm2d" in page  # "even faster"
    assert cites(whole_page, "Ioffe", "Santurkar", "Bjorck")


def test_chapter_5_prose_matches_what_its_code_measured(site):
    """Chapter 5's claims, read from its executed outputs: the five normalizations agree with
    torch.nn, LayerNorm is batch norm on the transpose forward and backward, batch norm's output for
    an example spreads like 1/sqrt(B) with its batch-mates while LayerNorm's does not move, batch norm
    fails at B = 2 where LayerNorm and GroupNorm do not, post-LN's last-block gradient does not depend
    on depth while pre-LN's falls like 1/sqrt(L), and RMSNorm loses shift invariance only."""
    whole_page, page = chapter_text(site, "ch05_layernorm_and_relatives")

    def number(pattern):
        return float(re.search(pattern, page).group(1))

    differences = re.findall(r"(?:BatchNorm|LayerNorm|InstanceNorm|GroupNorm|RMSNorm) +one (?:image|channel)[^\n]*? "
                             r"\d+ +([0-9.e+-]+)\n", page)
    assert len(differences) == 5 and all(float(d) < 1e-12 for d in differences)
    assert "GroupNorm with 1 group equals LayerNorm:     True" in page
    assert "GroupNorm with C groups equals InstanceNorm: True" in page
    assert number(r"max \|BN on the transpose - F.layer_norm\| = ([0-9.e+-]+)") < 1e-12
    for name in ("dx", "dgamma", "dbeta"):
        assert number(rf"{name}\s+max \|ours - autograd\| = ([0-9.e+-]+)") < 1e-12, name
    assert number(r"largest \|sum of dx over an example's features\| = ([0-9.e+-]+)") < 1e-12
    assert "LayerNorm   max |train-mode output - eval-mode output| = 0.000; buffers: []" in page
    assert number(r"BatchNorm1d max \|train-mode output - eval-mode output\| = ([0-9.]+)") > 0.1

    bn_spread = [float(v) for v in re.search(r"batch norm spread:\s+([0-9. ]+)\n", page).group(1).split()]
    ln_spread = [float(v) for v in re.search(r"LayerNorm spread \(max\):\s+([0-9. ]+)\n", page).group(1).split()]
    assert len(bn_spread) == 7 and all(a > b for a, b in zip(bn_spread, bn_spread[1:])) and set(ln_spread) == {0.0}
    assert -0.6 < number(r"fitted slope of log\(spread\) against log\(B\) for B >= 8: ([0-9.-]+)") < -0.4
    assert 0.15 < number(r"at B = 32 the example's normalized value moves by ([0-9.]+)") < 0.25   # "about a fifth"
    assert number(r"at B = 2, (\d+)% of the example's") >= 80

    accuracy = {name: [float(v) for v in values.split()] for name, values in re.findall(
        r"(no normalization|batch norm|LayerNorm|GroupNorm \(8 groups\)|batch norm, test batches of B)\s+"
        r"((?:[0-9.]+ +){6}[0-9.]+)\n", page)}
    assert len(accuracy) == 5
    bn, ln, gn, bn_test = (accuracy[k] for k in ("batch norm", "LayerNorm", "GroupNorm (8 groups)",
                                                 "batch norm, test batches of B"))
    assert bn[0] < 70 and bn_test[0] < 70 and ln[0] > 85 and gn[0] > 85
    steps = [int(v) for v in re.search(r"training steps per run\s+([0-9 ]+)\n", page).group(1).split()]
    prose_steps = re.search(r"are only (\d+)\s+steps\s+\(the\s+table.s\s+row\s+of\s+training\s+steps\)", whole_page)
    assert int(prose_steps.group(1)) == steps[-1]
    plain = accuracy["no normalization"]
    assert plain[-1] < plain[4] - 1        # "the curves without batch norm drop" at B = 128 (vs B = 32)
    from sklearn.datasets import load_digits

    images = len(load_digits().target)
    split = re.search(r"\((\d+) training and (\d+) test images;", page)   # "a random 80/20 split of the 1,797"
    assert (int(split.group(1)), int(split.group(2))) == (images * 4 // 5, images - images * 4 // 5)
    assert f"{images:,} images" in whole_page
    assert all(bn[i] >= max(ln[i], gn[i]) - 1.0 for i in range(2, 7))  # B = 8 ... 128
    assert all(bn_test[i] < bn[i] - 2 for i in range(3))                 # B = 2, 4, 8

    stacks = {p: (float(first), float(last), float(slope)) for p, first, last, slope in re.findall(
        r"(post-LN|pre-LN): stream RMS after block 1 and 24: ([0-9.]+) and ([0-9.]+); .*?\(slope ([0-9.-]+)\)", page)}
    assert stacks["post-LN"][:2] == (1.0, 1.0) and abs(stacks["post-LN"][2]) < 0.15
    assert stacks["pre-LN"][1] > 3 * stacks["pre-LN"][0] and -0.6 < stacks["pre-LN"][2] < -0.4

    squares = re.search(r"mean of x\^2 = ([0-9.]+); variance \+ mean\^2 = ([0-9.]+)", page)
    assert squares.group(1) == squares.group(2)
    moves = re.findall(r"LayerNorm output moves by ([0-9.e+-]+), RMSNorm's by ([0-9.]+)", page)
    assert len(moves) == 3 and all(float(ln) < 1e-12 and float(rms) > 0.01 for ln, rms in moves)
    assert number(r"multiply the example by 3.7: RMSNorm output moves by ([0-9.e+-]+)") < 1e-12
    assert "RMSNorm takes" in page
    assert cites(whole_page, "Jimmy Lei Ba", "Yuxin Wu", "Ulyanov", "Sennrich", "Xiong")


@pytest.mark.parametrize("exercise", ASSIGNMENTS)
def test_exercise_page_offers_the_notebook_and_its_chapter_links_to_it(site, exercise):
    html = (site / "exercises" / exercise / f"{exercise}.html").read_text()
    assert f"{exercise}.ipynb" in html
    number = exercise[2:4]
    chapter = next((site / "chapters").glob(f"ch{number}_*.html")).read_text()
    assert f"../exercises/{exercise}/{exercise}.html" in chapter
    assert "_downloads/" in chapter and f"/{exercise}.ipynb" in chapter  # {download} copies the notebook in
    intro = (site / "intro.html").read_text()
    assert f"exercises/{exercise}/{exercise}.html" in intro


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.fail("Debian's chromium is not installed: `make test` installs it (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield b
        b.close()


# Jupyter Book 1.0.4 writes sphinx-thebe's inline config script twice into every page (the
# extension's env-before-read-docs hook runs twice). It is harmless here (thebe is not used) and
# not ours to fix; any other page error fails the test.
KNOWN_THIRD_PARTY_ERRORS = ("Identifier 'THEBE_JS_URL' has already been declared",)

PAGES_WITH_MATH = {*CHAPTERS, *EXERCISE_PAGES}
PAGES = ["intro.html", *CHAPTERS, *EXERCISE_PAGES, "references.html"]


@pytest.mark.parametrize("page", PAGES)
def test_page_loads_cleanly_in_chromium(browser, server, page):
    tab = browser.new_page()
    problems = []
    tab.on("console", lambda msg: problems.append(f"console {msg.type}: {msg.text}") if msg.type == "error" else None)
    tab.on("pageerror", lambda exc: None if str(exc) in KNOWN_THIRD_PARTY_ERRORS else problems.append(f"page error: {exc}"))
    tab.on("requestfailed", lambda req: problems.append(f"request failed: {req.url} ({req.failure})"))
    tab.on("response", lambda res: problems.append(f"HTTP {res.status}: {res.url}") if res.status >= 400 else None)
    tab.goto(f"{server}/{page}", wait_until="networkidle")
    if page in PAGES_WITH_MATH:
        tab.wait_for_selector("mjx-container", timeout=20000)  # MathJax has typeset the page
        assert "$$" not in tab.inner_text("article")
    broken = tab.evaluate("Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src)")
    assert not broken, f"images that did not load: {broken}"
    assert not problems, "\n".join(problems)
    tab.close()


VIEWPORTS = {"desktop": (1280, 900), "phone": (390, 844)}
# What may be wider than its column, at which width, and why. Everything else must fit.
WIDER_THAN_COLUMN_ALLOWED = {
    ("phone", "display equation"): "MathJax 3 cannot break a display equation across lines; on a phone a "
                                   "long one scrolls inside its own box (course-layout.css), never the page",
}
WIDTH_PROBE = """() => {
  const kinds = {"div.highlight pre": "code", "div.cell_output pre": "output", "div.output pre": "output",
                 "mjx-container[display='true']": "display equation", "article table": "table"};
  const wide = [];
  for (const [selector, kind] of Object.entries(kinds)) {
    for (const el of document.querySelectorAll(selector)) {
      if (el.scrollWidth > el.clientWidth + 1) {
        wide.push([kind, (el.textContent || "").replace(/\\s+/g, " ").slice(0, 60), el.scrollWidth, el.clientWidth]);
      }
    }
  }
  return {page: document.documentElement.scrollWidth - document.documentElement.clientWidth, wide};
}"""


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_nothing_is_wider_than_its_column(browser, server, viewport):
    """No code block, printed output, table or equation scrolls sideways (scrollWidth <= clientWidth),
    and the page itself never does, on a desktop and on a phone; only the named exceptions."""
    width, height = VIEWPORTS[viewport]
    context = browser.new_context(viewport={"width": width, "height": height})
    problems = []
    for page in PAGES:
        tab = context.new_page()
        tab.goto(f"{server}/{page}", wait_until="networkidle")
        if page in PAGES_WITH_MATH:
            tab.wait_for_selector("mjx-container", timeout=20000)
        found = tab.evaluate(WIDTH_PROBE)
        if found["page"] > 0:
            problems.append(f"{page}: the page scrolls sideways by {found['page']} px")
        problems += [f"{page}: {kind} {text!r} is {scroll} px wide in a {client} px column"
                     for kind, text, scroll, client in found["wide"] if (viewport, kind) not in WIDER_THAN_COLUMN_ALLOWED]
        tab.close()
    context.close()
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_every_figure_opens_full_size(browser, server, chapter):
    """On a phone a figure is shown at a third of its size; a click opens it full size, where its text
    is legible."""
    context = browser.new_context(viewport={"width": 390, "height": 844})
    tab = context.new_page()
    tab.goto(f"{server}/{chapter}", wait_until="networkidle")
    figures = tab.evaluate("""() => Array.from(document.querySelectorAll("div.cell_output img")).map(img =>
        [img.closest("a.figure-full-size") ? img.closest("a").href : null, img.src])""")
    assert figures and all(link == src for link, src in figures), figures
    context.close()


def test_index_redirects_to_the_intro(browser, server):
    tab = browser.new_page()
    tab.goto(f"{server}/index.html")
    tab.wait_for_url("**/intro.html")
    assert "Course map" in tab.inner_text("article")
    tab.close()


@pytest.mark.parametrize("chapter, figures", [("ch01_vanishing_exploding", 6), ("ch02_deriving_batchnorm", 2),
                                                  ("ch03_backward_pass", 4), ("ch04_training_with_bn", 5),
                                                  ("ch05_layernorm_and_relatives", 4), ("ch06_why_bn_works", 8)])
def test_chapter_figures_and_math_render(browser, server, chapter, figures):
    tab = browser.new_page()
    tab.goto(f"{server}/chapters/{chapter}.html", wait_until="networkidle")
    tab.wait_for_selector("mjx-container")
    assert tab.locator("mjx-container").count() > 10
    images = tab.locator("article img")
    assert images.count() >= figures
    assert all(images.nth(i).evaluate("img => img.naturalWidth") > 0 for i in range(images.count()))
    tab.close()


def test_search_finds_momentum(browser, server):
    tab = browser.new_page()
    tab.goto(f"{server}/search.html?q=momentum", wait_until="networkidle")
    tab.wait_for_selector("#search-results li", timeout=20000)
    results = tab.inner_text("#search-results")
    assert "Deriving Batch Normalization" in results
    tab.close()


@pytest.mark.parametrize("page", EXERCISE_PAGES)
def test_exercise_page_offers_the_bundle_the_notebook_and_the_setup_lines(browser, server, page):
    tab = browser.new_page()
    tab.goto(f"{server}/{page}", wait_until="networkidle")
    box = tab.locator("#get-this-exercise")
    assert box.is_visible()
    text = box.inner_text()
    assert "pip install -r requirements.txt" in text and "jupyter lab" in text and "no answers" in text
    links = [box.locator("a").nth(i).evaluate("a => a.href") for i in range(box.locator("a").count())]
    assert any(link.endswith(".zip") for link in links) and any(link.endswith(".ipynb") for link in links)
    for link in links:
        assert tab.request.get(link).status == 200, link
    # no launch button while no public repository is configured
    assert tab.locator("a[href*='colab.research.google.com'], a[href*='mybinder']").count() == 0
    tab.close()


@pytest.fixture(scope="module")
def site_with_launch_buttons(tmp_path_factory, site):
    """The exercise pages built once more, unexecuted, with placeholder public addresses in the config."""
    import yaml

    tmp = tmp_path_factory.mktemp("launch")
    config = yaml.safe_load((REPO / "_config.yml").read_text())
    config["repository"] = {"url": "https://github.com/example/bn-course-student", "branch": "main"}
    config["launch_buttons"].update(colab_url="https://colab.research.google.com", binderhub_url="https://mybinder.org",
                                    jupyterhub_url="https://hub.example.org")
    config["execute"]["execute_notebooks"] = "off"
    toc = yaml.safe_load((REPO / "_toc.yml").read_text())
    toc["parts"] = [part for part in toc["parts"] if part["caption"] == "Exercises"]
    (tmp / "_config.yml").write_text(yaml.safe_dump(config))
    (tmp / "_toc.yml").write_text(yaml.safe_dump(toc))
    jupyter_book = Path(sys.executable).parent / "jupyter-book"
    result = subprocess.run([str(jupyter_book), "build", str(REPO), "--config", str(tmp / "_config.yml"),
                             "--toc", str(tmp / "_toc.yml"), "--path-output", str(tmp / "out")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-4000:]
    return tmp / "out" / "_build" / "html"


@pytest.mark.parametrize("page", EXERCISE_PAGES)
def test_launch_buttons_appear_when_a_public_repository_is_configured(browser, site_with_launch_buttons, page):
    tab = browser.new_page()
    tab.goto(f"file://{site_with_launch_buttons / page}")
    notebook = page.replace(".html", ".ipynb")
    for service in ("https://colab.research.google.com/github/example/bn-course-student/blob/main/",
                    "https://mybinder.org/v2/gh/example/bn-course-student/main", "https://hub.example.org/hub/"):
        button = tab.locator(f"a[href^='{service}']")
        assert button.count() == 1, service
        assert notebook in button.first.evaluate("a => decodeURIComponent(a.href)")
    tab.close()
