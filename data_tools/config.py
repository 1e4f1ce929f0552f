"""What each data_tools command is asked to do: one config dataclass per command, from which
data_tools.cli generates its command line (field = flag, default = default, docstring = --help).

Kept import-light (stdlib + data_tools.readers): the command line is built from these classes
before any command runs, so `--help` stays fast and never imports transformers or torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from data_tools.near_dedup import DEFAULT_THRESHOLD, check_threshold
from data_tools.quality import QualityFilters
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
    quality: QualityFilters = field(default_factory=QualityFilters)
    """The quality filters (data_tools/quality.py): their flags are --min_chars, --max_non_han,
    --max_repeated_lines and --max_repeated_paragraphs."""
    near_dedup: bool = False
    """Drop near-duplicates: documents whose estimated Jaccard similarity (character 5-gram MinHash) to a document
    kept earlier is at least --near_dedup_threshold (data_tools/near_dedup.py). For --part, use --drop_list."""
    near_dedup_threshold: float = DEFAULT_THRESHOLD
    """The similarity at which --near_dedup drops a document."""
    drop_list: Path | None = None
    """A drop list written by `data_tools near-dups` over the whole input: drop the near-duplicates it names (how
    --part I/N packs remove near-duplicates across parts)."""
    part: str | None = field(default=None, metadata=cli(metavar="I/N"))
    """I/N: pack only part I of N (1-based, e.g. 2/3) for packing on several machines; a document's part is its
    content hash modulo N, so duplicates share a part and the train/validation split is unchanged. Every part
    reads the whole input; `data_tools merge` joins the N part directories. Default: the whole input."""
    part_by: str = field(default="hash", metadata=cli(choices=("hash", "files")))
    """How --part I/N shares the input: hash (above: every part reads everything) or files: part I reads only input
    files I, I+N, I+2N, ... (in the sorted file list) and drops the exact copies of documents read earlier, in any
    part, that --drop_list lists: a list from `near-dups --executor local|slurm`, whose pass over the whole input
    finds them. The merged parts keep the documents one pack with that --drop_list keeps, with its split."""
    executor: str = field(default="inline", metadata=cli(choices=("inline", "local", "slurm")))
    """inline: this process packs (--part I/N or everything). local / slurm: --parts N packs of --part_by files
    parts as datatrove tasks (LocalPipelineExecutor, or a SLURM job array), then a task that merges them into
    --output; the parts are written to OUTPUT.parts/ (data_tools/dt_pack.py)."""
    parts: int = 1
    """local / slurm: the number of parts (each reads every parts-th input file)."""
    slurm_partition: str | None = None
    """slurm: the partition the job arrays go to."""
    slurm_time: str = "4:00:00"
    """slurm: each task's time limit."""
    slurm_mem_gb: int = 4
    """slurm: memory per task, in GB."""

    def __post_init__(self) -> None:
        problems = []
        if self.executor != "inline":
            if self.part is not None or self.part_by != "files" or self.drop_list is None or self.parts < 1:
                problems.append(f"--executor {self.executor}: give --parts N (not --part), --part_by files and "
                                "--drop_list DIR (from `near-dups --executor local|slurm`): the executor runs the N "
                                "parts and merges them")
            if self.executor == "slurm" and not self.slurm_partition:
                problems.append("--executor slurm needs --slurm_partition NAME")
        elif self.parts != 1:
            problems.append(f"--parts {self.parts}: with --executor local or slurm (inline packs one --part I/N)")
        if self.part_by == "files":
            from data_tools.readers import SUFFIXES

            if (self.part is None and self.executor == "inline") or self.drop_list is None:
                problems.append("--part_by files needs --part I/N (or --executor local|slurm --parts N) and --drop_list DIR from `data_tools near-dups "
                                "--executor local` (or slurm): its pass over the whole input lists the exact copies "
                                "across parts")
            if self.reader.format not in SUFFIXES:
                problems.append(f"--part_by files: --format {self.reader.format} is not read file by file; use "
                                "--part_by hash")
        elif self.part_by != "hash":
            problems.append(f"--part_by {self.part_by!r}: choose hash or files")
        if self.part is not None:
            try:
                parse_part(self.part)
            except ValueError as e:
                problems.append(str(e))
        if self.max_seq_length < 8:
            problems.append(f"--max_seq_length {self.max_seq_length}: must be >= 8 ({PackConfig.max_seq_length} is the default)")
        if not 0.0 <= self.val_fraction < 1.0:
            problems.append(f"--val_fraction {self.val_fraction}: must be in [0, 1), e.g. 0.01")
        problems += at_least_one(workers=self.workers, chunk_docs=self.chunk_docs)
        if self.shard_size_mb <= 0:
            problems.append(f"--shard_size_mb {self.shard_size_mb}: must be > 0, e.g. 64")
        if self.reader.max_files_per_category is not None and self.reader.max_files_per_category < 1:
            problems.append(f"--max_files_per_category {self.reader.max_files_per_category}: must be >= 1")
        if self.reader.doc_sep not in ("line", "blank"):
            problems.append(f"--doc_sep {self.reader.doc_sep!r}: must be 'line' or 'blank'")
        problems += self.quality.problems()
        if self.near_dedup:
            problems += check_threshold(self.near_dedup_threshold)
            if self.part is not None:
                problems.append("--near_dedup with --part: near-duplicates cross parts (a document's part is its exact "
                                "content hash); run `data_tools near-dups` once over the whole input and give every "
                                "part --drop_list")
            if self.drop_list is not None:
                problems.append("--near_dedup and --drop_list: give one (the drop list already holds the near-duplicates)")
        if problems:
            raise ValueError("invalid pack options:\n  " + "\n  ".join(problems))

    def options(self) -> dict:
        """Every option that shapes the output (not --workers, which does not)."""
        return {
            **self.reader.options(),
            "tokenizer_path": self.tokenizer_path,
            "max_seq_length": self.max_seq_length,
            "val_fraction": self.val_fraction,
            "wwm": self.wwm,
            "shard_size_mb": self.shard_size_mb,
            "normalize": self.normalize,
            "part": None if self.part is None else "{}/{}".format(*parse_part(self.part)),
            # only when set: a pack started before the filters existed resumes with the same options
            **({"quality": self.quality.settings()} if self.quality.active else {}),
            **({"near_dedup_threshold": self.near_dedup_threshold} if self.near_dedup else {}),
            **({"drop_list": str(self.drop_list)} if self.drop_list is not None else {}),
            **({"part_by": self.part_by} if self.part_by != "hash" else {}),
        }

    def document_options(self) -> dict:
        """The options that decide which documents reach near-duplicate removal: a drop list must match them."""
        o = self.options()
        return {k: o.get(k) for k in (*self.reader.options(), "normalize", "quality")}

    def partition(self) -> tuple[int, int] | None:
        """(I, N) of --part I/N (I 1-based), None without --part."""
        return None if self.part is None else parse_part(self.part)


