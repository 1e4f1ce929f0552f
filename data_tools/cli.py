"""`python -m data_tools {pack,near-dups,merge,build-vocab,inspect,verify}`: parse, validate, run; exit 2 with one
message on bad input (ValueError), 1 when verify finds a mismatch, 0 otherwise.

Each subcommand's flags are generated from its config dataclass in data_tools.config (field = flag,
default = default, docstring = --help; see roberta_ds.cli_args)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console

from data_tools.config import InspectConfig, MergeConfig, NearDupsConfig, PackConfig, VerifyConfig, VocabConfig
from roberta_ds import cli_args

COMMANDS: dict[str, type] = {
    "pack": PackConfig,
    "near-dups": NearDupsConfig,
    "merge": MergeConfig,
    "build-vocab": VocabConfig,
    "inspect": InspectConfig,
    "verify": VerifyConfig,
}
"""Subcommand -> its config; the first line of the config's docstring is the subcommand's help."""


def _summary(cls: type) -> str:
    """``"`data_tools pack`: corpus -> shards."`` -> ``"corpus -> shards"``."""
    return (cls.__doc__ or "").strip().splitlines()[0].split(": ", 1)[-1].rstrip(".")


def build_parser() -> argparse.ArgumentParser:
    invoked = Path(sys.argv[0]).name
    parser = argparse.ArgumentParser(prog=invoked if invoked == "roberta-ds-data" else "python -m data_tools",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, cls in COMMANDS.items():
        own = {"prog": invoked} if invoked == f"roberta-ds-{name}" else {}  # roberta-ds-pack: pack alone
        cli_args.add_arguments(sub.add_parser(name, help=_summary(cls), description=_summary(cls), **own), cls)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = Console(stderr=True)
    # the commands are imported here: `--help` stays fast and workers (which import data_tools.tokenize_worker) light
    try:
        cfg = cli_args.build(COMMANDS[args.command], vars(args))
        if args.command == "pack":
            from data_tools.pack_job import run_pack

            run_pack(cfg, console)
        elif args.command == "near-dups":
            from data_tools.near_dups_job import run_near_dups

            run_near_dups(cfg, console)
        elif args.command == "merge":
            from data_tools.merge import run_merge

            run_merge(cfg, console)
        elif args.command == "build-vocab":
            from data_tools.vocab import build_vocab

            build_vocab(cfg, console)
        elif args.command == "inspect":
            from data_tools.shard_check import inspect

            inspect(cfg.dir, console)
        elif args.command == "verify":
            from data_tools.shard_check import verify

            problems = verify(cfg.dir, console)
            for line in problems:
                console.print(f"[red]MISMATCH[/] {line}", markup=True, highlight=False)
            if problems:
                console.print(f"verify: {len(problems)} problem(s) in {cfg.dir}")
                return 1
            console.print(f"verify: {cfg.dir} OK")
    except ValueError as e:  # includes TokenizerError and ShardFormatError: user input, not a bug
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def pack_main() -> int:
    """The console command ``roberta-ds-pack ARGS``: ``python -m data_tools pack ARGS``."""
    return main(["pack", *sys.argv[1:]])
