"""Entry point of the ``shapewise`` command.

Each subcommand lives in its own module exposing ``register(subparsers)``; the module sets
``func`` on its parser, a callable ``(args) -> int`` returning the exit code. Errors in the
user's input (``ValueError``, ``OSError``) become one line on stderr and exit code 2, never a
traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
from collections.abc import Sequence

from shapewise.errors import DeviceFailure

# Listed here, imported only when the parser is built: each subcommand imports its heavy
# dependencies (optuna, torch) inside its own ``run``.
SUBCOMMANDS = ("gpus", "report", "recommend", "estimate", "plan", "check", "bench", "fit",
               "tune")

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE = 0, 1, 2
EXIT_DEVICE = 3  # the GPU failed mid-measurement (DeviceFailure)
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for `yes | head -1`


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line and exit 2 (argparse prints usage too).

    Every error of a subcommand, in its arguments or in running it, starts with the same
    prefix, ``shapewise COMMAND: error:`` (``self.prog``); only errors before a command is
    known say ``shapewise: error:``."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    from shapewise import __version__

    parser = _Parser(
        prog="shapewise",
        description="Choose transformer shapes that run fast on your GPU.",
    )
    parser.add_argument("--version", action="version", version=f"shapewise {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in SUBCOMMANDS:
        importlib.import_module(f"shapewise.cli.{name}").register(sub)
    return parser


_NEGATIVE_NUMBER = re.compile(r"-[0-9.]")


def _value_options(parser: argparse.ArgumentParser) -> set[str]:
    """Every option string, over all subcommands, that takes a value."""
    found: set[str] = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found |= _value_options(sub)
        elif action.option_strings and action.nargs != 0:
            found.update(action.option_strings)
    return found


def _join_negative_values(argv: Sequence[str], takes_value: set[str]) -> list[str]:
    """``--params -1B`` as ``--params=-1B``: argparse would read ``-1B`` as an option and
    say "expected one argument"; joined, the option's own check names what is wrong. Only
    options that take a value are joined, and nothing after ``--``."""
    out: list[str] = []
    args = list(argv)
    i = 0
    while i < len(args):
        tok = args[i]
        if tok == "--":
            return out + args[i:]
        if (tok in takes_value and i + 1 < len(args)
                and _NEGATIVE_NUMBER.match(args[i + 1])):
            out.append(f"{tok}={args[i + 1]}")
            i += 2
            continue
        out.append(tok)
        i += 1
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(_join_negative_values(sys.argv[1:] if argv is None else argv,
                                                   _value_options(parser)))
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("shapewise: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (`shapewise ... | head`): stop quietly, as a SIGPIPE'd
        # command would, and keep Python from complaining when it flushes stdout at exit
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except DeviceFailure as exc:
        print(f"shapewise {args.command}: device failure: {str(exc).splitlines()[0]} "
              "(what was measured before it is saved; check the GPU, then --resume)",
              file=sys.stderr)
        return EXIT_DEVICE
    except (ValueError, OSError) as exc:  # InputError is a ValueError
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"shapewise {args.command}: error: {message}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
