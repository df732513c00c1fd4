"""`robustfront quickstart`: four methods on the bundled digits data, honestly evaluated, and their front.

Trains `standard`, `pgd_at`, the weighted average `vanilla` (λ = 0.5) and `ca_at` (γ = 0.8) with a
small CNN (width 16) on scikit-learn's 8×8 digits (ships with scikit-learn: no download), evaluates
each model's best checkpoint on the 360 test images with clean accuracy, PGD-20 and the official
AutoAttack (standard version), and draws the clean-vs-AutoAttack front of the runs. Minutes on a
2-core CPU; resumable (re-run the same command after an interruption).

The weighted average L = (1-λ)·CE(x) + λ·CE(x') (λ weighting the adversarial loss, as in the CA-AT
paper) runs from standard training (λ = 0) to PGD-AT (λ = 1), so the front draws standard, λ = 0.5
and PGD-AT as one family. λ = 0.5 is the same run whichever loss `--opt lam` weights.
"""
from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

from ..checkpoint import read_jsonl, read_yaml, write_json_atomic
from ..eval import EvalConfig, run
from ..fronts.write import write_fronts
from ..fronts.rows import rows_from_eval
from ..train import TrainConfig, train

METHODS = ("standard", "pgd_at", "vanilla", "ca_at")
# where each run sits on a front: (family, knob label, knob value); λ = the adversarial loss's weight
FRONT = {"standard": ("weighted average", "λ=0 (standard)", 0.0), "vanilla": ("weighted average", "λ=0.5", 0.5),
         "pgd_at": ("weighted average", "λ=1 (PGD-AT)", 1.0), "ca_at": ("CA-AT", "γ=0.8", 0.8)}
EPS = "32/255"          # digits have 17 grey levels: 8/255 is below one level, so a larger budget
ATTACKS = ("pgd20", "autoattack")
# width 16: half the default width keeps the whole command near 3.5 minutes on a 2-core AVX2 CPU
# (AutoAttack's FAB-T and Square dominate); width 32 took about twice as long for the same accuracies
MODEL = "small_cnn (width 16)"
BASE = dict(data="digits", model="small_cnn", model_args={"width": 16}, epochs=15, batch_size=64, lr=0.05, schedule="cosine",
            weight_decay=5e-4, eps=EPS, alpha="8/255", attack_steps=7, crop=0, flip=False, seed=0)


def _train(cfg: TrainConfig, say) -> bool:
    """Train, or continue the run the folder holds (an interrupted quickstart resumes: finished models are
    kept, a half-trained one goes on from last.pt). Returns True when the weights are new."""
    run = Path(cfg.out)
    done = [m["epoch"] for m in read_jsonl(run / "metrics.jsonl")] if (run / "metrics.jsonl").is_file() else []
    stored = read_yaml(run / "config.yaml") if (run / "config.yaml").is_file() else {}
    if (run / "checkpoints" / "last.pt").is_file() and stored.get("epochs") == cfg.epochs:
        if done and done[-1] >= cfg.epochs:
            say(f"  kept: {run} has finished its {cfg.epochs} epochs")
            return False
        say(f"  resuming {run} after epoch {done[-1] if done else 0} of {cfg.epochs}")
        train(cfg, resume=True)
        return True
    train(cfg, force=True)
    return True


def quickstart(out: str, *, epochs: int | None = None, device: str = "auto", n_eval: int | None = None) -> list[dict]:
    """Re-running the same command continues where it stopped: trained models are kept, an interrupted
    training resumes from last.pt, an interrupted evaluation from its state folder (RUN/eval-state-quickstart),
    and results.json is rewritten after every model."""
    out_dir = Path(out)
    results, points = [], []
    say = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    for i, method in enumerate(METHODS, 1):
        t0 = time.perf_counter()
        n_ep = epochs or BASE["epochs"]
        say(f"[{i}/{len(METHODS)}] training {method} on digits ({n_ep} epoch{'s' if n_ep != 1 else ''})")
        cfg = TrainConfig(**{**BASE, "method": method, "out": str(out_dir / method), "device": device,
                             **({"epochs": epochs} if epochs else {})})
        state = out_dir / method / f"eval-state-quickstart-n{n_eval or 'all'}"
        if _train(cfg, say) and state.is_dir():
            shutil.rmtree(state)  # the state of other weights: this model is evaluated afresh
        t_train = time.perf_counter() - t0
        say(f"[{i}/{len(METHODS)}] evaluating {method}: clean, PGD-20, AutoAttack (the longest part; resumable "
            f"from {state})")
        request = EvalConfig(attacks=ATTACKS, eps=EPS, norm="Linf", seed=0, n=n_eval, device=device, state=str(state))
        res = run(request, [out_dir / method / "checkpoints" / "best.pt"], log=say).raw
        results.append({"method": method, "clean_acc": res["clean_acc"], "robust_acc": res["robust_acc"],
                        "worst_case_acc": res["worst_case_acc"], "data": "digits (test split)", "model": MODEL,
                        "eps": EPS, "norm": "Linf", "n": res["n"], "seed": 0,
                        "train_time_s": round(t_train, 1), "eval_time_s": res["time_s"]})
        family, knob, value = FRONT[method]
        points += rows_from_eval(res, cfg.to_dict(), knob=knob, knob_value=value, family=family, run=method)
        write_json_atomic(out_dir / "results.json", results)
        say(f"[{method}] trained in {t_train:.0f}s, evaluated in {sum(res['time_s'].values()):.0f}s; "
            f"{out_dir / 'results.json'} holds {len(results)}/{len(METHODS)} model(s) (re-run the same command "
            f"to continue after an interruption)")
    front = next(f for f in write_fronts(points, out_dir / "fronts") if f.suffix == ".png")
    print(table(results))
    print(f"\nresults: {out_dir / 'results.json'}\nfront:   {front}")
    return results


def table(results: list[dict]) -> str:
    r0 = results[0]
    head = (f"digits test set (n={r0['n']}), {r0['model']}, Linf eps={r0['eps']}, seed={r0['seed']}; "
            f"PGD-20 (step eps/4, random start) and AutoAttack standard (official code)\n")
    rows = ["| method   | clean  | PGD-20 | AutoAttack |", "|----------|--------|--------|------------|"]
    for r in results:
        ra = r["robust_acc"]
        rows.append(f"| {r['method']:<8} | {100 * r['clean_acc']:5.1f}% | {100 * ra['pgd20']:5.1f}% | "
                    f"{100 * ra['autoattack']:9.1f}% |")
    return head + "\n".join(rows)
