"""Every option of every command has a help line that states its default (#15 item 5)."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from shapewise.cli.main import SUBCOMMANDS, build_parser


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _options(sub: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in sub._actions
            if a.option_strings and not isinstance(a, argparse._HelpAction)]


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_every_option_has_help_with_its_default(name: str) -> None:
    sub = _subparsers()[name]
    missing, no_default = [], []
    for action in _options(sub):
        flag = "/".join(action.option_strings)
        if action.help == argparse.SUPPRESS:
            continue  # deliberately hidden (bench --plan)
        if not action.help or not action.help.strip():
            missing.append(flag)
            continue
        text = sub._get_formatter()._expand_help(action)  # %-formatting applied
        # an option that takes a value and may be left out must say what it is then
        if action.nargs != 0 and not action.required and "default" not in text.lower():
            no_default.append(f"{flag}: {text}")
    assert not missing, f"{name}: options without help: {missing}"
    assert not no_default, f"{name}: help that does not state the default: {no_default}"


def test_the_walk_sees_the_options_the_issue_named() -> None:
    """The test above would pass vacuously if it walked nothing: it sees these."""
    seen = {name: {s for a in _options(sub) for s in a.option_strings}
            for name, sub in _subparsers().items()}
    assert {"--seq-len", "--vocab-size", "--micro-batch", "--n-trials", "--seed"} <= \
        seen["recommend"]
    assert {"--n-min", "--n-max", "--n-step"} <= seen["report"]


def test_help_is_printed_through_the_entry_point() -> None:
    r = subprocess.run([sys.executable, "-m", "shapewise", "report", "--help"],
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0
    text = " ".join(r.stdout.split())
    assert "first N of the sweep, in elements (default 1024)" in text
    r = subprocess.run([sys.executable, "-m", "shapewise", "recommend", "--help"],
                       capture_output=True, text=True, timeout=60, check=False)
    text = " ".join(r.stdout.split())
    assert "random seed of the search" in text and "(default 0)" in text
