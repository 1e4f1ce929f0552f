"""`python -m data_tools {pack,build-vocab,inspect,verify}`: parse, validate, run; exit 2 with one
message on bad input (ValueError), 1 when verify finds a mismatch, 0 otherwise."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console

from data_tools.readers import FORMATS, INEWS_SPLITS, ReaderConfig


def _csv_list(s: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in s.split(",") if x.strip())


def _add_reader_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", required=True, choices=FORMATS, help="corpus format")
    p.add_argument("--input", type=Path, help="corpus file or directory (not needed for inews)")
    p.add_argument("--text_field", type=_csv_list, default=("text",), help="jsonl/csv field(s), comma-separated, joined by newline")
    p.add_argument("--doc_sep", default="line", choices=("line", "blank"), help="text: one document per line or blank-line separated")
    p.add_argument("--categories", type=_csv_list, default=(), help="thucnews: comma-separated category subset")
    p.add_argument("--max_files_per_category", type=int, default=None, help="thucnews: first N files per category")
    p.add_argument("--inews_splits", type=_csv_list, default=INEWS_SPLITS,
                   help="inews: the package's splits to read, comma-separated (the demo keeps test out for its probe)")
    p.add_argument("--no_normalize", action="store_true", help="do not map curly quotes/dashes/ellipsis (see data_tools/normalize.py)")
    p.add_argument("--output", type=Path, required=True, help="output directory")


def _reader_config(a: argparse.Namespace) -> ReaderConfig:
    return ReaderConfig(
        format=a.format, input=a.input, text_field=a.text_field, doc_sep=a.doc_sep,
        categories=a.categories, max_files_per_category=a.max_files_per_category, inews_splits=tuple(a.inews_splits),
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m data_tools", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("pack", help="corpus -> packed WebDataset shards + manifest")
    _add_reader_args(p)
    p.add_argument("--tokenizer_path", required=True, help="hub id, tokenizer directory, or vocab.txt")
    p.add_argument("--max_seq_length", type=int, default=512)
    p.add_argument("--val_fraction", type=float, default=0.01, help="documents (by content hash) held out; 0 = none")
    p.add_argument("--workers", type=int, default=1, help="tokenizer processes (output identical for any value)")
    p.add_argument("--wwm", action="store_true", help="store jieba word-start flags for whole-word masking")
    p.add_argument("--shard_size_mb", type=float, default=64.0)
    p.add_argument("--chunk_docs", type=int, default=64, help="documents per worker task")

    v = sub.add_parser("build-vocab", help="train a BERT-style Chinese WordPiece vocab")
    _add_reader_args(v)
    v.add_argument("--vocab_size", type=int, default=21128)
    v.add_argument("--min_frequency", type=int, default=2)

    for name, helptext in (("inspect", "summary + a decoded sample"), ("verify", "re-hash and re-count every shard")):
        q = sub.add_parser(name, help=helptext)
        q.add_argument("dir", type=Path)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = Console(stderr=True)
    # imports here keep `--help` fast and workers (which import data_tools.packing) light

    try:
        if args.command == "pack":
            from data_tools.pack import PackConfig, run_pack

            cfg = PackConfig(
                reader=_reader_config(args), output=args.output, tokenizer_path=args.tokenizer_path,
                max_seq_length=args.max_seq_length, val_fraction=args.val_fraction, workers=args.workers,
                wwm=args.wwm, shard_size_mb=args.shard_size_mb, normalize=not args.no_normalize,
                chunk_docs=args.chunk_docs,
            )
            run_pack(cfg, console)
        elif args.command == "build-vocab":
            from data_tools.vocab import VocabConfig, build_vocab

            build_vocab(
                VocabConfig(reader=_reader_config(args), output=args.output, vocab_size=args.vocab_size,
                            min_frequency=args.min_frequency, normalize=not args.no_normalize),
                console,
            )
        elif args.command == "inspect":
            from data_tools.inspect import inspect

            inspect(args.dir, console)
        elif args.command == "verify":
            from data_tools.inspect import verify

            problems = verify(args.dir, console)
            for line in problems:
                console.print(f"[red]MISMATCH[/] {line}", markup=True, highlight=False)
            if problems:
                console.print(f"verify: {len(problems)} problem(s) in {args.dir}")
                return 1
            console.print(f"verify: {args.dir} OK")
    except ValueError as e:  # includes TokenizerError and ShardFormatError: user input, not a bug
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
