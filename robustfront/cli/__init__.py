"""robustfront command line: quickstart | train | sweep | reproduce | eval | analyze | report | export | bench | theorem1 | data info.

One error boundary for every command: a bad value, file or folder ends in one line on stderr naming
it and what is allowed, exit code 2, never a traceback (`--debug` or ROBUSTFRONT_DEBUG=1 shows it).
An unexpected failure inside robustfront is one line too, exit code 1, asking for --debug.
"""
from __future__ import annotations

import argparse
import errno
import os
import sys

from . import evaluate, export, reproduce, sweep, tools, train

USER_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError,
               UnicodeDecodeError)


class Parser(argparse.ArgumentParser):
    """argparse, but a bad flag gives one line (no usage dump): what was wrong and what is allowed."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="robustfront", description=__doc__.split("\n")[0])
    parser.add_argument("--debug", action="store_true", help="show Python tracebacks (also: ROBUSTFRONT_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for module in (tools, train, sweep, reproduce, evaluate, export):
        module.add_commands(sub)
    complete_help(parser)
    return parser


_NO_VALUE = (argparse._HelpAction, argparse._StoreTrueAction, argparse._StoreFalseAction, argparse._StoreConstAction,
             argparse._AppendConstAction, argparse._CountAction, argparse._VersionAction)


def complete_help(parser: argparse.ArgumentParser) -> None:
    """Every subcommand's --help opens with its description (its one-line help where it has no other), and
    every flag that takes a value names its default: flags whose help does not say it get argparse's
    value appended ("default: none" where there is none), so generated flags cannot drift."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, p in action.choices.items():
                if not p.description and helps.get(name):
                    p.description = helps[name][0].upper() + helps[name][1:] + "."
                complete_help(p)
        elif action.option_strings and not isinstance(action, _NO_VALUE) and not action.required:
            h = action.help or ""
            if "default" not in h.lower() and h is not argparse.SUPPRESS:
                d = action.default
                shown = "none" if d is None or d == [] else ",".join(map(str, d)) if isinstance(d, (list, tuple)) else d
                action.help = f"{h} (default: {shown})".strip().replace("%", "%%")


def join_negative_values(argv: list[str], parser: argparse.ArgumentParser) -> list[str]:
    """`--alpha -1/255` -> `--alpha=-1/255`: argparse would read a value starting with '-' as a flag,
    so the validator never saw it. Only for flags that take a value, and values that are no flag."""
    takes_value = set()
    for action in _all_actions(parser):
        if action.nargs != 0 and action.option_strings:
            takes_value.update(action.option_strings)
    flags = {s for a in _all_actions(parser) for s in a.option_strings}
    out, i = [], 0
    while i < len(argv):
        a = argv[i]
        if a in takes_value and i + 1 < len(argv) and argv[i + 1].startswith("-") and argv[i + 1] not in flags \
                and not argv[i + 1].startswith("--"):
            out.append(f"{a}={argv[i + 1]}")
            i += 2
            continue
        out.append(a)
        i += 1
    return out


def _all_actions(parser):
    for action in parser._actions:
        yield action
        if isinstance(action, argparse._SubParsersAction):
            for p in action.choices.values():
                yield from _all_actions(p)


def one_line(e: BaseException) -> str:
    text = str(e) or type(e).__name__
    if isinstance(e, OSError) and e.filename and str(e.filename) not in text:
        text = f"{e.filename}: {text}"
    return " ".join(text.split())


def _quiet_rank() -> bool:
    """Under torchrun a user error is printed once, by rank 0: errors while a run is set up are shared
    between the ranks (rank 0 holds the failing rank's message, as a PeerError; a config that differs
    between ranks is named on all), and errors after it (divergence) happen on every rank alike. An
    error a rank hit before the ranks met (a bad flag on that rank only) is printed by that rank."""
    from ..train.distributed import error_shared, rank_from_env
    rank, world = rank_from_env()
    return world > 1 and rank != 0 and error_shared()


def _rank_tag() -> str:
    from ..train.distributed import rank_from_env
    rank, world = rank_from_env()
    return f"rank {rank} of {world}: " if world > 1 and rank != 0 else ""


def main(argv=None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("ROBUSTFRONT_DEBUG", "") not in ("", "0")
    argv = join_negative_values([a for a in argv if a != "--debug"], parser)
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help (0) or a bad flag (2, its one line already printed): a code, not an exit
        return e.code if isinstance(e.code, int) else 2
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("robustfront: interrupted", file=sys.stderr)
        return 130
    except USER_ERRORS as e:
        if debug:
            raise
        if _quiet_rank():
            return 2
        print(f"robustfront: error: {_rank_tag()}{one_line(e)}", file=sys.stderr)
        return 2
    except OSError as e:  # disk full, read-only file system, ...
        if debug:
            raise
        what = {errno.ENOSPC: "no space left on the device", errno.EROFS: "read-only file system"}.get(e.errno)
        text = one_line(e) if what is None else (f"{e.filename or 'a file being written'}: {what}; allowed: free "
                                                  f"space (or another --out) and re-run the same command: finished "
                                                  f"work is kept, sweep.json and state folders are re-read")
        print(f"robustfront: error: {text}", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 - a bug in robustfront: still one line, but say so
        if debug:
            raise
        print(f"robustfront: internal error ({type(e).__name__}: {one_line(e)[:300]}); rerun with --debug for the "
              f"traceback and report it", file=sys.stderr)
        return 1


__all__ = ["build_parser", "main"]
