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
