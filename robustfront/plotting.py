"""One way to make and save a figure: matplotlib's Agg canvas without pyplot's global state, a
note line under the plot (what data, model, attack and seed the numbers come from), and a save
that closes nothing global. Used by the report, the analysis figures and the Theorem-1 plot."""
from __future__ import annotations

from pathlib import Path


def figure(nrows: int = 1, ncols: int = 1, *, figsize=(7, 4.5), **kw):
    """(fig, axes) on an Agg canvas; axes as matplotlib's subplots returns them."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ImportError("plots need matplotlib, which is not installed: pip install matplotlib") from e
    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, **kw)


def save(fig, path: str | Path, note: str | None = None, dpi: int = 120) -> Path:
    """Write the PNG (tight layout, the note in small type along the bottom); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if note:
        fig.text(0.01, 0.01, note, fontsize=6, wrap=True)
        fig.tight_layout(rect=(0, 0.06, 1, 1))
    else:
        fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    return path


__all__ = ["figure", "save"]
