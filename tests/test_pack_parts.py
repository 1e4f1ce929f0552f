"""Packing on several machines: `data_tools pack --part I/N` and `data_tools merge`, through the real CLI,
against a single pack of the same input (the test corpus of conftest.py, with duplicates and empty documents)."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from data_tools import pack_state
from data_tools.cli import main
from data_tools.shard_check import raw_samples
from roberta_ds.shard_format import decode_sample, read_manifest

pytestmark = pytest.mark.slow  # packs several parts and merges them: the whole suite runs these

ARGS = ("--max_seq_length", "128", "--val_fraction", "0.1", "--shard_size_mb", "0.07", "--wwm")
"""Several shards per part and split, so a part's last shard (the padded one) is not its only one."""


def pack(src: Path, out: Path, vocab: Path, *extra: str) -> int:
    return main(["pack", "--format", "jsonl", "--input", str(src), "--output", str(out), "--tokenizer_path", str(vocab),
                 *ARGS, *extra])


def merge(*args: Path | str) -> int:
    return main(["merge", *map(str, args)])


@dataclass
class Packs:
    src: Path
    whole: Path
    parts: list[Path]
    merged: Path


@pytest.fixture(scope="module")
def packs(zh_docs, vocab_dir, tmp_path_factory) -> Packs:
    root = tmp_path_factory.mktemp("parts")
    src = root / "corpus.jsonl"
    docs = zh_docs + zh_docs[:30] + ["", "   "]  # 30 exact duplicates, 2 documents empty after normalisation
    src.write_text("".join(json.dumps({"text": d}, ensure_ascii=False) + "\n" for d in docs), encoding="utf-8")
    whole = root / "whole"
    assert pack(src, whole, vocab_dir) == 0
    parts = [root / f"part{i}" for i in (1, 2, 3)]
    for i, p in enumerate(parts, 1):
        assert pack(src, p, vocab_dir, "--part", f"{i}/3") == 0
    merged = root / "merged"
    assert merge(parts[2], parts[0], parts[1], "--output", merged) == 0  # any order
    return Packs(src, whole, parts, merged)


def all_hashes(root: Path) -> dict[str, np.ndarray]:
    m = read_manifest(root)
    return {s: np.load(root / i.document_hashes) for s, i in m.splits.items() if i.document_hashes}


def test_parts_split_the_input_by_content_hash(packs: Packs) -> None:
    whole = read_manifest(packs.whole).corpus
    assert whole["documents_read"] == 432 and whole["duplicates_dropped"] == 30 and whole["documents_empty"] == 2
    kept = {}
    for i, p in enumerate(packs.parts, 1):
        m = read_manifest(p)
        c = m.corpus
        assert m.source["part"] == {"index": i, "of": 3} and m.source["options"]["part"] == f"{i}/3"
        assert c["documents_read"] == 432  # every part reads the whole input
        assert c["documents_kept"] + c["documents_empty"] + c["duplicates_dropped"] + c["documents_other_parts"] == 432
        for split, h in all_hashes(p).items():
            assert (h % 3 == i - 1).all()
            kept.setdefault(split, []).append(h)
    # duplicates land in one part, so the parts' drops add up to the single pack's (empty ones: all in part 1)
    corpora = [read_manifest(p).corpus for p in packs.parts]
    assert [c["documents_empty"] for c in corpora] == [2, 0, 0]
    assert sum(c["duplicates_dropped"] for c in corpora) == 30
    for split, h in all_hashes(packs.whole).items():  # and the train/validation split is the single pack's
        assert sorted(np.concatenate(kept[split]).tolist()) == sorted(h.tolist())


