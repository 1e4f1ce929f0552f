"""What each data_tools command is asked to do: one config dataclass per command, from which
data_tools.cli generates its command line (field = flag, default = default, docstring = --help).

Kept import-light (stdlib + data_tools.readers): the command line is built from these classes
before any command runs, so `--help` stays fast and never imports transformers or torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from data_tools.readers import ReaderConfig
from roberta_ds.cli_args import cli


@dataclass
class PackConfig:
    """`data_tools pack`: corpus -> packed WebDataset shards + manifest."""

    reader: ReaderConfig
    """Where and how to read the corpus."""
    output: Path
    """Dataset directory to write (the same command finishes a pack that was killed)."""
    tokenizer_path: str
    """Hub id, tokenizer directory or vocab.txt."""
    max_seq_length: int = 512
    """Tokens per packed sequence, [CLS] included."""
    val_fraction: float = 0.01
    """Fraction of documents (by content hash) held out for validation; 0 = no validation split."""
    workers: int = 1
    """Tokenizer processes; the output is byte-identical for any value."""
    wwm: bool = False
    """Store jieba word-start flags per token, for whole-word masking."""
    shard_size_mb: float = 64.0
    """Target shard size in MiB."""
    normalize: bool = True
    """Map curly quotes, dashes and the ellipsis to in-vocab equivalents (CHAR_TABLE in data_tools/normalize.py)."""
    chunk_docs: int = 64
    """Documents per pool task: bigger amortises IPC, smaller evens out the load."""

    def __post_init__(self) -> None:
        problems = []
        if self.max_seq_length < 8:
            problems.append(f"--max_seq_length {self.max_seq_length}: must be >= 8 ({PackConfig.max_seq_length} is the default)")
        if not 0.0 <= self.val_fraction < 1.0:
            problems.append(f"--val_fraction {self.val_fraction}: must be in [0, 1), e.g. 0.01")
        if self.workers < 1:
            problems.append(f"--workers {self.workers}: must be >= 1")
        if self.shard_size_mb <= 0:
            problems.append(f"--shard_size_mb {self.shard_size_mb}: must be > 0, e.g. 64")
        if self.chunk_docs < 1:
            problems.append(f"--chunk_docs {self.chunk_docs}: must be >= 1")
        if self.reader.max_files_per_category is not None and self.reader.max_files_per_category < 1:
            problems.append(f"--max_files_per_category {self.reader.max_files_per_category}: must be >= 1")
        if self.reader.doc_sep not in ("line", "blank"):
            problems.append(f"--doc_sep {self.reader.doc_sep!r}: must be 'line' or 'blank'")
        if problems:
            raise ValueError("invalid pack options:\n  " + "\n  ".join(problems))

    def options(self) -> dict:
        """Every option that shapes the output (not --workers, which does not)."""
        r = self.reader
        return {
            "format": r.format,
            "input": None if r.input is None else str(Path(r.input).resolve()),
            "text_field": list(r.text_field),
            "doc_sep": r.doc_sep,
            "categories": list(r.categories),
            "inews_splits": list(r.inews_splits) if r.format == "inews" else None,
            "max_files_per_category": r.max_files_per_category,
            "tokenizer_path": self.tokenizer_path,
            "max_seq_length": self.max_seq_length,
            "val_fraction": self.val_fraction,
            "wwm": self.wwm,
            "shard_size_mb": self.shard_size_mb,
            "normalize": self.normalize,
        }


@dataclass
class VocabConfig:
    """`data_tools build-vocab`: train a BERT-style Chinese WordPiece vocab on a corpus."""

    reader: ReaderConfig
    """Where and how to read the corpus."""
    output: Path
    """Tokenizer directory to write."""
    vocab_size: int = 21128
    """Target number of ids, special tokens included; the corpus may support fewer."""
    min_frequency: int = 2
    """Minimum count for a merged word piece; single characters are always kept."""
    normalize: bool = True
    """Map curly quotes, dashes and the ellipsis first, as pack does (CHAR_TABLE in data_tools/normalize.py)."""

    def __post_init__(self) -> None:
        from roberta_ds.tokenizer import SPECIAL_TOKENS  # here, not above: it imports transformers

        problems = []
        if self.vocab_size < len(SPECIAL_TOKENS) + 10:
            problems.append(f"--vocab_size {self.vocab_size}: too small, use e.g. 21128")
        if self.min_frequency < 1:
            problems.append(f"--min_frequency {self.min_frequency}: must be >= 1")
        if problems:
            raise ValueError("invalid build-vocab options:\n  " + "\n  ".join(problems))


@dataclass
class InspectConfig:
    """`data_tools inspect`: the manifest's summary and one decoded sample."""

    dir: Path = field(metadata=cli(positional=True))
    """Dataset directory written by `data_tools pack`."""


@dataclass
class VerifyConfig:
    """`data_tools verify`: re-hash and re-count every shard against the manifest."""

    dir: Path = field(metadata=cli(positional=True))
    """Dataset directory written by `data_tools pack`."""
