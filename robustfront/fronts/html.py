"""`report ... --html`: one self-contained index.html — figures embedded as data URIs, a few lines of inline
script to sort the table, no network, no server.

Sections: the fronts (with hypervolume and dominance), the results table (click a header to sort),
the reproduction side-by-side when a reproduce.json is given or found, each run's curves and
diagnostics, and each evaluation's provenance and gradient-masking checks.

reproduce.json (written by `robustfront reproduce`, or by hand): a list of rows, or {"rows": [...]},
each {"id": str, "paper": number or str, "ours_mean": number, "ours_std": number or null,
"verdict": str, "note": str (optional)}; accuracies as fractions in [0, 1] or percentages, shown as given.
"""
from __future__ import annotations

import base64
import io
import json
from html import escape
from pathlib import Path

from ..checkpoint import write_text_atomic
from .maths import analyze
from .table import eps_with_decimal, fmt_eps, pm

STYLE = """body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1280px;color:#222;padding:0 16px}
h1{font-size:22px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ddd}h3{font-size:15px}
img{max-width:100%;height:auto;border:1px solid #eee}table{border-collapse:collapse;font-size:13px;margin:8px 0}
th,td{border:1px solid #ddd;padding:3px 7px;text-align:right;white-space:nowrap}th{background:#f4f4f4;cursor:pointer}
td.t,th.t{text-align:left}.pass{color:#176f2c}.warn{color:#a33;font-weight:600}.note{color:#555;font-size:12px}
details{margin:6px 0}summary{cursor:pointer;font-weight:600}"""

SORT = """document.querySelectorAll('table.sortable th').forEach(function(th,i){th.addEventListener('click',function(){
var t=th.closest('table'),b=t.tBodies[0],rows=Array.from(b.rows),up=th.dataset.up!=='1';th.dataset.up=up?'1':'0';
rows.sort(function(x,y){var a=x.cells[i].dataset.v,c=y.cells[i].dataset.v;var p=parseFloat(a),q=parseFloat(c);
var r=(isNaN(p)||isNaN(q))?String(a).localeCompare(String(c)):p-q;return up?r:-r;});rows.forEach(function(r){b.appendChild(r);});});});"""

COLUMNS = ("run", "method", "knob", "clean", "PGD", "AA", "Mean", "NRR", "n", "ε", "protocol", "WA", "selection", "seed")
_ACC = {"clean": "clean", "PGD": "pgd", "AA": "aa", "Mean": "mean", "NRR": "nrr"}


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{escape(alt)}" src="{data_uri(png)}">'


