"""README.md of a hub export: a model card with YAML front matter (library, tags, metrics), the
evaluation's numbers (RobustBench's card fields where the evaluation qualifies), the normaliser and
the threat model, and how to load the model with and without robustfront."""
from __future__ import annotations

import json


def _pct(v) -> str:
    return f"{100 * float(v):.2f}" if isinstance(v, (int, float)) else "-"


def _numbers(ev: dict | None) -> list[str]:
    if not ev:
        return ["No evaluation was attached (`robustfront export --hub-dir DIR --eval EVAL.json`)."]
    lines = [f"Evaluated on {ev.get('data', '?')} ({ev.get('split', 'test')} split, {ev.get('n_total', ev.get('n'))} "
             f"points), {ev.get('norm', 'Linf')} eps = {ev.get('eps')}; source: `{ev.get('source')}`.", "",
             "| metric | accuracy (%) |", "|---|---|", f"| clean | {_pct(ev.get('clean_acc'))} |"]
    lines += [f"| {k} | {_pct(v)} |" for k, v in (ev.get("robust_acc") or {}).items()]
    card = ev.get("robustbench_card")
    if card:
        lines += ["", "RobustBench model card fields (model_info JSON):", "", "```json", json.dumps(card, indent=2),
                  "```"]
    elif ev.get("robustbench_card_why_not"):
        lines += ["", f"No RobustBench card: {ev['robustbench_card_why_not']}"]
    return lines


def model_card_text(config: dict, title: str) -> str:
    library = config["library"]
    ev = config.get("evaluation") or {}
    meta = ["---", f"library_name: {library}", "tags:", "- image-classification", "- adversarial-robustness",
            "- robustfront"]
    if library == "timm":
        meta.append("- timm")
    if ev.get("clean_acc") is not None:
        meta += ["model-index:", f"- name: {json.dumps(title)}", "  results:", "  - task:",
                 "      type: image-classification", "    dataset:", f"      name: {json.dumps(str(ev.get('data')))}",
                 f"      type: {json.dumps(str(ev.get('data')))}", "    metrics:",
                 "    - type: accuracy", "      name: clean accuracy", f"      value: {_pct(ev['clean_acc'])}"]
        for k, v in (ev.get("robust_acc") or {}).items():
            meta += ["    - type: accuracy", f"      name: {json.dumps(k + ' robust accuracy')}",
                     f"      value: {_pct(v)}"]
    meta.append("---")
    norm, threat = config["normalizer"], config.get("threat_model")
    arch, args = config["architecture"], config.get("model_args") or {}
    load = ["```python", "import robustfront", f'model = robustfront.load_model("hf-hub:ORG/{title}")  '
            "# inputs in [0, 1], normaliser inside", "```"]
    if library == "timm":
        extra = "".join(f", {k}={v!r}" for k, v in args.items())
        load += ["", "Without robustfront (timm; normalise the inputs yourself):", "", "```python", "import timm",
                 f"net = timm.create_model({arch!r}, pretrained=True, num_classes={config['num_classes']}{extra},",
                 '                        pretrained_cfg_overlay=dict(file="model.safetensors", '
                 f'num_classes={config["num_classes"]}))',
                 f"# inputs: (x - {norm['mean']}) / {norm['std']} per channel, x in [0, 1]", "```"]
    body = [f"# {title}", "", f"Adversarially trained `{arch}` ({config['num_classes']} classes), exported by "
            "robustfront.", "", "## Normaliser", "",
            f"Inputs are RGB in [0, 1]; the network expects (x - mean) / std with mean = {norm['mean']}, "
            f"std = {norm['std']} (not inside model.safetensors; robustfront puts it back on load).", "",
            "## Threat model", "",
            (f"Trained with {threat.get('method', '?')} against {threat.get('norm', 'Linf')} perturbations, eps = "
             f"{threat.get('eps')}." if threat else "Not recorded."), "", "## Evaluation", "", *_numbers(ev), "",
            "## Loading", "", *load, ""]
    return "\n".join(meta + [""] + body)
