"""One way to make and save a figure: matplotlib's Agg canvas without pyplot's global state, a short
footer under the plot (what data, model, threat and seeds the numbers come from) in a strip of its
own that no axis reaches into, and a save that closes nothing global. Used by the report and front
figures (robustfront/fronts/plots.py), the analysis figures and the Theorem-1 plot."""
from __future__ import annotations

import textwrap
from pathlib import Path

FOOTER_PT = 6.5


def figure(nrows: int = 1, ncols: int = 1, *, figsize=(7, 4.5), layout: str | None = None, **kw):
    """(fig, axes) on an Agg canvas; axes as matplotlib's subplots returns them."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ImportError("plots need matplotlib, which is not installed: pip install matplotlib") from e
    fig = Figure(figsize=figsize, layout=layout)
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, **kw)


def footer(fig, note: str | None) -> float:
    """Write `note` along the bottom, wrapped to the figure's width; returns the height it needs as a
    fraction of the figure (the layout keeps the axes above it)."""
    if not note:
        return 0.0
    w, h = fig.get_size_inches()
    chars = max(40, int(w * 72 / (FOOTER_PT * 0.55)))
    lines = textwrap.wrap(note, chars)
    fig.text(0.01, 0.008, "\n".join(lines), fontsize=FOOTER_PT, va="bottom", ha="left", color="0.3")
    return (len(lines) * FOOTER_PT * 1.35 + 8) / 72 / h


def save(fig, path: str | Path, note: str | None = None, dpi: int = 120, layout: bool = True) -> Path:
    """Write the PNG (the footer in its own strip, tight layout above it unless `layout` is False because
    the caller fixed it); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    bottom = footer(fig, note)
    if layout:
        fig.tight_layout(rect=(0, bottom, 1, 1))
    fig.savefig(path, dpi=dpi)
    return path


__all__ = ["figure", "footer", "save"]
