"""Foreign weights of any timm model (`eval --model timm:NAME --weights FILE`): a plain timm state dict
(timm's own keys, as `export --merge` and timm write them) loaded strictly at the input size the file
was trained at, behind the normaliser of timm's pretrained_cfg unless one is given or inside.

A file does not record its input size, but a transformer's tensors depend on it (ViT position
embeddings, Swin relative-position tables): the model is built (on the meta device, no memory) at the
usual sizes in turn, and the first whose tensors all have the file's shapes is taken; a CNN fits the
first. Evaluation then refuses data of another size in one line.
"""
from __future__ import annotations

import torch

from .factory import create_model
from .info import info
from .weights import format_report, resolve_normalization, match_report, split_normalization, strip_prefixes

SIZES = (224, 32, 64, 96, 128, 160, 192, 256, 288, 320, 384, 448, 512, 28, 16)


def _head_classes(model, state: dict) -> int | None:
    head = info(model).head
    w = state.get(head[len("net."):] + ".weight") if head else None
    return int(w.shape[0]) if w is not None and w.dim() == 2 else None


def load_timm_weights(name: str, state: dict, path, given: dict | None, num_classes: int | None,
                      report: dict) -> torch.nn.Module:
    """The TimmModel for `name` holding `state` (normalisation buffers, if any, taken out first);
    fills `report` like models.foreign.load_foreign."""
    state = strip_prefixes(state, ("module.", "_orig_mod."))
    if any(k.startswith("net.") for k in state) and any(k.startswith("normalize.") for k in state):
        state = {k[len("net."):]: v for k, v in state.items() if k.startswith("net.")} | \
            {k: v for k, v in state.items() if k.startswith("normalize.")}
    state, found = split_normalization(state)
    if found and given:
        resolve_normalization(found, given)  # refuses differing statistics in one line
    with torch.device("meta"):
        probe = create_model(name, num_classes=num_classes or 10)
    classes = num_classes or _head_classes(probe, state) or 1000
    if num_classes is not None and _head_classes(probe, state) not in (None, num_classes):
        raise ValueError(f"num_classes={num_classes} is invalid; allowed: {_head_classes(probe, state)} (the file's "
                         f"classifier has that many outputs)")
    full = {"net." + k: v for k, v in state.items()}
    size, best = None, None
    for s in SIZES:
        try:
            with torch.device("meta"):
                shell = create_model(name, num_classes=classes, input_size=s)
        except ValueError:
            continue
        rep = match_report(shell, {**full, "normalize.mean": shell.normalize.mean, "normalize.std": shell.normalize.std})
        if not any(rep.values()):
            size = s
            break
        best = best or rep
    if size is None:
        raise ValueError(f"weights file {path} does not fit {name} at any input size of {', '.join(map(str, SIZES))}: "
                         f"{format_report(best or {'missing': [], 'unexpected': [], 'shape_mismatch': []})}")
    stats = found or given
    kw = {"mean": stats["mean"], "std": stats["std"]} if stats else {}
    model = create_model(name, num_classes=classes, input_size=size, **kw)
    full.update({"normalize.mean": model.normalize.mean, "normalize.std": model.normalize.std})
    model.load_state_dict(full, strict=True)
    source = (f"file ({found['key']})" if found else "given" if given else
              f"assumed: {info(model).norm_source} (none in the file, none given)")
    report.update(model=name, layout="timm", options=dict(info(model).config),
                  normalization={"mean": list(model.normalize.mean_values), "std": list(model.normalize.std_values),
                                 "source": source})
    return model

