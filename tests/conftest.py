"""Shared fixtures: a tiny real Chinese corpus, a vocab built from it, and shards packed from it,
all through the real data_tools CLI (no network, no ../shared)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

from data_tools.cli import main as data_tools_main
from data_tools.readers import clean_inews, inews_pickles

ZH_DOCS = 400


def load_zh_docs(n: int = ZH_DOCS) -> list[str]:
    """The first n distinct non-empty inews training articles, title + content, cleaned."""
    with inews_pickles()[0].open("rb") as fh:
        titles, contents, _ = pickle.load(fh)
    docs, seen = [], set()
    for title, content in zip(titles, contents):
        doc = (clean_inews(title).strip() + "\n" + clean_inews(content).strip()).strip()
        if doc and doc not in seen:
            seen.add(doc)
            docs.append(doc)
        if len(docs) == n:
            break
    return docs


def pack_corpus(docs: list[str], out: Path, vocab: Path, *extra_args: str) -> Path:
    """Write docs as JSONL next to ``out`` and pack them through the real CLI; returns ``out``."""
    out = Path(out)
    src = out.parent / f"{out.name}.jsonl"
    src.parent.mkdir(parents=True, exist_ok=True)
    with src.open("w", encoding="utf-8") as fh:
        for d in docs:
            fh.write(json.dumps({"text": d}, ensure_ascii=False) + "\n")
    rc = data_tools_main(
        ["pack", "--format", "jsonl", "--input", str(src), "--output", str(out), "--tokenizer_path", str(vocab), *extra_args]
    )
    assert rc == 0, f"data_tools pack failed with exit code {rc}"
    return out


@pytest.fixture(scope="session")
def zh_docs() -> list[str]:
    return load_zh_docs()


@pytest.fixture(scope="session")
def vocab_dir(zh_docs: list[str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("vocab")
    src = root / "corpus.jsonl"
    src.write_text("".join(json.dumps({"text": d}, ensure_ascii=False) + "\n" for d in zh_docs), encoding="utf-8")
    out = root / "tokenizer"
    rc = data_tools_main(
        ["build-vocab", "--format", "jsonl", "--input", str(src), "--output", str(out), "--vocab_size", "4000"]
    )
    assert rc == 0
    return out


@pytest.fixture(scope="session")
def shard_dir(zh_docs: list[str], vocab_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("shards")
    return pack_corpus(
        zh_docs, root / "data", vocab_dir, "--max_seq_length", "128", "--val_fraction", "0.1", "--wwm"
    )


REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def tiny_run(shard_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One finished tiny run on shard_dir (metrics.jsonl, summary.json, checkpoints/, final_model/)."""
    from pretrain_helpers import train_tiny

    return train_tiny(shard_dir, tmp_path_factory.mktemp("tiny_run") / "run")


@pytest.fixture(scope="session")
def other_shards(zh_docs: list[str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same documents packed with a different (smaller) vocab: for mismatch tests."""
    root = tmp_path_factory.mktemp("other")
    src = root / "corpus.jsonl"
    src.write_text("".join(json.dumps({"text": d}, ensure_ascii=False) + "\n" for d in zh_docs[:150]), encoding="utf-8")
    vocab = root / "tokenizer"
    assert data_tools_main(["build-vocab", "--format", "jsonl", "--input", str(src), "--output", str(vocab),
                            "--vocab_size", "2500"]) == 0
    return pack_corpus(zh_docs[:150], root / "data", vocab, "--max_seq_length", "128", "--val_fraction", "0.1")
