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
# One colour per feature/channel in multi-series plots (colour-blind friendly, Okabe-Ito).
SERIES = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]


def use_course_style() -> None:
    """Set matplotlib defaults: readable fonts, light grid, no top/right spines, PNG output.

    PNG rather than SVG: matplotlib stamps SVGs with the date, so the book would not build to
    the same figures twice.
    """
    mpl.rcParams.update({
        "figure.figsize": (8, 3.2),
        "figure.dpi": 130,
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
