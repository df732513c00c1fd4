"""Where text goes on a figure, and the checks the figure tests run on the drawn artists.

Labels are placed greedily in display space after the layout is final: each tries positions
around its point, nearest first, and takes the first whose box stays inside the axes and clears
every box already taken (other labels, the markers, the legend); a label with no free place is
returned so that the caller can put it in a key instead. The same boxes answer the tests' questions:
does any text overlap another, and is every marker inside its axes.
"""
from __future__ import annotations

import itertools
import math

# offsets in points, nearest first: right, left, above, below, the diagonals, then further out
_RINGS = (8, 16, 26, 40, 58)
_ANGLES = (0, 180, 90, 270, 45, 135, 315, 225, 22, 158, 338, 202, 68, 112, 248, 292)


def _boxes_overlap(a, b, pad: float = 0.0) -> bool:
    return a.x0 - pad < b.x1 and b.x0 - pad < a.x1 and a.y0 - pad < b.y1 and b.y0 - pad < a.y1


def marker_boxes(ax, xy_data, size_pt: float = 7.0):
    """Display-space boxes around markers at data coordinates `xy_data`."""
    from matplotlib.transforms import Bbox
    r = size_pt * ax.figure.dpi / 72 / 2
    out = []
    for x, y in xy_data:
        px, py = ax.transData.transform((x, y))
        out.append(Bbox([[px - r, py - r], [px + r, py + r]]))
    return out


def place_labels(ax, items, taken, fontsize: float = 7.0, color_of=None) -> list:
    """Annotate each (x, y, text) of `items` (data coordinates) where it overprints nothing in `taken`
    (display boxes, extended as labels land). Returns the items that found no place."""
    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    inside = ax.get_window_extent(renderer)
    left_out = []
    for i, (x, y, text) in enumerate(items):
        placed = False
        for ring, angle in itertools.product(_RINGS, _ANGLES):
            dx, dy = ring * math.cos(math.radians(angle)), ring * math.sin(math.radians(angle))
            ha = "left" if dx > 1 else "right" if dx < -1 else "center"
            va = "bottom" if dy > 1 else "top" if dy < -1 else "center"
            t = ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points", ha=ha, va=va,
                            fontsize=fontsize, color=color_of(i) if color_of else "0.15",
                            bbox=dict(boxstyle="square,pad=0.05", fc="white", ec="none", alpha=0.85),
                            arrowprops=dict(arrowstyle="-", lw=0.5, color="0.55", shrinkA=0, shrinkB=3)
                            if ring > _RINGS[1] else None)
            box = t.get_window_extent(renderer)
            if (box.x0 >= inside.x0 + 1 and box.x1 <= inside.x1 - 1 and box.y0 >= inside.y0 + 1
                    and box.y1 <= inside.y1 - 1 and not any(_boxes_overlap(box, b, 1.0) for b in taken)):
                taken.append(box)
                placed = True
                break
            t.remove()
        if not placed:
            left_out.append((x, y, text))
    return left_out


def texts(fig) -> list:
    """Every drawn, non-empty text of the figure: titles, axis labels, the tick labels inside the view,
    legends, annotations and figure-level texts (footers)."""
    out = list(fig.texts) + [t for lg in fig.legends for t in (*lg.get_texts(), lg.get_title())]
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        out += [ax.title, ax._left_title, ax._right_title, ax.xaxis.label, ax.yaxis.label, *ax.texts]
        if ax.get_legend():
            out += [*ax.get_legend().get_texts(), ax.get_legend().get_title()]
        for axis, (lo, hi) in ((ax.xaxis, sorted(ax.get_xlim())), (ax.yaxis, sorted(ax.get_ylim()))):
            if ax.axison:
                span = 1e-9 * max(1.0, abs(hi - lo))
                out += [t.label1 for t in axis.get_major_ticks() if lo - span <= t.get_loc() <= hi + span]
    return [t for t in out if t.get_visible() and t.get_text().strip()]


def overlapping_texts(fig) -> list[tuple[str, str]]:
    """Pairs of drawn texts whose boxes intersect (a tick label and its own axis excluded by construction)."""
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    shown = [(t, t.get_window_extent(r)) for t in texts(fig)]
    shown = [(t, b) for t, b in shown if b.width > 0 and b.height > 0]
    return [(a.get_text(), b.get_text()) for (a, ba), (b, bb) in itertools.combinations(shown, 2)
            if _boxes_overlap(ba, bb, -0.5)]


def texts_over_axes(fig) -> list[str]:
    """Figure-level texts (footers) that reach into an axes' drawn area or its labels."""
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    out = []
    for t in fig.texts:
        if not t.get_text().strip():
            continue
        tb = t.get_window_extent(r)
        if any(_boxes_overlap(tb, ax.get_tightbbox(r), -0.5) for ax in fig.axes if ax.get_visible() and ax.axison):
            out.append(t.get_text())
    return out


def texts_outside_figure(fig) -> list[str]:
    """Texts cut by the figure's edge."""
    fig.canvas.draw()
    r, box = fig.canvas.get_renderer(), fig.bbox
    return [t.get_text() for t in texts(fig) if (b := t.get_window_extent(r)).x0 < box.x0 - 0.5
            or b.x1 > box.x1 + 0.5 or b.y0 < box.y0 - 0.5 or b.y1 > box.y1 + 0.5]


def points_outside(fig) -> list[tuple[float, float]]:
    """Markers (scatter points, line markers) drawn outside their axes."""
    from matplotlib.collections import PathCollection
    from matplotlib.lines import Line2D
    fig.canvas.draw()
    bad = []
    for ax in fig.axes:
        box = ax.bbox
        pts = []
        for ln in ax.findobj(Line2D):
            if ln.get_visible() and ln.get_marker() not in (None, "None", "", " ") and ln.axes is ax:
                pts += [ax.transData.transform(p) for p in ln.get_xydata()]
        for c in ax.findobj(PathCollection):
            if c.get_visible() and c.axes is ax:
                pts += list(c.get_offset_transform().transform(c.get_offsets()))
        bad += [tuple(p) for p in pts if not (box.x0 - 0.5 <= p[0] <= box.x1 + 0.5 and box.y0 - 0.5 <= p[1] <= box.y1 + 0.5)]
    return bad


__all__ = ["marker_boxes", "overlapping_texts", "place_labels", "points_outside", "texts", "texts_outside_figure",
           "texts_over_axes"]
