"""The course's figures: every figure is rendered for a desktop and re-laid out for a phone, and each
PNG records the size of its smallest text, which the browser test reads back."""

import base64
import io
import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from bncourse import plotting  # noqa: E402


def png_info(data: bytes) -> tuple[int, int, dict]:
    image = Image.open(io.BytesIO(data))
    return image.width, image.height, dict(image.text)


def renderings(html: str) -> tuple[bytes, bytes]:
    """(desktop, phone) PNG bytes of a figure's <picture>."""
    phone = re.search(r'<source media="\(max-width: \d+px\)" srcset="data:image/png;base64,([^"]+)"', html).group(1)
    desktop = re.search(r'<img src="data:image/png;base64,([^"]+)"', html).group(1)
    return base64.b64decode(desktop), base64.b64decode(phone)


@pytest.fixture(autouse=True)
def course_style():
    plotting.use_course_style()
    yield
    plt.close("all")


def test_smallest_text_is_measured_from_the_figure_itself():
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([0, 1], [0, 1])
    ax.set_title("title", fontsize=14)
    assert plotting.smallest_text_pt(fig) == 10      # the tick labels, at the style's 10 pt
    ax.text(0.5, 0.5, "a small note", fontsize=6)
    assert plotting.smallest_text_pt(fig) == 6
    ax.texts[0].set_visible(False)         # hidden text is not shown, so it does not count
    assert plotting.smallest_text_pt(fig) > 6


def test_a_row_of_panels_is_stacked_for_a_phone_and_both_renderings_record_their_text():
    fig, axes = plt.subplots(1, 3, figsize=(8, 3), sharey=True)
    for i, ax in enumerate(axes):
        ax.plot(np.arange(10), np.arange(10) * (i + 1), label=f"series {i}")
        ax.set_title(f"panel {i}")
    axes[0].legend(fontsize=9)
    desktop, phone = renderings(plotting.figure_html(fig))
    (dw, dh, dtext), (pw, ph, ptext) = png_info(desktop), png_info(phone)
    assert dtext[plotting.LAYOUT_KEY] == "desktop" and ptext[plotting.LAYOUT_KEY] == "phone"
    assert float(dtext[plotting.MIN_TEXT_PX_KEY]) == pytest.approx(9 * plotting.DPI / 72, abs=0.01)
    assert float(ptext[plotting.MIN_TEXT_PX_KEY]) == pytest.approx(9 * plotting.DPI / 72, abs=0.01)
    assert dw > 2 * dh                                            # a row ...
    assert ph > 2 * pw and pw <= 1.15 * plotting.PHONE_WIDTH_IN * plotting.DPI   # ... becomes a column
    assert all(ax.yaxis.get_ticklabels()[1].get_visible() for ax in axes)     # shared y: labels back on


def test_on_a_phone_legends_take_one_column_and_long_titles_wrap():
    fig, axes = plt.subplots(1, 2, figsize=(8, 3))
    for ax in axes:
        for i in range(4):
            ax.plot(np.arange(5) * i, label=f"a rather long label for series number {i}")
    axes[0].legend(ncols=2, loc="upper left")
    fig.legend(*axes[1].get_legend_handles_labels(), loc="upper center", ncols=2, bbox_to_anchor=(0.5, 0.0))
    axes[1].set_title("a title that is far too long to fit on one line of a panel on a phone screen")
    fig.suptitle("and a figure title that is just as long as that one, if not a little longer")
    _, phone = renderings(plotting.figure_html(fig))
    assert png_info(phone)[0] <= 1.1 * plotting.PHONE_WIDTH_IN * plotting.DPI   # nothing sticks out
    assert [legend._ncols for legend in fig.legends] == [1] and axes[0].get_legend()._ncols == 1
    assert len(axes[0].get_legend().get_texts()) == 4
    assert "\n" in axes[1].get_title() and "\n" in fig._suptitle.get_text()


def test_for_phone_chooses_columns_or_a_separate_figure():
    fig, axes = plt.subplots(1, 4, figsize=(8, 2))
    plotting.for_phone(fig, columns=2, panel_height=2.0)
    _, phone = renderings(plotting.figure_html(fig))
    width, height, _ = png_info(phone)
    assert 0.7 < height / width < 1.3            # 2 x 2 panels of 2 in on 4 in

    diagram, _ = plt.subplots(figsize=(8, 2))
    small, ax = plt.subplots(figsize=(3, 3))
    ax.set_title("the phone version")
    plotting.for_phone(diagram, figure=small)
    _, phone = renderings(plotting.figure_html(diagram))
    assert png_info(phone)[:2] == png_info(plotting.figure_png(small))[:2]


def test_a_figure_with_a_colour_bar_is_scaled_down_not_restacked():
    fig, axes = plt.subplots(1, 2, figsize=(8, 3))
    image = axes[0].imshow(np.eye(3))
    fig.colorbar(image, ax=list(axes))
    _, phone = renderings(plotting.figure_html(fig))
    width, height, _ = png_info(phone)
    assert width > height                         # same layout, smaller: the browser test will flag its text


def test_a_legend_laid_out_again_for_a_phone_keeps_its_font_size_and_title():
    fig, axes = plt.subplots(1, 2, figsize=(8, 3))
    for k in range(4):
        axes[0].plot([0, 1], [k, k + 1], label=f"series {k}")
    axes[0].legend(ncols=2, fontsize=11, title="runs")
    plotting.phone_png(fig)
    legend = axes[0].get_legend()
    assert legend._ncols == 1 and legend.get_title().get_text() == "runs"
    assert {text.get_fontsize() for text in legend.get_texts()} == {11}


def test_a_panel_with_a_twin_axis_is_scaled_down_not_split_apart():
    fig, axes = plt.subplots(1, 2, figsize=(8, 3))
    axes[0].twinx().plot([0, 1], [1, 0])
    _, phone = renderings(plotting.figure_html(fig))
    width, height, _ = png_info(phone)
    assert width > height and len(fig.axes) == 3      # one row still: the twin stays on its panel


def test_ipython_displays_figures_as_a_picture_only():
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    try:
        plotting._show_figures_for_desktop_and_phone()
        fig, ax = plt.subplots()
        data, _ = shell.display_formatter.format(fig)
        assert data["text/html"].startswith('<picture class="course-figure">') and "image/png" not in data
    finally:
        InteractiveShell.clear_instance()


def test_the_site_serves_each_rendering_as_a_file(tmp_path):
    """The book's extension writes the two PNGs of a figure's <picture> to _images/ (named by content, so
    a figure shown twice is one file) and points the page at them; nothing else in the page changes."""
    from bncourse.site import figures_as_files

    fig, ax = plt.subplots(1, 2, figsize=(8, 3))
    picture = plotting.figure_html(fig)
    desktop, phone = renderings(picture)
    body = f"<p>before</p>{picture}<p>between</p>{picture}<p>after</p>"
    page = figures_as_files(body, tmp_path / "_images", lambda name: f"../_images/{name}")
    assert "data:" not in page and "<p>before</p>" in page and "<p>after</p>" in page
    files = {p.name: p.read_bytes() for p in (tmp_path / "_images").iterdir()}
    assert sorted(files.values()) == sorted([desktop, phone])
    phone_name = next(name for name, data in files.items() if data == phone)
    desktop_name = next(name for name, data in files.items() if data == desktop)
    assert page.count(f'srcset="../_images/{phone_name}"') == 2
    assert page.count(f'<img src="../_images/{desktop_name}"') == 2
    assert figures_as_files("<p>no figures</p>", tmp_path / "other", str) == "<p>no figures</p>"
    assert not (tmp_path / "other").exists()
