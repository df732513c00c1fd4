"""The shape the issues build on: the guarded step, RunLog's rules, the config declared once, the typed
evaluation result, the ground floor's messages, and the layering itself."""
import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from robustfront import checkpoint as ckpt
from robustfront.cli import main
from robustfront.train import TrainConfig, train
from robustfront.train.guard import UpdateGuard

TINY = dict(data="digits", model="small_cnn", model_args={"width": 8}, epochs=2, batch_size=128, eps="32/255",
            alpha="8/255", attack_steps=2, progress=False)
PKG = Path(__file__).resolve().parents[1] / "robustfront"


# -- the guarded optimizer step ---------------------------------------------------------------

def _sgd(params, **kw):
    return torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=5e-4, **kw)


@pytest.mark.parametrize("kw", [{}, {"foreach": True}, {"fused": True}, {"nesterov": True}])
def test_guarded_step_equals_plain_sgd_and_skips_bad_steps_exactly(kw):
    torch.manual_seed(0)
    w0 = [torch.randn(5, 3), torch.randn(3)]
    grads = [[torch.randn_like(w) for w in w0] for _ in range(4)]
    grads[2][1][0] = float("nan")                     # step 3 is not finite
    plain = [w.clone().requires_grad_() for w in w0]
    guarded = [w.clone().requires_grad_() for w in w0]
    opt_p, opt_g = _sgd(plain, **kw), _sgd(guarded, **kw)
    guard = UpdateGuard(guarded, opt_g)
    for i, gs in enumerate(grads):
        for p, g in zip(guarded, gs):
            p.grad = g.clone()
        before = [p.detach().clone() for p in guarded]
        bufs = [opt_g.state[p]["momentum_buffer"].clone() for p in guarded]
        guard.step()
        if i == 2:   # skipped: weights *and* momentum exactly as before (weight decay did not move them)
            assert all(torch.equal(p, b) for p, b in zip(guarded, before))
            assert all(torch.equal(opt_g.state[p]["momentum_buffer"], b) for p, b in zip(guarded, bufs))
            continue
        for p, g in zip(plain, gs):
            p.grad = g.clone()
        opt_p.step()
        # a zero momentum buffer created up front gives the lazily cloned first update bit for bit
        assert all(torch.equal(a, b) for a, b in zip(plain, guarded)), i
    assert int(guard.skipped) == 1


def test_an_update_that_overflows_finite_gradients_is_undone():
    w = torch.ones(4, requires_grad=True)
    opt = torch.optim.SGD([w], lr=1e38, momentum=0.9)
    guard = UpdateGuard([w], opt)
    w.grad = torch.full((4,), 1e3)                    # finite, but lr·g overflows to -inf
    guard.step()
    assert torch.equal(w.detach(), torch.ones(4)) and int(guard.skipped) == 1