def test_merge_equals_the_single_pack(packs: Packs, capsys) -> None:
    w, m = read_manifest(packs.whole), read_manifest(packs.merged)
    assert m.source["tool"] == "data_tools merge" and [p["index"] for p in m.source["parts"]] == [1, 2, 3]
    assert m.source["input"] == w.source["input"]
    for split in ("train", "validation"):
        ws, ms = w.splits[split], m.splits[split]
        assert ms.documents == ws.documents
        # each part's packer starts its own sequences: up to 2 more [CLS] than one pack, the rest is the same
        assert 0 <= ms.sequences - ws.sequences <= 2
        assert ms.tokens - ms.sequences == ws.tokens - ws.sequences  # non-padding tokens but [CLS]
        assert sorted(np.load(packs.merged / ms.document_hashes).tolist()) == \
            sorted(np.load(packs.whole / ws.document_hashes).tolist())
        cw, cm = np.load(packs.whole / ws.token_counts), np.load(packs.merged / ms.token_counts)
        tok = m.tokenizer
        assert cm[tok.cls_id] - cw[tok.cls_id] == ms.sequences - ws.sequences
        assert cm[tok.pad_id] == ms.padding_tokens and cw[tok.pad_id] == ws.padding_tokens
        keep = np.ones(len(cw), bool)
        keep[[tok.pad_id, tok.cls_id]] = False
        assert (cm[keep] == cw[keep]).all()
    for k in ("documents_read", "documents_kept", "documents_empty", "duplicates_dropped", "document_tokens",
              "unk_tokens", "files_read", "encodings"):
        assert m.corpus[k] == w.corpus[k], k
    assert m.corpus["normalization"]["replacements"] == w.corpus["normalization"]["replacements"]
    assert m.corpus["duplicates_across_parts"] == 0
    assert m.unigram_nats == pytest.approx(w.unigram_nats, rel=1e-12)

    # shards: SPLIT/partI-shard-NNNNN.tar, hard links to the parts' own
    for split, info in m.splits.items():
        for sh in info.shards:
            part, _, base = Path(sh.name).name.partition("-")
            assert sh.name.startswith(f"{split}/part") and part[4:] in "123"
            src = packs.parts[int(part[4:]) - 1] / split / base
            assert (packs.merged / sh.name).stat().st_ino == src.stat().st_ino
    # padding: only in the last sequence of each part's last shard of a split
    padded = [sh.name for info in m.splits.values() for sh in info.shards if sh.padding_tokens]
    lasts = {f"{s}/part{i}-{Path(read_manifest(p).splits[s].shards[-1].name).name}"
             for i, p in enumerate(packs.parts, 1) for s in m.splits}
    assert padded and set(padded) <= lasts
    for info in m.splits.values():
        for sh in info.shards:
            ids = np.concatenate([decode_sample(s, m.max_seq_length)[0] for s in raw_samples(packs.merged / sh.name)])
            pad_rows = np.flatnonzero((ids == m.tokenizer.pad_id).any(axis=1)).tolist()
            assert pad_rows == ([len(ids) - 1] if sh.padding_tokens else [])

    capsys.readouterr()
    assert main(["verify", str(packs.merged)]) == 0
    assert main(["inspect", str(packs.merged)]) == 0
    assert "data_tools merge: jsonl -> max_seq_length 128" in capsys.readouterr().err


@pytest.mark.parametrize("part, message", [
    ("4/3", "--part 4/3: I must be between 1 and N (1..3)"),
    ("0/3", "--part 0/3: I must be between 1 and N (1..3): parts count from 1"),
    ("1/0", "--part 1/0: N must be >= 1"),
    ("2", "--part '2': must be I/N with whole numbers"),
    ("a/b", "--part 'a/b': must be I/N with whole numbers"),
])
def test_bad_part_is_refused_before_reading(part, message, vocab_dir, tmp_path, capsys) -> None:
    assert pack(tmp_path / "absent.jsonl", tmp_path / "out", vocab_dir, "--part", part) == 2
    assert message in " ".join(capsys.readouterr().err.split())
    assert not (tmp_path / "out").exists()


def test_a_killed_part_resumes_like_any_pack(packs: Packs, vocab_dir, tmp_path, capsys) -> None:
    save, written = pack_state.Checkpoints.save, []

    class Killed(RuntimeError):
        pass

    def save_then_kill(self, *a, **k):
        save(self, *a, **k)
        written.append(1)
        raise Killed

    out = tmp_path / "part2"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pack_state.Checkpoints, "save", save_then_kill)
        with pytest.raises(Killed):
            pack(packs.src, out, vocab_dir, "--part", "2/3")
    assert written and pack_state.load_state(out) is not None
    capsys.readouterr()
    assert pack(packs.src, out, vocab_dir, "--part", "1/3") == 2  # another part into the same directory
    assert "--part: '2/3' before, '1/3' now" in " ".join(capsys.readouterr().err.split())
    assert pack(packs.src, out, vocab_dir, "--part", "2/3") == 0
    assert "resuming" in capsys.readouterr().err
    got, want = (read_manifest(d).to_dict() for d in (out, packs.parts[1]))
    assert got["source"].pop("created") and want["source"].pop("created")
    assert got == want


