"""Docs and help that match the code: every link and every repository path a doc names in backticks exists;
no path of one machine in tracked files; every subcommand has a description and every flag its default;
the README lists the commands, methods and models the code has; its tables say what their ratios are."""
import argparse
import re
import subprocess
from pathlib import Path

import pytest

from robustfront.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
TOP = ("robustfront/", "docs/", "benchmarks/", "configs/", "tests/", ".ci/")
EXT = (".py", ".md", ".sh", ".yaml", ".yml", ".json", ".toml", ".png", ".csv", ".txt", ".log")


def expand(span: str) -> list[str]:
    """`robustfront/attacks/{mifgsm,spsa}.py` -> both paths."""
    m = re.search(r"\{([^{}]*)\}", span)
    if not m:
        return [span]
    return [p for alt in m.group(1).split(",") for p in expand(span[:m.start()] + alt + span[m.end():])]


def code_paths(text: str) -> list[str]:
    """Repository paths named in backticks: they start at a top-level folder of the repository, or name
    a file of the package (`eval/suite.py`), and hold no placeholder (OUT/, runs/..., *, <...>)."""
    out = []
    for span in re.findall(r"`([^`\s]+)`", text):
        span = span.rstrip(".,:;)").split("#")[0].split("::")[0]
        if re.search(r"[*<>$~]|^[A-Z_]+/|/[A-Z_]+(/|$)", span) or "/" not in span:
            continue
        if span.startswith(TOP) or (span.endswith(EXT) and span.split("/")[0] in PACKAGE_DIRS):
            out += expand(span)
    return out


PACKAGE_DIRS = {p.name for p in (ROOT / "robustfront").iterdir() if p.is_dir() and not p.name.startswith("__")}


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_link_and_code_path_exists(doc):
    text = doc.read_text()
    missing = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        target = target.split("#")[0]
        if target and not re.match(r"[a-z]+:", target) and not (doc.parent / target).exists():
            missing.append(target)
    for p in code_paths(text):
        bases = (ROOT, doc.parent, ROOT / "robustfront")
        if not any((b / p).exists() for b in bases):
            missing.append(p)
    assert not missing, missing


def test_code_path_finder_sees_what_it_should():
    assert code_paths("see `robustfront/eval/{mifgsm,spsa}.py` and `eval/suite.py`, not `OUT/x.json` or `runs/a`") == \
        ["robustfront/eval/mifgsm.py", "robustfront/eval/spsa.py", "eval/suite.py"]


MACHINE = re.compile(r"(?<![\w.])/(work|root|home|tmp|mnt|scratch)/[\w.-]")


def test_no_path_of_one_machine_in_tracked_files():
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    bad = []
    for f in files:
        p = ROOT / f
        if p.suffix in (".png", ".pt", ".gz", ".zip", ".safetensors") or not p.is_file() or f.startswith("tests/"):
            continue
        for i, line in enumerate(p.read_text(errors="replace").splitlines(), 1):
            if MACHINE.search(line):
                bad.append(f"{f}:{i}: {line.strip()[:100]}")
    assert not bad, "\n".join(bad)


def _subparsers(parser, prefix=()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, p in action.choices.items():
                yield (*prefix, name), p
                yield from _subparsers(p, (*prefix, name))


def test_every_subcommand_has_a_description_and_every_flag_its_default():
    missing = []
    for name, p in _subparsers(build_parser()):
        if not (p.description or "").strip():
            missing.append(f"{' '.join(name)}: no description")
        for a in p._actions:
            if not a.option_strings or isinstance(a, (argparse._HelpAction, argparse._StoreTrueAction,
                                                      argparse._StoreFalseAction, argparse._StoreConstAction,
                                                      argparse._AppendConstAction, argparse._CountAction)):
                continue
            h = (a.help or "").lower()
            if not h:
                missing.append(f"{' '.join(name)} {a.option_strings[0]}: no help")
            elif not (a.required or "default" in h or "required" in h):
                missing.append(f"{' '.join(name)} {a.option_strings[0]}: no default named")
            if "(required)" in h and not a.required:
                missing.append(f"{' '.join(name)} {a.option_strings[0]}: says required, is not")
    assert not missing, "\n".join(missing)


def test_readme_lists_what_the_code_has():
    readme = (ROOT / "README.md").read_text()
    commands = [n[0] for n, _ in _subparsers(build_parser()) if len(n) == 1]
    assert [c for c in commands if f"robustfront {c}" not in readme] == []
    from robustfront.train.methods import METHODS
    methods = re.search(r"- `--method`:(.*?)(?:\n- )", readme, re.S).group(1)
    assert sorted(m for m in METHODS if f"`{m}`" not in methods) == []
    from robustfront.models import MODELS
    models = re.search(r"- `--model`:(.*?)(?:\n- )", readme, re.S).group(1)
    listed = set(re.findall(r"`([a-z0-9_{},*]+)`", models))
    names = {n for s in listed for n in expand(s)}
    assert sorted(m for m in MODELS if m not in names and not any(re.fullmatch(s.replace("*", ".*"), m) for s in names)) == []


def test_readme_tables_say_what_their_ratios_are():
    readme = (ROOT / "README.md").read_text().splitlines()
    for i, line in enumerate(readme):
        if line.startswith("|") and re.search(r"speed-up|ratio", line):
            around = " ".join(readme[max(0, i - 4):i] + readme[i + 1:i + 16])
            assert re.search(r"speed-up (is|=|:)[^.]*(median|ratio)", around), line