def test_huge_lr_never_saves_nonfinite_weights_and_stops_with_one_line(tmp_path, capsys):
    rc = main(["train", "--data", "digits", "--model", "mlp", "--epochs", "2", "--lr", "1e30", "--eps", "0",
               "--method", "standard", "--no-progress", "--max-nonfinite", "1", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "training diverged" in err[0] and "smaller lr" in err[0], err
    last = tmp_path / "r" / "checkpoints" / "last.pt"
    if last.exists():   # whatever was saved before the divergence is finite
        state = torch.load(last, weights_only=True)
        assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


# -- RunLog: what a run folder may and may not do --------------------------------------------

def test_finished_run_is_not_overwritten_and_resume_refuses_a_changed_config(tmp_path):
    out = tmp_path / "run"
    train(TrainConfig(**TINY, method="pgd_at", out=str(out)))
    before = (out / "checkpoints" / "last.pt").read_bytes()
    with pytest.raises(ValueError, match=r"already holds a run \(2 of 2 epochs done, finished\); allowed: --resume"):
        train(TrainConfig(**TINY, method="pgd_at", out=str(out)))
    for key, value in (("lr", 0.2), ("seed", 1), ("method", "trades"), ("batch_size", 64), ("eps", "16/255")):
        with pytest.raises(ValueError, match=f"^run folder .* was written for {key}=.*, this run has {key}=.*; allowed: "
                                             f"to resume"):
            train(TrainConfig(**{**TINY, "method": "pgd_at", key: value}, out=str(out)), resume=True)
    assert (out / "checkpoints" / "last.pt").read_bytes() == before
    assert "lr: 0.1" in (out / "config.yaml").read_text()         # the recorded config is untouched
    more = train(TrainConfig(**{**TINY, "epochs": 3}, method="pgd_at", out=str(out)), resume=True)
    assert more["epoch"] == 3 and "epochs: 3" in (out / "config.yaml").read_text()
    history = [json.loads(l) for l in (out / "config_history.jsonl").read_text().splitlines()]
    assert history == [{"resumed_at_epoch": 2, "changed": {"epochs": [2, 3]}}]
    assert train(TrainConfig(**TINY, method="pgd_at", out=str(out)), force=True)["epoch"] == 2


def test_a_second_writer_is_refused_with_the_holders_pid(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, os, sys, time; f = open(sys.argv[1], 'a+'); "
                               "fcntl.flock(f, fcntl.LOCK_EX); f.write(str(os.getpid())); f.flush(); "
                               "print('locked', flush=True); time.sleep(30)", str(out / ".lock")],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(ValueError, match=f"in use by another robustfront process \\(PID {holder.pid}\\)"):
            train(TrainConfig(**TINY, method="standard", out=str(out)))
    finally:
        holder.kill()
        holder.wait()
    assert train(TrainConfig(**{**TINY, "epochs": 1}, method="standard", out=str(out)))["epoch"] == 1


def test_metrics_lost_between_checkpoint_and_log_are_rebuilt_on_resume(tmp_path):
    out = tmp_path / "run"
    train(TrainConfig(**TINY, method="pgd_at", out=str(out)), stop_after=1)
    # as if killed after last.pt was renamed into place but before the metrics line was appended
    state = ckpt.load(out / "checkpoints" / "last.pt")
    (out / "metrics.jsonl").write_text("")
    (out / "checkpoints" / ".last.pt.abc.tmp").write_bytes(b"partial")     # an interrupted save
    assert len(state["history"]) == 1
    train(TrainConfig(**TINY, method="pgd_at", out=str(out)), resume=True)
    lines = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert [l["epoch"] for l in lines] == [1, 2] and lines[0] == state["history"][0]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["best.pt", "last.pt"]


# -- the config, declared once --------------------------------------------------------------

def test_config_keeps_spellings_and_refuses_silent_reinterpretation():
    c = TrainConfig(eps="8/255")
    assert c.eps == 8 / 255 and str(c.alpha) == "2/255" and c.to_dict()["eps"] == "8/255"
    assert c.to_dict()["lr"] == 0.1 and isinstance(c.to_dict()["lr"], float)
    assert TrainConfig(eps="8/255").changed(TrainConfig(eps=8 / 255)) == {}
    for bad, match in (({"bf16": "no"}, r"bf16='no' is invalid; allowed: true or false"),
                       ({"lr": "1e400"}, r"lr='1e400' is not a number"), ({"eps": float("nan")}, "eps=nan"),
                       ({"device": 3}, r"device=3 is invalid; allowed: a string"), ({"out": ""}, r"out='' is invalid"),
                       ({"val_size": 0}, r"val_size=0 is invalid; allowed: val_size >= 1, or select_on=last"),
                       ({"resize": 0}, r"resize=0 is invalid"), ({"seed": -1}, r"seed=-1 is invalid"),
                       ({"milestones": [-1, 2]}, r"milestones=\[-1, 2\] is invalid")):
        with pytest.raises(ValueError, match=match) as e:
            TrainConfig(**bad)
        assert "\n" not in str(e.value)


def test_negative_flag_values_reach_their_validators(tmp_path, capsys):
    for args, needle in ((["--alpha", "-1/255"], "alpha='-1/255' is invalid; allowed: a finite number > 0"),
                         (["--milestones", "-1,2"], "milestones='-1,2' is invalid"),
                         (["--opt", "gamma=abc", "--method", "ca_at"], "gamma='abc' is invalid"),
                         (["--model-arg", "width=abc"], "width='abc' is invalid"),
                         (["--eps", "1e999"], "eps='1e999' is not a number")):
        rc = main(["train", "--data", "digits", "--out", str(tmp_path / "x"), *args])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and needle in err[0], (args, err)


def test_every_train_flag_is_described_with_its_allowed_values():
    from robustfront.cli import build_parser
    sub = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    train_parser = sub.choices["train"]
    flags = [a for a in train_parser._actions if a.option_strings and a.dest not in ("help",)]
    assert len(flags) >= len(TrainConfig.fields())
    for a in flags:
        assert a.help and len(a.help) > 10, a.option_strings
    by = {a.dest: a for a in flags}
    assert by["schedule"].choices == ("multistep", "cosine", "onecycle", "onecycle_epoch", "constant")
    assert "ca_at" in by["method"].help and "resnet18" in by["model"].help and "(default: 8/255)" in by["eps"].help


# -- evaluation results ----------------------------------------------------------------------

def test_eval_result_reads_every_shape_and_round_trips():
    from robustfront.eval import EvalResult, evaluate
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    x, y = torch.rand(16, 4), torch.randint(0, 3, (16,))
    one = evaluate(model, x, y, ["fgsm", "pgd5"], eps=8 / 255, data="toy", split="test")
    assert {"data", "split", "attack_settings", "batch_size", "precision"} <= one.keys()
    assert one["data"] == "toy" and one["attack_settings"]["pgd5"]["steps"] == 5
    sweep = evaluate(model, x, y, ["pgd5"], eps=[0.0, 8 / 255])
    for raw in (one, sweep):
        r = EvalResult.from_json(json.loads(json.dumps(raw)))
        assert EvalResult.from_json(json.loads(json.dumps(r.to_json()))) == r
    r = EvalResult.from_json(sweep)
    assert [p.eps for p in r.points] == [0.0, 8 / 255] and r.largest.robust["pgd5"].mean == sweep["sweep"][1][
        "robust_acc"]["pgd5"]
    old = {**one, "robust_acc": {"apgd-ce": 0.4}, "ra_source": "worst_case"}   # older files: hyphenated names
    assert set(EvalResult.from_json(old).largest.robust) == {"apgd_ce"}
    with pytest.raises(ValueError, match=r"repeats a value"):
        evaluate(model, x, y, ["pgd5"], eps=[0.1, 0.1])
    with pytest.raises(ValueError, match=r"names pgd5 twice"):
        evaluate(model, x, y, ["pgd5", "pgd5"], eps=0.1)


def test_every_eval_flag_is_generated_from_evalconfig():
    from robustfront.attacks.threat import NORMS
    from robustfront.cli import build_parser
    from robustfront.eval import EvalConfig
    sub = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    by = {a.dest: a for a in sub.choices["eval"]._actions if a.option_strings and a.dest != "help"}
    assert set(EvalConfig.fields()) - {"exact"} <= set(by)   # the CLI always evaluates in exact fp32
    assert by["norm"].choices == NORMS and by["split"].choices == ("test", "val")
    assert all(by[f].help and len(by[f].help) > 10 for f in EvalConfig.fields() if f != "exact")
    assert "apgd_ce" in by["attacks"].help and "(default: pgd20,autoattack)" in by["attacks"].help


def test_eval_run_is_what_the_cli_and_the_api_compute(tmp_path, capsys):
    from robustfront.eval import EvalConfig, EvalResult, evaluate, load_for_eval, run
    train(TrainConfig(**{**TINY, "epochs": 1}, out=str(tmp_path / "r")))
    ck = str(tmp_path / "r" / "checkpoints" / "best.pt")
    cfg = EvalConfig(attacks="fgsm,pgd3", n=40, seed=1, no_state=True, device="cpu")
    res = run(cfg, [ck])
    assert isinstance(res, EvalResult) and res.norm == "Linf" and res.n == 40
    assert [p.eps for p in res.points] == [32 / 255] and res.raw["eps_str"] == "32/255"   # the run's own threat
    assert main(["eval", "--checkpoint", ck, "--attacks", "fgsm,pgd3", "--n", "40", "--seed", "1", "--no-state",
                 "--device", "cpu"]) == 0
    cli = json.loads(capsys.readouterr().out)
    assert cli["robust_acc"] == res.raw["robust_acc"] and cli["clean_acc"] == res.raw["clean_acc"]
    inp = load_for_eval(ck, n=40, seed=1, device="cpu")
    api = evaluate(inp.model, inp.x, inp.y, cfg.with_training_defaults(inp.config))
    assert isinstance(api, EvalResult) and api.largest == res.largest
    assert cfg.with_training_defaults({"eps": "4/255", "norm": "L2"}).eps_str == ["4/255"]
    assert EvalConfig(eps="1/255").with_training_defaults({"eps": "4/255"}).eps_str == ["1/255"]


# -- the ground floor and the layering -------------------------------------------------------

def test_bad_checkpoint_files_are_one_line_errors(tmp_path):
    cases = {"empty.pt": b"", "random.pt": os.urandom(256), "text.pt": b"hello"}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ValueError) as e:
            ckpt.load(tmp_path / name)
        assert str(tmp_path / name) in str(e.value) and "\n" not in str(e.value)
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="holds a list; allowed: a dict"):
        ckpt.load(tmp_path / "list.pt")


