"""The course's figure style, so every chapter's plots look alike.

Call :func:`use_course_style` once at the top of a chapter. Colours are fixed per concept so a
reader learns them once: raw activations are grey, normalised ones blue, PyTorch's reference
orange.
"""

import matplotlib as mpl

COLORS = {
    "raw": "#7f7f7f",
    "normalized": "#1f77b4",
    "reference": "#ff7f0e",
    "good": "#2ca02c",
    "bad": "#d62728",
}
DPI = 130
PHONE_WIDTH_IN = 3.8          # 494 px at DPI: in a 340-px phone column 9-pt text is shown at 11 px
PHONE_MAX_WIDTH_PX = 720      # the <picture> switches to the phone rendering at or below this window width
MIN_TEXT_PX_KEY = "bncourse:min-text-px"
LAYOUT_KEY = "bncourse:layout"

# One colour per feature/channel in multi-series plots (colour-blind friendly, Okabe-Ito).
SERIES = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]


def use_course_style() -> None:
    """Set matplotlib defaults: readable fonts, light grid, no top/right spines, PNG output, and every
    figure shown in a desktop and a phone rendering (:func:`figure_html`).

    PNG rather than SVG: matplotlib stamps SVGs with the date, so the book would not build to
    the same figures twice.
    """
    mpl.rcParams.update({
        "figure.figsize": (8, 3.2),
        "figure.dpi": DPI,
        "savefig.bbox": "tight",
        "axes.grid": True,
        "grid.alpha": 0.3,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.titlesize": 11,
        "axes.labelsize": 10,
        "legend.fontsize": 9,
        "legend.frameon": False,
        "axes.prop_cycle": mpl.cycler(color=SERIES),
    })
    try:
        from matplotlib_inline.backend_inline import set_matplotlib_formats
    except ImportError:  # outside Jupyter there is nothing to configure
        return
    set_matplotlib_formats("png")
    _show_figures_for_desktop_and_phone()


def draw_graph(ax, nodes, edges, highlight=(), note=None):
    """Draw a small computation graph: ``nodes`` maps a name to ``(x, y, label)``, ``edges`` lists
    ``(source, target)`` pairs, and nodes in ``highlight`` (those whose output feeds several others,
    whose gradients must be summed) get the "bad" colour. Coordinates are in axis units (0..1)."""
    boxes = {}
    for name, (x, y, label) in nodes.items():
        colour = COLORS["bad"] if name in highlight else COLORS["normalized"]
        boxes[name] = ax.text(x, y, label, ha="center", va="center", fontsize=11, zorder=3,
                              bbox=dict(boxstyle="round,pad=0.35", linewidth=1.2, facecolor="white",
                                        edgecolor=colour))
    for source, target in edges:
        (x0, y0, _), (x1, y1, _) = nodes[source], nodes[target]
        # Clipping the arrow to both boxes makes it start and end at their borders, whatever their size.
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0), zorder=4,
                    arrowprops=dict(arrowstyle="-|>", color="#444444", lw=1.2, shrinkA=3, shrinkB=3,
                                    patchA=boxes[source].get_bbox_patch(), patchB=boxes[target].get_bbox_patch()))
    if note:
        ax.text(0.0, 0.0, note, ha="left", va="bottom", fontsize=9, color="#444444", transform=ax.transAxes)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.axis("off")


# --- Figures that are legible on a desktop and on a phone -----------------------------------------
#
# A figure drawn for a desktop column is shown at a third of its size on a phone, where its axis text
# shrinks to 5 or 6 px. So every figure a chapter shows is rendered twice: as drawn (the desktop
# rendering) and re-laid out for a phone (the panels stacked in one column PHONE_WIDTH_IN wide,
# fonts unchanged). The page gets both in one <picture> element and the browser picks one by the width of
# the screen. Each PNG records the size of its smallest text in pixels (a PNG text chunk,
# ``bncourse:min-text-px``), so the browser test can measure every figure's text at the size it is
# displayed instead of trusting a style sheet.


def for_phone(fig, *, columns: int = 1, panel_height: float | None = None, figure=None):
    """Say how ``fig`` is shown on a phone: its grid of panels re-laid out in ``columns`` columns (each
    panel ``panel_height`` inches high; default: its height on the desktop), or, for a figure that
    cannot be re-laid out (a diagram, a colour bar beside several panels), a separate ``figure`` drawn
    for a phone. Returns ``fig``."""
    fig._bncourse_phone = {"columns": columns, "panel_height": panel_height, "figure": figure}
    return fig


def smallest_text_pt(fig) -> float:
    """The size in points of the smallest piece of visible text in ``fig`` (titles, labels, tick labels,
    legends, annotations); inf for a figure without text."""
    from matplotlib.text import Text

    fig.canvas.draw()   # tick labels exist only once the figure is drawn
    sizes = [t.get_fontsize() for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]
    return min(sizes, default=float("inf"))


def figure_png(fig, layout: str = "desktop") -> bytes:
    """``fig`` as a PNG at the course's resolution, with its smallest text in pixels recorded."""
    import io

    smallest = smallest_text_pt(fig) * DPI / 72
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight",
                metadata={MIN_TEXT_PX_KEY: f"{smallest:.2f}", LAYOUT_KEY: layout})
    return buffer.getvalue()