def _fig_png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def _table(headers, rows, sortable=False) -> str:
    """rows: lists of (shown text, sort value) or plain text; the first column is left-aligned text."""
    head = "".join(f'<th class="{"t" if i < 1 else ""}">{escape(h)}</th>' for i, h in enumerate(headers))
    body = []
    for r in rows:
        cells = [c if isinstance(c, tuple) else (c, c) for c in r]
        body.append("<tr>" + "".join(f'<td class="{"t" if i < 1 else ""}" data-v="{escape(str(v))}">{t}</td>'
                                     for i, (t, v) in enumerate(cells)) + "</tr>")
    return (f'<table class="{"sortable" if sortable else ""}"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table>")


def results_table(rows: list[dict]) -> str:
    out = []
    for r in rows:
        acc = [(pm(r[k], r["std"].get(k)), "" if r[k] is None else r[k]) for k in _ACC.values()]
        out.append([escape(str(r["run"])), escape(r["family"]), escape(r["knob"] or "–"), *acc, (escape(str(r["n"])), r["n"]),
                    (escape(eps_with_decimal(r["eps_str"] or r["eps"])), r["eps"]), escape(r["attacks"]),
                    escape(r["wa"]), escape(r["select"]), escape(str(r["seed"]))])
    return _table(COLUMNS, out, sortable=True)


def fronts_section(analyses: list[dict]) -> str:
    """Per group: each family's hypervolume and Pareto points, and who dominates whom."""
    from .plots import dominance_line, front_note
    parts = []
    for g in analyses:
        fam_rows = [[escape(f), f"{v['hypervolume']:.4f}", escape(", ".join(v["pareto"]) or "–"), str(len(v["points"]))]
                    for f, v in g["families"].items()]
        dom = [[escape(d["b"]), escape(d["a"]), f"{d['n_dominated']}/{d['n']}", f"{d['n_dominated_beyond_noise']}/{d['n']}"]
               for d in g["dominance"]]
        parts.append(f"<h3>{escape(front_note(g))}</h3><p><b>{escape(dominance_line(g) or 'one family')}</b></p>"
                     + _table(["family", "hypervolume", "Pareto-optimal", "points"], fam_rows)
                     + (_table(["dominating", "dominated", "plainly", "beyond the seed noise"], dom) if dom else ""))
    return "".join(parts)


def read_reproduce(path: Path) -> list[dict]:
    """The rows of a reproduce.json; anything else is one clear line."""
    try:
        d = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not JSON ({e.msg}); allowed: a list of {{id, paper, ours_mean, ours_std, verdict}}") from None
    rows = d.get("rows") if isinstance(d, dict) else d
    need = ("id", "paper", "ours_mean", "verdict")
    if not isinstance(rows, list) or not all(isinstance(r, dict) and all(k in r for k in need) for r in rows):
        raise ValueError(f"{path} is not a reproduction table; allowed: a list (or {{\"rows\": [...]}}) of objects with "
                         f"{', '.join(need)} and optional ours_std, note")
    return rows


def reproduce_section(rows: list[dict]) -> str:
    def num(v):
        return f"{v:.4g}" if isinstance(v, (int, float)) else escape(str(v))
    out = [[escape(str(r["id"])), num(r["paper"]),
            num(r["ours_mean"]) + ("" if r.get("ours_std") is None else f" ± {num(r['ours_std'])}"),
            f'<span class="{"pass" if str(r["verdict"]).lower() in ("ok", "pass", "reproduced", "match") else "warn"}">'
            f'{escape(str(r["verdict"]))}</span>', escape(str(r.get("note", "")))] for r in rows]
    return _table(["id", "paper", "ours (mean ± std)", "verdict", "note"], out)


def runs_section(runs: list[dict]) -> str:
    """Each run's curves and CA-AT/AGR diagnostics (when it logged them), folded."""
    from .plots import CONFLICT_PANELS, curves_figure
    parts = []
    for r in runs:
        figs = [(curves_figure([r]), "training curves"),
                (curves_figure([r], CONFLICT_PANELS) if any("cos" in m for m in r["metrics"]) else None, "diagnostics")]
        body = "".join(_img(_fig_png(f), f"{r['name']}: {t}") for f, t in figs if f is not None) or \
            "<p class=note>no metrics.jsonl</p>"
        cfg = r["config"]
        facts = ", ".join(f"{k}={cfg[k]}" for k in ("method", "data", "model", "epochs", "eps", "seed") if k in cfg)
        parts.append(f"<details><summary>{escape(r['name'])}</summary><p class=note>{escape(facts)}</p>{body}</details>")
    return "".join(parts)


def evals_section(runs: list[dict]) -> str:
    parts = []
    for r in runs:
        for f, e in r["evals"]:
            prov = [["checkpoints", escape(", ".join(e.checkpoints) or "–")], ["model / method",
                    escape(f"{', '.join(e.models) or '?'} / {', '.join(e.methods) or '?'}")],
                    ["data", escape(f"{e.data or '?'} ({e.split or 'test'}), n={e.n}, subset seed {e.seed}")],
                    ["threat", escape(f"{e.norm} ε = " + ", ".join(e.eps_str or [fmt_eps(p.eps) for p in e.points]))],
                    ["attacks", escape(", ".join(e.points[-1].robust) if e.points else "–")]]
            checks = "".join(
                f"<p>masking checks ({escape(fmt_eps(s['eps']))}, n={s['n']}):</p>" + _table(["verdict", "check", "detail"], [
                    [f'<span class="{"pass" if c["passed"] else "warn"}">{"PASS" if c["passed"] else "WARN"}</span>',
                     escape(c["name"]), f'<span class="t">{escape(c["detail"])}</span>'] for c in s["checks"]])
                for s in e.sanity) or "<p class=note>no gradient-masking checks were run (robustfront eval --sanity)</p>"
            parts.append(f"<details><summary>{escape(r['name'])} / {escape(f)}</summary>{_table(['', ''], prov)}{checks}</details>")
    return "".join(parts) or "<p class=note>no evaluation files</p>"


def write_html(data: dict, out: Path, figures: list[Path], fronts: list[Path], reproduce: str | None) -> Path:
    """OUT/index.html from what `report` collected and drew; returns its path."""
    if reproduce is None:
        found = [p for p in (Path(d) / "reproduce.json" for d in data.get("dirs", [])) if p.is_file()]
        reproduce = str(found[0]) if found else None
    repro = read_reproduce(Path(reproduce)) if reproduce else None
    groups = data["groups"] + [g for res in data["sweeps"].values() if res for g in analyze(res)]
    front_pngs = [p for p in fronts if p.suffix == ".png"] + [p for p in figures if p.name == "pareto.png"]
    other = [p for p in figures if p.name != "pareto.png"]
    html = ["<!doctype html><html lang=en><head><meta charset=utf-8>",
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
            "style-src 'unsafe-inline'; script-src 'unsafe-inline'\">",
            f"<title>robustfront report</title><style>{STYLE}</style></head><body>",
            "<h1>robustfront report</h1>",
            f"<p class=note>{len(data['runs'])} run(s), {len(data['rows'])} evaluated row(s). Accuracies in %; "
            "± is the sample std over checkpoints (table) or seeds (fronts).</p>",
            "<h2 id=fronts>Fronts</h2>", *[_img(p.read_bytes(), p.stem) for p in front_pngs],
            fronts_section(groups) or "<p class=note>no front: nothing evaluated</p>",
            "<h2 id=results>Results</h2><p class=note>Click a column to sort. Mean = (SA + RA)/2, NRR = 2·SA·RA/(SA + RA) "
            "with RA = AA when evaluated, else the worst case of the listed attacks.</p>", results_table(data["rows"])]
    if repro is not None:
        html += ["<h2 id=reproduction>Reproduction: paper | ours | verdict</h2>", reproduce_section(repro)]
    html += ["<h2 id=curves>Training curves and diagnostics</h2>", *[_img(p.read_bytes(), p.stem) for p in other],
             runs_section(data["runs"]), "<h2 id=evaluations>Evaluations: provenance and gradient-masking checks</h2>",
             evals_section(data["runs"]), f"<script>{SORT}</script></body></html>"]
    return write_text_atomic(out / "index.html", "\n".join(html) + "\n")


__all__ = ["data_uri", "read_reproduce", "write_html"]