def _imports(path: Path) -> set[str]:
    """Absolute module names a robustfront file imports (relative imports resolved)."""
    pkg = ".".join(path.relative_to(PKG.parent).with_suffix("").parts)
    base = pkg.split(".")[:-1] if path.name != "__init__.py" else pkg.split(".")
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                mod = ".".join(base[:len(base) - node.level + 1] + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.add(mod)
            out.update(f"{mod}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def test_layering_eval_never_imports_train_and_only_the_top_imports_train():
    allowed = {"cli", "bench", "sweep"}  # sweep runs training points, as the CLI does
    for f in PKG.rglob("*.py"):
        top = f.relative_to(PKG).parts[0].removesuffix(".py")
        if top in ("train", *allowed):
            continue
        bad = {m for m in _imports(f) if m == "robustfront.train" or m.startswith("robustfront.train.")}
        assert not bad, (f, bad)


def test_the_loop_sniffs_nothing_and_no_module_is_long():
    loop = (PKG / "train" / "loop.py").read_text()
    assert "hasattr" not in loop and "getattr" not in loop and "_orig_mod" not in loop
    long = {str(f.relative_to(PKG)): n for f in PKG.rglob("*.py") if (n := len(f.read_text().splitlines())) > 340}
    assert not long, long


def _module_graph() -> dict[str, set[str]]:
    """{module: robustfront modules it imports}, lazy imports included; packages' __init__ left out."""
    mods = {".".join(f.relative_to(PKG.parent).with_suffix("").parts): f for f in PKG.rglob("*.py")
            if f.name != "__init__.py"}
    return {m: {i for i in _imports(f) if i in mods and i != m} for m, f in mods.items()}


def test_no_two_modules_import_each_other():
    moving = {("robustfront.report", "robustfront.report_plots")}   # being moved into robustfront/fronts/
    graph = _module_graph()
    circles = {tuple(sorted((a, b))) for a, deps in graph.items() for b in deps if a in graph[b]}
    assert circles <= moving, circles - moving


def test_declared_once_norms_and_the_official_package():
    norms = [f for f in PKG.rglob("*.py") if '"Linf", "L2", "L1"' in f.read_text()]
    assert [f.relative_to(PKG).as_posix() for f in norms] == ["attacks/threat.py"]
    users = {f.relative_to(PKG).as_posix() for f in PKG.rglob("*.py") if not f.is_relative_to(PKG / "bench")
             and any(m.startswith("pyautoattack") for m in _imports(f))}
    assert users == {"attacks/official.py"}, users   # the one adapter for the official AutoAttack code


def test_evaluation_has_one_driver_and_one_request():
    """`robustfront eval` and the sweep evaluate through eval.run; only eval/ builds results itself."""
    callers = {f.relative_to(PKG).as_posix() for f in PKG.rglob("*.py")
               if "robustfront.eval.run" in _imports(f) or "robustfront.eval.run.run" in _imports(f)}
    assert {"cli/evaluate.py", "sweep/evaluate.py"} <= callers, callers
    direct = {f.relative_to(PKG).as_posix() for f in PKG.rglob("*.py") if not f.is_relative_to(PKG / "eval")
              and not f.is_relative_to(PKG / "bench")
              and {"robustfront.eval.evaluate", "robustfront.eval.suite.evaluate"} & _imports(f)}
    assert not direct, direct
    guards = (PKG / "eval" / "guards.py").read_text()
    assert "def check_eps_values" not in guards and "def check_n(" not in guards   # the request's rules: EvalConfig


def test_attacks_change_their_threat_by_declaration():
    from robustfront.attacks import ThreatModel, create_attack
    from robustfront.models.peft import on_view
    pgd = create_attack("pgd5", ThreatModel(eps=8 / 255))
    small = pgd.with_threat(eps=pgd.eps / 2, alpha=pgd.alpha / 2)
    assert (small.eps, small.alpha, small.steps) == (4 / 255, 1 / 255, 5) and (pgd.eps, pgd.alpha) == (8 / 255, 2 / 255)
    apgd = create_attack("apgd_ce", ThreatModel(eps=8 / 255))
    assert apgd.alpha is None and apgd.with_threat(eps=0.01, alpha=0.5).eps == 0.01   # no step size to scale
    view = torch.nn.Identity()
    wrapped = on_view(pgd, view).with_threat(eps=1 / 255)
    assert wrapped.view is view and wrapped.eps == 1 / 255 and pgd.eps == 8 / 255   # still on the view
    raat = (PKG / "objectives" / "raat.py").read_text()
    assert "hasattr" not in raat and "copy.copy" not in raat


def test_signatures_are_read_only_by_the_registry():
    readers = {f.relative_to(PKG).as_posix() for f in PKG.rglob("*.py") if not f.is_relative_to(PKG / "bench")
               and "inspect.signature" in f.read_text()}
    assert readers == {"registry.py"}, readers


def test_wrappers_forward_the_wrapped_objective_once():
    from robustfront.objectives import WRAPPERS, Slots
    from robustfront.objectives.base import Wrapper
    assert all(issubclass(WRAPPERS.get(n), Wrapper) for n in WRAPPERS.names()) and issubclass(Slots, Wrapper)
    for f in ("base.py", "slots.py", "awp.py"):
        text = (PKG / "objectives" / f).read_text()
        assert "getattr(" not in text and "hasattr(" not in text, f


def _attribute_names(tree: ast.AST):
    """(line, name) of every attribute a module reads or writes by name: `x.name`, getattr/hasattr/
    setattr/delattr(x, "name"), and `name = ...` in a class body."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            yield node.lineno, node.attr
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and len(node.args) > 1 \
                and node.func.id in ("getattr", "hasattr", "setattr", "delattr") \
                and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str):
            yield node.lineno, node.args[1].value
        elif isinstance(node, ast.ClassDef):
            for stmt in node.body:
                targets = stmt.targets if isinstance(stmt, ast.Assign) else \
                    [stmt.target] if isinstance(stmt, ast.AnnAssign) else []
                yield from ((stmt.lineno, t.id) for t in targets if isinstance(t, ast.Name))


def test_model_facts_are_declared_in_model_info():
    """No ad-hoc `rf_*` attribute is read or written on a model (or anything else): the facts are
    ModelInfo's fields, read through models.info.info(model) and set through record()."""
    found = [f"{f.relative_to(PKG).as_posix()}:{line} {name}" for f in PKG.rglob("*.py")
             if f != PKG / "models" / "info.py"
             for line, name in _attribute_names(ast.parse(f.read_text())) if name.startswith("rf_")]
    assert not found, found


def test_models_probe_only_foreign_objects_and_say_why():
    """In models/, getattr/hasattr are left only where the object is someone else's (timm's modules, a
    user's file), each with a comment on its line; the one probe of a model is models.info.info."""
    bare = []
    for f in (PKG / "models").rglob("*.py"):
        if f.name == "info.py":
            continue
        lines = f.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                    and node.func.id in ("getattr", "hasattr") and "#" not in lines[node.lineno - 1]:
                bare.append(f"{f.name}:{node.lineno}")
    assert not bare, bare