def _restack(fig, columns: int, panel_height: float | None) -> bool:
    """Move the panels of ``fig`` (in reading order) into a grid of ``columns`` columns, PHONE_WIDTH_IN
    wide. False when the figure has axes that are not panels of a grid (a colour bar, an inset) or
    that share a panel (twinx/twiny: moving them apart would split one plot in two)."""
    import warnings

    from matplotlib.gridspec import GridSpec

    panels = [ax for ax in fig.axes if ax.get_subplotspec() is not None]
    if len(panels) != len(fig.axes):
        return False
    cells = {(id(ax.get_subplotspec().get_gridspec()), ax.get_subplotspec().rowspan, ax.get_subplotspec().colspan)
             for ax in panels}
    if len(cells) != len(panels):
        return False
    if not panels:
        return True
    first = panels[0].get_subplotspec().get_gridspec()
    rows_before = first.get_geometry()[0]
    height = panel_height or fig.get_figheight() / rows_before
    panels.sort(key=lambda ax: (ax.get_subplotspec().rowspan.start, ax.get_subplotspec().colspan.start))
    rows = -(-len(panels) // columns)
    grid = GridSpec(rows, columns, figure=fig)
    for i, ax in enumerate(panels):
        ax.set_subplotspec(grid[i // columns, i % columns])
        if ax.name != "3d":
            # Panels that shared an axis with a neighbour had their tick labels hidden; stacked, each
            # panel needs its own.
            ax.tick_params(labelleft=True, labelbottom=True)
    _narrow_texts(fig, panels, columns)
    fig.set_size_inches(PHONE_WIDTH_IN, height * rows)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # 3-D axes: "not compatible with tight_layout"
        fig.tight_layout()
    return True


def _narrow_texts(fig, panels, columns: int) -> None:
    """Fit a figure's words to a phone: legends one entry a line (a figure's legend goes below the
    panels, the course's convention), long titles and axis labels wrapped to the width of a panel."""
    import textwrap

    def entries(legend):
        """The handles, labels and look (font, title) of a legend laid out in several columns, which is
        removed; else None."""
        if legend is None or legend._ncols == 1:
            return None
        labels = [text.get_text() for text in legend.get_texts()]
        look = {"prop": legend.prop, "title": legend.get_title().get_text() or None}
        legend.remove()
        return legend.legend_handles, labels, look

    for legend in list(fig.legends):
        if found := entries(legend):
            handles, labels, look = found
            fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncols=1, **look)
    for ax in panels:
        legend = ax.get_legend()
        if found := entries(legend):
            handles, labels, look = found
            anchor = {"bbox_to_anchor": legend.get_bbox_to_anchor()} if legend._bbox_to_anchor is not None else {}
            ax.legend(handles, labels, loc=legend._loc, ncols=1, **look, **anchor)

    def fit(text, width_in):
        # About 0.55 em per character: how many characters of this size fit the width.
        per_line = max(12, int(width_in * 72 / (0.55 * text.get_fontsize())))
        words = text.get_text().replace("\n", " ")
        if len(words) > per_line:
            text.set_text("\n".join(textwrap.wrap(words, per_line)))

    panel_width = 0.8 * PHONE_WIDTH_IN / columns       # less the room of the axis labels
    if getattr(fig, "_suptitle", None) is not None:
        fit(fig._suptitle, PHONE_WIDTH_IN)
    for ax in panels:
        fit(ax.title, panel_width)
        fit(ax.xaxis.label, panel_width)


def phone_png(fig) -> bytes:
    """The phone rendering of ``fig``: its panels stacked (or as :func:`for_phone` says)."""
    settings = getattr(fig, "_bncourse_phone", None) or {"columns": 1, "panel_height": None, "figure": None}
    if settings["figure"] is not None:
        return figure_png(settings["figure"], "phone")
    width, height = fig.get_size_inches()
    if not _restack(fig, settings["columns"], settings["panel_height"]):
        fig.set_size_inches(PHONE_WIDTH_IN, height * PHONE_WIDTH_IN / width)
    return figure_png(fig, "phone")


def _alt_text(fig) -> str:
    titles = [fig._suptitle.get_text()] if getattr(fig, "_suptitle", None) else []
    titles += [ax.get_title() for ax in fig.axes if ax.get_title()]
    return "Figure: " + "; ".join(titles) if titles else "Figure"


def figure_html(fig) -> str:
    """Both renderings of ``fig`` in one <picture>: the phone one at or below PHONE_MAX_WIDTH_PX.
    (Rendering the phone version re-lays out ``fig``, so the desktop one is made first.) The PNGs are
    data: URLs, so a notebook carries its figures; the book's extension (:mod:`bncourse.site`) writes
    them out as files when it builds a page."""
    import base64
    import html

    desktop = base64.b64encode(figure_png(fig, "desktop")).decode()
    phone = base64.b64encode(phone_png(fig)).decode()
    return (f'<picture class="course-figure"><source media="(max-width: {PHONE_MAX_WIDTH_PX}px)" '
            f'srcset="data:image/png;base64,{phone}">'
            f'<img src="data:image/png;base64,{desktop}" alt="{html.escape(_alt_text(fig))}"></picture>')


def _show_figures_for_desktop_and_phone() -> None:
    """Make IPython display every matplotlib figure with :func:`figure_html` only: a second, plain
    PNG would be rendered from the figure after its phone re-layout, and would double the notebook."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None:
        return
    from matplotlib.figure import Figure

    formatters = shell.display_formatter.formatters
    formatters["text/html"].for_type(Figure, figure_html)
    formatters["image/png"].for_type(Figure, lambda fig: None)