def test_merge_refuses_bad_parts_naming_them(packs: Packs, vocab_dir, zh_docs, tmp_path, capsys) -> None:
    p1, p2, p3 = packs.parts

    def refused(*args) -> str:
        capsys.readouterr()
        out = tmp_path / "out"
        assert merge(*args, "--output", out) == 2
        assert not (out / "manifest.json").exists()
        return " ".join(capsys.readouterr().err.split())

    assert "part(s) 3/3 missing (given: 1/3, 2/3)" in refused(p1, p2)
    assert f"{p2}: given twice" in refused(p1, p2, p2, p3)
    assert f"{packs.whole}: packed without --part" in refused(p1, p2, packs.whole)
    assert f"{tmp_path / 'nothing'}: it does not exist" in refused(p1, p2, tmp_path / "nothing")
    assert f"{packs.merged}: a merged dataset" in refused(p1, p2, packs.merged)

    half = tmp_path / "half1"
    assert pack(packs.src, half, vocab_dir, "--part", "1/2") == 0
    assert f"parts of different N (N=2: {half} (part 1/2); N=3: {p1} (part 1/3), {p2} (part 2/3))" in \
        refused(p1, p2, half)

    # another tokenizer (and another --max_seq_length) for part 3
    vsrc = tmp_path / "v.jsonl"
    vsrc.write_text("".join(json.dumps({"text": d}, ensure_ascii=False) + "\n" for d in zh_docs[:100]), encoding="utf-8")
    vocab2 = tmp_path / "vocab2"
    assert main(["build-vocab", "--format", "jsonl", "--input", str(vsrc), "--output", str(vocab2),
                 "--vocab_size", "2000"]) == 0
    other = tmp_path / "other3"
    assert pack(packs.src, other, vocab2, "--part", "3/3", "--max_seq_length", "64") == 0
    err = refused(p1, p2, other)
    assert f"{other} (part 3/3) has another tokenizer than {p1} (part 1/3): vocab_size" in err and "vocab_sha256" in err
    assert "max_seq_length 128 vs 64" in err and "Pack every part with the same --tokenizer_path" in err

    # a damaged shard in a part: named, nothing written
    damaged = tmp_path / "damaged2"
    shutil.copytree(p2, damaged)
    shard = damaged / "train" / "shard-00001.tar"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    err = refused(p1, damaged, p3)
    assert f"{damaged}/train/shard-00001.tar: sha256" in err and "nothing written" in err
    assert not (tmp_path / "out").exists()

    # A document in two parts cannot come from `pack --part` with one N (its part is its hash modulo N):
    # simulate a part made otherwise by giving part 2 a document hash of part 1.
    dup = tmp_path / "dup2"
    shutil.copytree(p2, dup)
    h2, h1 = np.load(dup / "train/documents.npy"), np.load(p1 / "train/documents.npy")
    h2[0] = h1[0]
    np.save(dup / "train/documents.npy", h2)
    err = refused(p1, dup, p3)
    assert "1 document(s) are in more than one part (part 1/3: 1, part 2/3: 1)" in err
    assert "pass --allow_duplicates to merge anyway" in err
    assert merge(p1, dup, p3, "--output", tmp_path / "dup_merged", "--allow_duplicates") == 0
    assert read_manifest(tmp_path / "dup_merged").corpus["duplicates_across_parts"] == 1

    # an existing dataset is never overwritten
    capsys.readouterr()
    assert merge(p1, p2, p3, "--output", packs.merged) == 2
    assert f"{packs.merged} already holds a finished dataset" in " ".join(capsys.readouterr().err.split())


def test_the_loader_reads_a_merged_dataset_whole(packs: Packs) -> None:
    # Each part's last shard ends in a padded sequence: the loader must skip exactly those all-padding pieces.
    from roberta_ds.reading.data import ShardStream

    m = read_manifest(packs.merged)
    assert sum(1 for s in m.splits["train"].shards if s.padding_tokens) == 3
    for seq_len in (128, 48):
        stream = ShardStream(packs.merged, m, "train", seq_len, seed=1, shuffle=True, shuffle_buffer=300)
        pieces = list(stream.epoch(0))
        assert len(pieces) == len(stream) and len({key for key, _, _ in pieces}) == len(pieces)
        real = sum(int((ids != m.tokenizer.pad_id).sum()) for _, ids, _ in pieces)
        assert real == m.splits["train"].tokens, seq_len