def at_least_one(**flags: int) -> list[str]:
    """The problem of each count flag below 1."""
    return [f"--{name} {v}: must be >= 1" for name, v in flags.items() if v < 1]


def parse_part(text: str) -> tuple[int, int]:
    """``"2/3"`` -> (2, 3); a ValueError naming the problem and the fix for anything else."""
    i, sep, n = text.strip().partition("/")
    if not sep or not i.strip().isdigit() or not n.strip().isdigit():
        raise ValueError(f"--part {text!r}: must be I/N with whole numbers, part I of N counting from 1, e.g. --part 2/3")
    i, n = int(i), int(n)
    if n < 1:
        raise ValueError(f"--part {text}: N must be >= 1 (the number of parts), e.g. --part 1/{max(i, 2)}")
    if not 1 <= i <= n:
        hint = (f": parts count from 1, so a 0-based array index needs +1, e.g. --part $((SLURM_ARRAY_TASK_ID+1))/{n}"
                if i == 0 else f", e.g. --part {n}/{n} for the last part")
        raise ValueError(f"--part {text}: I must be between 1 and N (1..{n}){hint}")
    return i, n


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
    workers: int = 1
    """Processes that read, normalise and count; the vocab is byte-identical for any value."""
    sample_docs: int | None = None
    """Train on a sample of N documents (those with the N smallest content hashes: uniform and deterministic), for
    very large corpora; one more streaming pass finds them. Default: every document."""

    def __post_init__(self) -> None:
        from roberta_ds.tokenizer import SPECIAL_TOKENS  # here, not above: it imports transformers

        problems = []
        if self.sample_docs is not None and self.sample_docs < 1:
            problems.append(f"--sample_docs {self.sample_docs}: must be >= 1 (omit it for every document)")
        if self.vocab_size < len(SPECIAL_TOKENS) + 10:
            problems.append(f"--vocab_size {self.vocab_size}: too small, use e.g. 21128")
        problems += at_least_one(min_frequency=self.min_frequency, workers=self.workers)
        if problems:
            raise ValueError("invalid build-vocab options:\n  " + "\n  ".join(problems))


