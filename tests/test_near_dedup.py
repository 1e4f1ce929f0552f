"""Near-duplicate removal (issue 21): planted near-duplicates are dropped, unique documents kept, counted in the
manifest with examples; the drop list of `data_tools near-dups` makes `pack --part I/N` drop what one inline pack
drops; a killed pack resumes with its index; bad combinations are refused with the fix."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, pack_corpus
from data_tools.cli import main
from data_tools.normalize import normalize
from data_tools.tokenize_worker import doc_hash
from roberta_ds.shard_format import read_manifest

sys.path.insert(0, str(REPO / "bench"))
from synthetic_crawl import recombined, sentences, with_planted  # noqa: E402

ARGS = ("--max_seq_length", "128", "--val_fraction", "0.2", "--shard_size_mb", "0.07")


@pytest.fixture(scope="module")
def crawl(zh_docs) -> tuple[list[str], list[int]]:
    """300 recombined documents and 30 planted near-copies of them (5 characters changed, a footer added)."""
    docs = recombined(sentences(zh_docs), 300, seed=3)
    return with_planted(docs, 30, seed=4)


def kept_hashes(root: Path) -> set[int]:
    m = read_manifest(root)
    return {int(h) for s in m.splits for h in (np.load(root / s / "documents.npy") if (root / s / "documents.npy").exists()
                                                else [])}


def hashes(docs: list[str]) -> list[int]:
    return [doc_hash(normalize(d)[0]) for d in docs]


def test_planted_near_duplicates_are_dropped_and_unique_documents_kept(crawl, vocab_dir, tmp_path):
    docs, planted = crawl
    out = pack_corpus(docs, tmp_path / "near", vocab_dir, *ARGS, "--near_dedup")
    kept = kept_hashes(out)
    hs = hashes(docs)
    planted_set = set(planted)
    planted_dropped = sum(hs[i] not in kept for i in planted)
    unique_dropped = sum(h not in kept for i, h in enumerate(hs) if i not in planted_set)
    assert planted_dropped >= 0.9 * len(planted), f"{planted_dropped} of {len(planted)} planted near-duplicates dropped"
    assert unique_dropped <= 0.01 * (len(docs) - len(planted)), f"{unique_dropped} unique documents dropped"
    corpus = read_manifest(out).corpus
    nd = corpus["near_dedup"]
    assert nd["dropped"] == planted_dropped + unique_dropped == len(docs) - corpus["documents_kept"]
    assert nd["threshold"] == 0.7 and nd["source"] == "inline (--near_dedup)" and len(nd["examples"]) == 3
    first = nd["examples"][0]
    assert first["document"] in planted_set and hs[first["near_duplicate_of_document"]] in kept
    assert first["text"] == " ".join(docs[first["document"]].split())[:80]

    # Without --near_dedup every planted copy is packed: the exact dedup alone does not see them.
    plain = pack_corpus(docs, tmp_path / "plain", vocab_dir, *ARGS)
    assert read_manifest(plain).corpus["documents_kept"] == len(docs)
    assert "near_dedup" not in read_manifest(plain).corpus


@pytest.mark.slow  # near-dups with 2 worker processes
def test_a_drop_list_makes_parts_drop_what_one_pack_drops(crawl, vocab_dir, tmp_path):
    docs, _ = crawl
    inline = pack_corpus(docs, tmp_path / "inline", vocab_dir, *ARGS, "--near_dedup", "--min_chars", "200")
    src = tmp_path / "inline.jsonl"
    drop = tmp_path / "drop"
    assert main(["near-dups", "--format", "jsonl", "--input", str(src), "--output", str(drop), "--min_chars", "200",
                 "--workers", "2"]) == 0
    info = json.loads((drop / "near_dups.json").read_text())
    parts = []
    for i in (1, 2):
        part = tmp_path / f"part{i}"
        assert main(["pack", "--format", "jsonl", "--input", str(src), "--output", str(part), "--tokenizer_path",
                     str(vocab_dir), *ARGS, "--min_chars", "200", "--part", f"{i}/2", "--drop_list", str(drop)]) == 0
        parts.append(part)
    assert kept_hashes(parts[0]) | kept_hashes(parts[1]) == kept_hashes(inline)
    m_inline = read_manifest(inline).corpus
    dropped = [read_manifest(p).corpus["near_dedup"]["dropped"] for p in parts]
    assert sum(dropped) == m_inline["near_dedup"]["dropped"] == info["drops"] > 0
    assert info["left_out"]["quality filters"] == m_inline["quality_filters"]["dropped"]["too short"]

    merged = tmp_path / "merged"
    assert main(["merge", str(parts[0]), str(parts[1]), "--output", str(merged)]) == 0
    assert read_manifest(merged).corpus["near_dedup"]["dropped"] == sum(dropped)

    # a drop list computed over other documents than the pack reads is refused, naming the option
    with pytest.raises(ValueError, match="--drop_list .* other documents than this pack reads .*--quality"):
        from data_tools.config import PackConfig
        from data_tools.pack_job import run_pack
        from data_tools.readers import ReaderConfig

        run_pack(PackConfig(ReaderConfig("jsonl", src), tmp_path / "wrong", str(vocab_dir), drop_list=drop))


def test_a_killed_near_dedup_pack_resumes_to_the_same_bytes(crawl, vocab_dir, tmp_path):
    from test_data_tools import SimulatedKill, killed_after_checkpoints

    docs, _ = crawl
    straight = pack_corpus(docs, tmp_path / "straight", vocab_dir, *ARGS, "--near_dedup")
    with killed_after_checkpoints(2), pytest.raises(SimulatedKill):
        pack_corpus(docs, tmp_path / "resumed", vocab_dir, *ARGS, "--near_dedup")
    assert (tmp_path / "resumed" / ".pack_state" / "near-minhashes.bin").stat().st_size > 0
    resumed = pack_corpus(docs, tmp_path / "resumed", vocab_dir, *ARGS, "--near_dedup")
    a, b = read_manifest(straight), read_manifest(resumed)
    assert [s.sha256 for s in a.splits["train"].shards] == [s.sha256 for s in b.splits["train"].shards]
    assert a.corpus["near_dedup"] == b.corpus["near_dedup"]
    assert kept_hashes(straight) == kept_hashes(resumed)


def test_a_killed_near_dups_pass_resumes_to_the_same_list(crawl, tmp_path, monkeypatch, capsys):
    from data_tools import near_dups_job

    docs, _ = crawl
    src = tmp_path / "crawl.jsonl"
    src.write_text("".join(json.dumps({"text": d}, ensure_ascii=False) + "\n" for d in docs), encoding="utf-8")
    args = ["near-dups", "--format", "jsonl", "--input", str(src), "--checkpoint_docs", "100"]
    assert main([*args, "--output", str(tmp_path / "straight")]) == 0

    class Killed(RuntimeError):
        pass

    real_save = near_dups_job._State.save

    def dies_after(n: int):
        calls = []

        def save(self, *a):
            real_save(self, *a)
            calls.append(1)
            if len(calls) == n:
                raise Killed  # right after the n-th checkpoint, as a kill there would leave it
        return save

    with monkeypatch.context() as m:
        m.setattr(near_dups_job._State, "save", dies_after(2))
        with pytest.raises(Killed):
            main([*args, "--output", str(tmp_path / "resumed")])
    state = json.loads((tmp_path / "resumed" / ".near_dups_state" / "state.json").read_text())
    assert state["consumed"] == 256 and not (tmp_path / "resumed" / "near_dups.json").exists()
    assert main([*args, "--output", str(tmp_path / "resumed")]) == 0
    a, b = (json.loads((tmp_path / d / "near_dups.json").read_text()) for d in ("straight", "resumed"))
    for key in ("documents_read", "documents_indexed", "documents_dropped", "drops", "left_out", "examples"):
        assert a[key] == b[key], key
    assert (tmp_path / "straight" / "drop_hashes.u64").read_bytes() == (tmp_path / "resumed" / "drop_hashes.u64").read_bytes()
    assert a["drops"] > 0 and not (tmp_path / "resumed" / ".near_dups_state").exists()
    # another threshold is another pass: refused while the first one is unfinished
    with monkeypatch.context() as m:
        m.setattr(near_dups_job._State, "save", dies_after(1))
        with pytest.raises(Killed):
            main([*args, "--output", str(tmp_path / "other")])
    assert main([*args, "--output", str(tmp_path / "other"), "--near_dedup_threshold", "0.8"]) == 2
    assert "holds an unfinished near-dups pass made with other options (near_dedup_threshold: 0.7 before, 0.8 now)" \
        in capsys.readouterr().err


def test_near_dedup_flags_are_checked(tmp_path, capsys):
    base = ["pack", "--format", "inews", "--output", str(tmp_path / "o"), "--tokenizer_path", "x"]
    assert main([*base, "--near_dedup", "--part", "1/2"]) == 2
    err = capsys.readouterr().err
    assert "--near_dedup with --part" in err and "data_tools near-dups" in err and "--drop_list" in err
    assert main([*base, "--near_dedup", "--near_dedup_threshold", "1.5"]) == 2
    assert "--near_dedup_threshold 1.5: an estimated Jaccard similarity in (0, 1)" in capsys.readouterr().err
    assert main([*base, "--drop_list", str(tmp_path)]) == 2
    assert f"--drop_list {tmp_path}: not a drop list" in capsys.readouterr().err
