"""Sphinx extension: the site is the whole distribution of the exercises.

When the book is built this

* builds the student kit's wheel (:mod:`bncourse.kit`) into ``_static/kit/``;
* writes one zip bundle per exercise into ``_static/bundles/<exercise>.zip``: the notebook, the kit
  wheel, a ``requirements.txt`` and a three-line ``README.txt``; the notebook alone goes to
  ``_static/exercises/<exercise>.ipynb``;
* puts a box at the top of each exercise page with these downloads and the setup lines;
* writes the chapters' figures as files in ``_images/`` instead of the data: URLs their outputs carry
  (:mod:`bncourse.plotting` emits a ``<picture>`` of two PNGs): a page stays small, a phone fetches
  only the rendering it shows, and a figure met twice is downloaded once.

Launch buttons (Colab, Binder, JupyterHub) are Jupyter Book's own: they appear when
``repository.url`` and ``launch_buttons`` are set in ``_config.yml`` (see the README). Nothing here
reads ``solutions/``: the bundles hold the released notebook and the kit, which has no answers.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import os
import re
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EXERCISES = REPO / "exercises"


def exercises() -> list[str]:
    return sorted(p.name for p in EXERCISES.iterdir() if (p / f"{p.name}.ipynb").exists())


def requirements(notebook_text: str, wheel: str) -> str:
    """What a student installs for one exercise: the kit, the libraries its notebook imports, JupyterLab."""
    code = "\n".join("".join(cell["source"]) for cell in json.loads(notebook_text)["cells"]
                     if cell["cell_type"] == "code")
    lines = [f"./{wheel}", "numpy"]
    for library in ("matplotlib", "torch"):
        if re.search(rf"^\s*(import|from) {library}\b", code, re.M):
            lines.append(library)
    return "\n".join([*lines, "jupyterlab", ""])


def readme(exercise: str) -> str:
    return (f"1. Open a terminal in this folder (Python 3.9 or newer).\n"
            f"2. python -m pip install -r requirements.txt\n"
            f"3. jupyter lab {exercise}.ipynb\n")


def write_bundles(outdir: Path) -> None:
    from . import kit   # imports every exercise's cases: only when the site is written

    wheel = kit.build(outdir / "_static" / "kit")
    for exercise in exercises():
        notebook = EXERCISES / exercise / f"{exercise}.ipynb"
        text = notebook.read_text(encoding="utf-8")
        single = outdir / "_static" / "exercises" / f"{exercise}.ipynb"
        single.parent.mkdir(parents=True, exist_ok=True)
        single.write_text(text, encoding="utf-8")
        bundle = outdir / "_static" / "bundles" / f"{exercise}.zip"
        bundle.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(bundle, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr(f"{exercise}/{exercise}.ipynb", text)
            z.write(wheel, f"{exercise}/{wheel.name}")
            z.writestr(f"{exercise}/requirements.txt", requirements(text, wheel.name))
            z.writestr(f"{exercise}/README.txt", readme(exercise))


def _box(exercise: str, pathto) -> str:
    bundle = pathto(f"_static/bundles/{exercise}.zip", 1)
    notebook = pathto(f"_static/exercises/{exercise}.ipynb", 1)
    lines = "\n".join(html.escape(line.split(". ", 1)[1]) for line in readme(exercise).splitlines()[1:])
    return (f'<div class="admonition tip exercise-downloads" id="get-this-exercise">'
            f'<p class="admonition-title">Do this exercise on your computer</p>'
            f'<p><a class="reference download" href="{bundle}" download>Download the bundle ({exercise}.zip)</a>: '
            f'the notebook, the course\'s student kit (the checks, no answers) and a requirements file. '
            f'Unzip it, then in its folder:</p>'
            f'<pre class="exercise-setup">{lines}</pre>'
            f'<p>Or <a class="reference download" href="{notebook}" download>download the notebook alone</a>: its '
            f'first cell installs the kit when it is missing.</p></div>')


EMBEDDED_PNG = re.compile(r'\b(src|srcset)="data:image/png;base64,([A-Za-z0-9+/=]+)"')


def figures_as_files(body: str, images: Path, link) -> str:
    """``body`` with each PNG embedded in a ``src`` or ``srcset`` attribute written to ``images`` (named
    by its content, so identical figures share one file) and the attribute pointing at ``link(name)``."""
    def as_file(match):
        data = base64.b64decode(match.group(2))
        name = f"figure-{hashlib.sha256(data).hexdigest()[:24]}.png"
        target = images / name
        if not target.exists():
            images.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(f".{name}.{os.getpid()}")   # pages may be written in parallel
            partial.write_bytes(data)
            partial.replace(target)
        return f'{match.group(1)}="{html.escape(link(name))}"'

    return EMBEDDED_PNG.sub(as_file, body)


def _page_context(app, pagename, templatename, context, doctree):
    if "body" not in context:
        return
    context["body"] = figures_as_files(context["body"], Path(app.outdir) / "_images",
                                       lambda name: context["pathto"](f"_images/{name}", 1))
    match = re.fullmatch(r"exercises/(ex\w+)/\1", pagename)
    if match:
        context["body"] = _box(match.group(1), context["pathto"]) + context["body"]


def _build_finished(app, exception):
    if exception is None and app.builder.format == "html":
        write_bundles(Path(app.outdir))


def setup(app):
    app.connect("html-page-context", _page_context)
    app.connect("build-finished", _build_finished)
    return {"parallel_read_safe": True, "parallel_write_safe": True}


# ---------------------------------------------------------------------------------------------
# The site's address in the released notebooks
# ---------------------------------------------------------------------------------------------

KIT_SITE_LINE = re.compile(r'^KIT_SITE = ".*"', re.M)


def site_url(config_path: Path = REPO / "_config.yml") -> str:
    """The course site's public address from ``html.baseurl`` in ``_config.yml`` ('' when unset)."""
    import yaml

    config = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
    return str((config.get("html") or {}).get("baseurl") or "").rstrip("/")


def _fill_kit_site_preprocessor():
    from nbconvert.preprocessors import Preprocessor

    class FillKitSite(Preprocessor):
        """nbgrader preprocessor (``make exercises``): writes the site's address into the setup cell's
        ``KIT_SITE = ""`` line, so that a released notebook opened alone (Colab, Binder, a download)
        installs the student kit from the site."""

        def preprocess_cell(self, cell, resources, index):
            if cell.cell_type == "code" and KIT_SITE_LINE.search(cell.source):
                cell.source = KIT_SITE_LINE.sub(f'KIT_SITE = "{site_url()}"', cell.source, count=1)
            return cell, resources

    return FillKitSite


def __getattr__(name):
    # Imported lazily: the Sphinx extension above must not need nbconvert at import time.
    if name == "FillKitSite":
        return _fill_kit_site_preprocessor()
    raise AttributeError(name)