@dataclass
class MergeConfig:
    """`data_tools merge`: parts packed with --part 1/N ... N/N -> one dataset (one manifest over their shards)."""

    parts: list[Path] = field(metadata=cli(positional=True, metavar="PART_DIR"))
    """The N part directories written by `data_tools pack --part I/N`, in any order."""
    output: Path
    """Dataset directory to write: shards are hard-linked from the parts (copied across filesystems)."""
    allow_duplicates: bool = False
    """Merge even when a document is in more than one part (only parts not all made by `pack --part I/N` with one
    N can share one: a document's part is its content hash modulo N); every copy stays, the manifest counts them."""

    def __post_init__(self) -> None:
        self.parts = [Path(p) for p in self.parts]
        self.output = Path(self.output)
        problems = []
        seen: dict[Path, Path] = {}
        for p in self.parts:
            r = p.resolve()
            if r in seen:
                problems.append(f"{p}: given twice (as {seen[r]} too); pass each part directory once")
            seen.setdefault(r, p)
        if self.output.resolve() in seen:
            problems.append(f"--output {self.output}: is one of the parts; choose a new directory")
        if problems:
            raise ValueError("invalid merge options:\n  " + "\n  ".join(problems))


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


@dataclass
class NearDupsConfig:
    """`data_tools near-dups`: one pass over the whole input -> the near-duplicates for `pack --drop_list`."""

    reader: ReaderConfig
    """Where and how to read the corpus: the same as every part's pack."""
    output: Path
    """Drop list directory to write (drop_hashes.u64 and near_dups.json)."""
    quality: QualityFilters = field(default_factory=QualityFilters)
    """The parts' quality filters: documents they drop are not indexed."""
    normalize: bool = True
    """The parts' --normalize (CHAR_TABLE in data_tools/normalize.py)."""
    near_dedup_threshold: float = DEFAULT_THRESHOLD
    """The similarity at which a document is dropped (estimated Jaccard of character 5-gram MinHash)."""
    workers: int = 1
    """Signature processes; the list is byte-identical for any value."""
    chunk_docs: int = 64
    """Documents per pool task."""
    checkpoint_docs: int = 200_000
    """Save the resume state every this many documents read (a killed pass continues from the last one)."""
    executor: str = field(default="inline", metadata=cli(choices=("inline", "local", "slurm")))
    """inline: one process indexes every document (rensa; 2-3 KB of memory per kept document). local / slurm:
    datatrove's MinHash stages on its LocalPipelineExecutor (--workers processes) or as SLURM job arrays with their
    dependencies (sbatch), signatures and pairs on disk under OUTPUT/.datatrove (data_tools/dt_near_dups.py)."""
    tasks: int = 1
    """local / slurm: signature tasks, each reading every tasks-th input file."""
    slurm_partition: str | None = None
    """slurm: the partition the stages' job arrays go to (required with --executor slurm)."""
    slurm_time: str = "4:00:00"
    """slurm: each array task's time limit."""
    slurm_mem_gb: int = 2
    """slurm: memory per task, in GB."""

    def __post_init__(self) -> None:
        self.output = Path(self.output)
        problems = (self.quality.problems() + check_threshold(self.near_dedup_threshold)
                    + at_least_one(workers=self.workers, chunk_docs=self.chunk_docs,
                                   checkpoint_docs=self.checkpoint_docs, tasks=self.tasks))
        if self.executor == "slurm" and not self.slurm_partition:
            problems.append("--executor slurm needs --slurm_partition NAME (the partition the job arrays go to)")
        if self.executor == "inline" and self.tasks != 1:
            problems.append(f"--tasks {self.tasks}: the inline pass is one process; use --executor local or slurm")
        if problems:
            raise ValueError("invalid near-dups options:\n  " + "\n  ".join(problems))

    def document_options(self) -> dict:
        """As PackConfig.document_options: what a pack's --drop_list is checked against."""
        return {**self.reader.options(), "normalize": self.normalize,
                "quality": self.quality.settings() if self.quality.active else None}
