"""Every flag of every command has help text and one default: the command lines are generated from the
config dataclasses (roberta_ds/cli_args.py), and a field without a docstring would show a bare flag."""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pretrain_helpers import launcher_module

from data_tools.cli import build_parser as data_tools_parser
from roberta_ds import cli_args
from roberta_ds.cli_args import cli
from roberta_ds.training.config import RunConfig
from roberta_ds.downstream.saved_model import EvalConfig


def _commands() -> dict[str, argparse.ArgumentParser]:
    parsers = {
        "launcher/pretrain.py": cli_args.parser_for(RunConfig, "pretrain"),
        "launcher/evaluate.py": cli_args.parser_for(EvalConfig, "evaluate"),
        "launcher/export.py": cli_args.parser_for(launcher_module("export").ExportCommand, "export"),
        "launcher/report.py": cli_args.parser_for(launcher_module("report").ReportCommand, "report"),
        "launcher/probe.py": cli_args.parser_for(launcher_module("probe").ProbeConfig, "probe"),
    }
    sub = next(a for a in data_tools_parser()._actions if isinstance(a, argparse._SubParsersAction))
    parsers.update({f"data_tools {name}": p for name, p in sub.choices.items()})
    return parsers


@pytest.mark.parametrize("command", sorted(_commands()))
def test_every_flag_has_help(command: str):
    parser = _commands()[command]
    bare = [a.option_strings or a.dest for a in parser._actions
            if not isinstance(a, argparse._HelpAction) and not (a.help and a.help.strip())]
    assert bare == []
    parser.format_help()  # a help string argparse cannot format (e.g. a bare %) would raise here


SCRIPTS = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())["project"]["scripts"]


def test_every_command_has_a_console_script():
    targets = {v.split(":")[0] for v in SCRIPTS.values()}
    commands = {f"roberta_ds.commands.{p.stem}" for p in (Path(__file__).resolve().parent.parent / "roberta_ds"
                                                           / "commands").glob("*.py") if p.stem != "__init__"}
    assert commands | {"data_tools.cli"} == targets
    for target in SCRIPTS.values():
        module, attr = target.split(":")
        assert callable(getattr(importlib.import_module(module), attr)), target


@pytest.mark.slow
def test_the_installed_console_scripts_answer_help():
    # `pip install -e .` (the README's setup) puts them beside this interpreter
    bin_dir = Path(sys.executable).parent
    missing = [name for name in SCRIPTS if not (bin_dir / name).exists()]
    assert missing == [], f"not installed in {bin_dir}: run `pip install -e .` again after changing pyproject.toml"
    procs = {name: subprocess.Popen([str(bin_dir / name), "--help"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True) for name in SCRIPTS}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, (name, err[-2000:])
        assert out.startswith(f"usage: {name}"), (name, out[:200])


@dataclass
class _Example:
    name: str
    """What to call it."""
    steps: int = 3
    """How many; 10 % more is fine."""
    tags: tuple[str, ...] = ("a", "b")
    """Comma-separated."""
    extra: list[str] = field(default_factory=list, metadata=cli(flag="--x"))
    """Repeatable."""
    normalize: bool = True
    """Normalise first."""


def test_fields_become_flags_with_their_defaults_and_docstrings():
    p = cli_args.parser_for(_Example, "example")
    ex = cli_args.build(_Example, vars(p.parse_args(["--name", "n", "--x", "1", "--x", "2", "--no_normalize",
                                                      "--tags", "c, d"])))
    assert ex == _Example(name="n", steps=3, tags=("c", "d"), extra=["1", "2"], normalize=False)
    text = p.format_help()
    assert "How many; 10 % more is fine. (default: 3)" in " ".join(text.split())
    with pytest.raises(SystemExit):
        p.parse_args([])  # --name has no default: required
