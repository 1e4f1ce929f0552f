"""data_tools through the real CLI on tiny real Chinese corpora (see conftest.py)."""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import webdataset as wds

from conftest import pack_corpus
from data_tools import pack_state
from data_tools.cli import main
from data_tools.normalize import CHAR_TABLE, normalize
from data_tools.readers import ReaderConfig, ReadStats, read_documents
from data_tools.tokenize_worker import doc_hash, word_start_flags
from roberta_ds.shard_format import decode_sample, read_manifest
from roberta_ds.tokenizer import load_tokenizer

STANDARD_VOCAB = Path(__file__).resolve().parent / "data" / "chinese-bert-vocab.txt"
"""The standard Chinese BERT vocab (vocab.txt of google-research/bert's Chinese model, 21,128 ids; Apache-2.0), the
one hfl's checkpoints use."""


class SimulatedKill(RuntimeError):
    """The pack stopped as if killed right after a checkpoint (see killed_after_checkpoints)."""


@contextmanager
def killed_after_checkpoints(n: int):
    """Packs inside this block raise SimulatedKill right after their n-th checkpoint is written."""
    save = pack_state.Checkpoints.save
    written = 0

    def save_then_kill(self, *args, **kwargs):
        nonlocal written
        save(self, *args, **kwargs)
        written += 1
        if written >= n:
            raise SimulatedKill(f"stopped after {written} checkpoints")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pack_state.Checkpoints, "save", save_then_kill)
        yield


def read_split(root: Path, split: str) -> tuple[np.ndarray, np.ndarray | None]:
    """All sequences of a split via a plain webdataset pipeline: ids [N, L], word starts [N, L] | None."""
    m = read_manifest(root)
    urls = [str(p) for p in m.shard_paths(root, split)]
    ids, ws = [], []
    for sample in wds.WebDataset(urls, shardshuffle=False).decode():
        ids.append(sample["input_ids.npy"])
        if "word_starts.npy" in sample:
            ws.append(np.unpackbits(sample["word_starts.npy"], axis=1, count=m.max_seq_length).astype(bool))
    return np.concatenate(ids), (np.concatenate(ws) if ws else None)


def unpack(root: Path, split: str) -> tuple[list[list[int]], list[list[bool]] | None]:
    """Strip [CLS], drop [PAD], split on [SEP] -> per-document token ids (and flags)."""
    m = read_manifest(root)
    ids, ws = read_split(root, split)
    assert (ids[:, 0] == m.tokenizer.cls_id).all()
    stream = ids[:, 1:].reshape(-1)
    keep = stream != m.tokenizer.pad_id
    assert keep[: keep.sum()].all(), "padding only at the very end of a split"
    stream = stream[keep]
    cuts = np.flatnonzero(stream == m.tokenizer.sep_id)
    assert cuts[-1] == len(stream) - 1, "a [SEP] after every document"
    docs = [d.tolist() for d in np.split(stream, cuts + 1)[:-1]]
    docs = [d[:-1] for d in docs]
    flags = None
    if ws is not None:
        fstream = ws[:, 1:].reshape(-1)[keep]
        flags = [f[:-1].tolist() for f in np.split(fstream, cuts + 1)[:-1]]
    return docs, flags


def expected_docs(docs: list[str], tok, val_fraction: float) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {"train": [], "validation": []}
    seen = set()
    for d in docs:
        text, _ = normalize(d)
        h = doc_hash(text)
        if not text or h in seen:
            continue
        seen.add(h)
        out["validation" if h < int(val_fraction * 2.0**64) else "train"].append(text)
    return out


def test_round_trip_and_wwm(shard_dir: Path, zh_docs: list[str], vocab_dir: Path) -> None:
    tok = load_tokenizer(shard_dir / "tokenizer")
    m = read_manifest(shard_dir)
    assert m.wwm and m.max_seq_length == 128
    want = expected_docs(zh_docs, tok, 0.1)
    assert sum(len(v) for v in want.values()) == len(zh_docs)
    for split in ("train", "validation"):
        got, flags = unpack(shard_dir, split)
        texts = want[split]
        assert len(got) == len(texts) == m.splits[split].documents
        for g, text in zip(got, texts):
            assert g == tok(text, add_special_tokens=False)["input_ids"]
        hashes = np.load(shard_dir / m.splits[split].document_hashes)
        assert hashes.tolist() == [doc_hash(t) for t in texts]
        # WWM: flags equal jieba word starts mapped through the offsets, '##' pieces never start a word
        for f, text in list(zip(flags, texts))[:20]:
            enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
            toks = tok.convert_ids_to_tokens(enc["input_ids"])
            assert f == word_start_flags(text, toks, enc["offset_mapping"]).tolist()
            assert not any(fl for fl, t in zip(f, toks) if t.startswith("##"))
    assert m.splits["train"].sequences >= 200 and m.splits["validation"].sequences >= 20


def test_word_start_flags_follow_jieba() -> None:
    import jieba

    text = "我爱北京天安门"
    words = jieba.lcut(text)  # ['我', '爱', '北京', '天安门']
    toks = list(text)
    flags = word_start_flags(text, toks, [(i, i + 1) for i in range(len(text))])
    starts = np.cumsum([0] + [len(w) for w in words[:-1]])
    assert flags.tolist() == [i in set(starts.tolist()) for i in range(len(text))]
    assert flags.tolist()[2:4] == [True, False]


def test_manifest_and_disk_cost(shard_dir: Path) -> None:
    m = read_manifest(shard_dir)
    c = m.corpus
    assert c["documents_read"] == 400 and c["truncated_documents"] == 0
    assert c["unk_rate"] < 0.001
    total = sum(s.tokens + s.padding_tokens for s in m.splits.values())
    disk = sum(sh.bytes for s in m.splits.values() for sh in s.shards)
    assert disk / total <= 2.25  # wwm flags add 1/8 byte per token
    assert m.splits["train"].padding_tokens < m.max_seq_length
    assert m.source["options"]["wwm"] is True and m.source["roberta_ds_version"]


def test_plain_webdataset_reads(shard_dir: Path) -> None:
    m = read_manifest(shard_dir)
    ids, ws = read_split(shard_dir, "validation")
    assert ids.shape == (m.splits["validation"].sequences, 128) and ids.dtype == np.uint16
    assert ws is not None and ws.shape == ids.shape


@pytest.mark.slow
def test_workers_and_resume_give_identical_output(zh_docs, vocab_dir, tmp_path) -> None:
    docs = zh_docs[:150]
    args = ("--max_seq_length", "128", "--val_fraction", "0.2", "--shard_size_mb", "0.07", "--wwm")
    a = pack_corpus(docs, tmp_path / "w1", vocab_dir, *args, "--workers", "1")
    b = pack_corpus(docs, tmp_path / "w2", vocab_dir, *args, "--workers", "2")
    ma, mb = read_manifest(a), read_manifest(b)
    assert len(ma.splits["train"].shards) >= 3
    assert [s.sha256 for s in ma.splits["train"].shards] == [s.sha256 for s in mb.splits["train"].shards]
    assert [s.sha256 for s in ma.splits["validation"].shards] == [s.sha256 for s in mb.splits["validation"].shards]

    # killed after the second checkpoint, then the same command finishes the job
    with killed_after_checkpoints(2), pytest.raises(SimulatedKill):
        pack_corpus(docs, tmp_path / "r", vocab_dir, *args)
    assert not (tmp_path / "r" / "manifest.json").exists()
    assert main(["pack", "--format", "jsonl", "--input", str(tmp_path / "r.jsonl"), "--output", str(tmp_path / "r"),
                 "--tokenizer_path", str(vocab_dir), "--max_seq_length", "256", *args[2:]]) == 2
    r = pack_corpus(docs, tmp_path / "r", vocab_dir, *args)
    da, dr = ma.to_dict(), read_manifest(r).to_dict()
    for d in (da, dr):
        d["source"].pop("created")
        d["source"]["options"].pop("input")
        d["source"].pop("input")
        d["tokenizer"].pop("name")
    assert da == dr
    for split in ("train", "validation"):
        assert (a / split / "documents.npy").read_bytes() == (r / split / "documents.npy").read_bytes()
    assert not (r / ".pack_state").exists()


def test_resume_with_other_options_names_them(zh_docs, vocab_dir, tmp_path, capsys) -> None:
    args = ("--max_seq_length", "128", "--shard_size_mb", "0.07")
    with killed_after_checkpoints(1), pytest.raises(SimulatedKill):
        pack_corpus(zh_docs[:60], tmp_path / "r", vocab_dir, *args)
    rc = main(["pack", "--format", "jsonl", "--input", str(tmp_path / "r.jsonl"), "--output", str(tmp_path / "r"),
               "--tokenizer_path", str(vocab_dir), "--max_seq_length", "64", "--shard_size_mb", "0.07"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "--max_seq_length: 128 before, 64 now" in err


def test_verify_detects_corruption(shard_dir: Path, tmp_path: Path, capsys) -> None:
    d = tmp_path / "copy"
    shutil.copytree(shard_dir, d)
    assert main(["verify", str(d)]) == 0
    shard = d / read_manifest(d).splits["train"].shards[0].name
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    capsys.readouterr()
    assert main(["verify", str(d)]) == 1
    assert "train/shard-00000.tar" in capsys.readouterr().err


def test_inspect_shows_the_first_sequence_of_the_first_sample(shard_dir: Path, capsys) -> None:
    m = read_manifest(shard_dir)
    tok = load_tokenizer(shard_dir / "tokenizer")
    url = str(m.shard_paths(shard_dir, "train")[0])
    samples = list(wds.WebDataset(url, shardshuffle=False))  # raw, as training reads them
    assert len(samples) > 1
    first, last = (tok.decode(decode_sample(s, m.max_seq_length)[0][0].tolist())[:300] for s in (samples[0], samples[-1]))
    squash = "".join  # rich wraps long lines: compare without whitespace
    assert squash(first.split()) != squash(last.split())
    assert main(["inspect", str(shard_dir)]) == 0
    err = capsys.readouterr().err
    assert "train/shard-00000.tar, sample 0 (train_00000_000000), sequence 0" in err
    assert squash(first.split()) in squash(err.split())
    assert "jieba word starts" in err


def test_build_vocab_loads(vocab_dir: Path, zh_docs: list[str]) -> None:
    tok = load_tokenizer(vocab_dir)
    assert len(tok) == 4000
    assert (vocab_dir / "tokenizer.json").exists() and (vocab_dir / "vocab.txt").exists()
    assert tok.convert_tokens_to_ids("[PAD]") == 0
    for special in ("[UNK]", "[CLS]", "[SEP]", "[MASK]"):
        assert special in tok.get_vocab()
    assert tok.tokenize("北京ABC") == ["北", "京", "abc"] or tok.tokenize("北京ABC")[:2] == ["北", "京"]


def test_normalisation_table() -> None:
    text, n = normalize("　　他说：“好……”——‘是’ ")
    assert text == "他说:\"好......\"--'是'".replace(":", "：") and n == 8
    assert normalize("“a”", table=False) == ("“a”", 0)


def test_normalisation_targets_are_in_the_standard_vocab() -> None:
    tok = load_tokenizer(STANDARD_VOCAB)
    assert len(tok) == 21128
    for src, dst in CHAR_TABLE.items():
        assert tok.convert_tokens_to_ids(src) == tok.unk_token_id
        assert tok.unk_token_id not in tok(dst, add_special_tokens=False)["input_ids"]


def test_inews_reader_cleans_literal_newlines() -> None:
    stats = ReadStats()
    docs = []
    for d in read_documents(ReaderConfig(format="inews"), stats):
        docs.append(d)
        if len(docs) == 300:
            break
    assert not any("\\n" in d.text or "\u3000" in d.text for d in docs)
    assert docs[0].text.startswith("周六晚到卖场听夜场摇滚\n")


def test_literal_special_token_text_is_ordinary_text(zh_docs, vocab_dir, tmp_path, capsys) -> None:
    # tokenizers matches "[SEP]" etc. in raw text even with add_special_tokens=False; in a corpus that
    # text must stay text, or it splits documents and is counted (and masked out) as padding.
    planted = ["今天[PAD]天气[MASK]好[SEP]", "[CLS]标题[SEP]正文[PAD][PAD]"]
    docs = planted + zh_docs[:20]
    out = pack_corpus(docs, tmp_path / "d", vocab_dir, "--max_seq_length", "64", "--val_fraction", "0")
    m = read_manifest(out)
    t = m.tokenizer
    got, _ = unpack(out, "train")
    assert len(got) == len(docs) == m.splits["train"].documents
    special = {t.pad_id, t.cls_id, t.sep_id, t.mask_id}
    for ids in got:
        assert not special & set(ids)
    tok = load_tokenizer(out / "tokenizer")
    assert "".join(tok.decode(got[0]).split()) == "今天[pad]天气[mask]好[sep]"  # lowercased, as all text
    capsys.readouterr()
    assert main(["verify", str(out)]) == 0, capsys.readouterr().err


def test_checkpoints_append_only_new_hashes(zh_docs, vocab_dir, tmp_path) -> None:
    # Each checkpoint appends the hashes added since the previous one (linear I/O, not a rewrite of
    # all of them); a tail left by a checkpoint killed before its state.json is ignored on resume.
    docs = zh_docs[:150]
    args = ("--max_seq_length", "128", "--val_fraction", "0.2", "--shard_size_mb", "0.07")
    with killed_after_checkpoints(1), pytest.raises(SimulatedKill):
        pack_corpus(docs, tmp_path / "r", vocab_dir, *args)
    sdir = tmp_path / "r" / pack_state.STATE_DIRNAME
    first = pack_state.load_state(tmp_path / "r")["splits"]["train"]
    hash_file = sdir / first["hashes"]
    assert hash_file.stat().st_size == 8 * first["hash_count"] > 0
    assert "hashes" not in pack_state.load_state_arrays(tmp_path / "r", first["arrays"])
    marker, real = b"\xab" * 8, hash_file.read_bytes()[:8]
    hash_file.write_bytes(marker + hash_file.read_bytes()[8:])  # survives only if never rewritten
    with killed_after_checkpoints(1), pytest.raises(SimulatedKill):  # one more checkpoint, then killed again
        pack_corpus(docs, tmp_path / "r", vocab_dir, *args)
    second = pack_state.load_state(tmp_path / "r")["splits"]["train"]
    assert second["hash_count"] > first["hash_count"]
    assert hash_file.read_bytes()[:8] == marker and hash_file.stat().st_size == 8 * second["hash_count"]
    # the real first hash back, plus the tail a checkpoint killed before its state.json leaves
    hash_file.write_bytes(real + hash_file.read_bytes()[8:] + b"\x01" * 24)
    r = pack_corpus(docs, tmp_path / "r", vocab_dir, *args)
    a = pack_corpus(docs, tmp_path / "a", vocab_dir, *args)
    for split in ("train", "validation"):
        assert (a / split / "documents.npy").read_bytes() == (r / split / "documents.npy").read_bytes()


def test_unigram_line_matches_the_shards(shard_dir: Path) -> None:
    """The manifest's unigram line equals the cross-entropy recomputed from the shards read back."""
    m = read_manifest(shard_dir)
    tok = m.tokenizer
    counts = {}
    for split in ("train", "validation"):
        ids, _ = read_split(shard_dir, split)
        counts[split] = np.bincount(ids.reshape(-1).astype(np.int64), minlength=tok.vocab_size)
        assert np.array_equal(np.load(shard_dir / m.splits[split].token_counts), counts[split])
    special = [tok.pad_id, tok.cls_id, tok.sep_id, tok.mask_id, tok.unk_id]
    ct, cv = (np.delete(counts[s], special).astype(float) for s in ("train", "validation"))
    p = (ct + 0.5) / (ct.sum() + 0.5 * len(ct))
    expected = -(cv * np.log(p)).sum() / cv.sum()
    assert m.unigram_nats == pytest.approx(expected, rel=1e-12)
    assert 3.0 < m.unigram_nats < np.log(tok.vocab_size)  # better than uniform, far from perfect


@pytest.mark.slow
def test_build_vocab_is_byte_identical_across_runs_and_thread_counts(zh_docs, tmp_path) -> None:
    """tokenizers' WordPiece trainer numbers its ##-tokens in hash-map order (huggingface/tokenizers#1794);
    build-vocab pins them, so the same corpus and options give the same bytes, whatever the thread count and
    --workers (each worker spools its own share of the text for the trainer)."""
    import json
    import os
    import subprocess
    import sys

    src = tmp_path / "corpus.jsonl"
    src.write_text("".join(json.dumps({"text": d}, ensure_ascii=False) + "\n" for d in zh_docs), encoding="utf-8")
    args = ["build-vocab", "--format", "jsonl", "--input", str(src), "--vocab_size", "3000"]
    outs = []
    for i, (threads, workers) in enumerate((("1", "1"), ("2", "1"), ("2", "2"))):
        out = tmp_path / f"v{i}"
        env = dict(os.environ, RAYON_NUM_THREADS=threads)
        proc = subprocess.run([sys.executable, "-m", "data_tools", *args, "--output", str(out), "--workers", workers],
                              env=env,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        outs.append(out)
    for name in ("vocab.txt", "tokenizer.json"):
        blobs = [(o / name).read_bytes() for o in outs]
        assert blobs[0] == blobs[1] == blobs[2], f"{name} differs between runs"
    vocab = (outs[0] / "vocab.txt").read_text(encoding="utf-8").splitlines()
    assert vocab[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] and len(set(vocab)) == len(vocab)
    assert any(v.startswith("##") for v in vocab) and sum(len(v) == 1 for v in vocab) > 1000


# ---- Killed packing (issue 10, item 7): a pack killed in any phase, re-run with the same command, gives
# the same bytes as an uninterrupted pack. The kills are real SIGKILLs of a `python -m data_tools pack`
# process, placed deterministically by KILL_DRIVER; every pack uses the same corpus file, vocab and flags.

KILL_ARGS = ("--max_seq_length", "128", "--val_fraction", "0.2", "--shard_size_mb", "0.07", "--wwm")
"""With the first 150 test documents: 4 train shards and 2 validation shards of one sample each, and a
checkpoint after each of the first 4 shards (validation/shard-00001.tar and train/shard-00003.tar are
written by the final flush); the reader yields the documents in chunks of 64 (--chunk_docs)."""

KILL_DRIVER = r'''
"""`python -c KILL_DRIVER POINT ARG PACK_ARGV...`: run data_tools with a SIGKILL placed at POINT."""
import os, pathlib, signal, sys

point, arg, argv = sys.argv[1], sys.argv[2], sys.argv[3:]


def die():
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


if point == "read":  # the reader is about to yield document number ARG (0-based)
    from data_tools import pack_job

    real_read = pack_job.read_documents

    def read_documents(cfg, stats):
        for i, doc in enumerate(real_read(cfg, stats)):
            if i == int(arg):
                die()
            yield doc

    pack_job.read_documents = read_documents
elif point == "shard":  # ARG = "train/shard-00002.tar:40000": killed once 40000 bytes of its tar are on disk
    name, nbytes = arg.rsplit(":", 1)
    target = (name + ".tmp").split("/")
    real_open = pathlib.Path.open

    class KilledAfter:
        def __init__(self, fh, left):
            self.fh, self.left = fh, left

        def write(self, b):
            if len(b) >= self.left:
                self.fh.write(bytes(b[: self.left]))
                self.fh.flush()
                die()
            self.left -= len(b)
            return self.fh.write(b)

        def __getattr__(self, attr):
            return getattr(self.fh, attr)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self.fh.__exit__(*exc)

    def open_(self, mode="r", *a, **k):
        fh = real_open(self, mode, *a, **k)
        return KilledAfter(fh, int(nbytes)) if "w" in mode and list(self.parts[-2:]) == target else fh

    pathlib.Path.open = open_
elif point == "manifest_half":  # killed with the first half of the manifest's text written (to whatever file)
    real_write_text = pathlib.Path.write_text

    def write_text(self, data, *a, **k):
        if self.name.startswith("manifest.json"):
            b = data.encode("utf-8")
            with open(self, "wb") as fh:
                fh.write(b[: len(b) // 2])
            die()
        return real_write_text(self, data, *a, **k)

    pathlib.Path.write_text = write_text
elif point == "manifest_written":  # killed right after manifest.json was renamed into place
    from data_tools import pack_job

    real_write_manifest = pack_job.write_manifest

    def write_manifest(*a, **k):
        real_write_manifest(*a, **k)
        die()

    pack_job.write_manifest = write_manifest
else:
    raise SystemExit(f"unknown kill point {point}")

from data_tools.cli import main

sys.exit(main(argv))
'''


@pytest.fixture(scope="module")
def kill_corpus(zh_docs, tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("killed_packs") / "corpus.jsonl"
    src.write_text("".join(json.dumps({"text": d}, ensure_ascii=False) + "\n" for d in zh_docs[:150]), encoding="utf-8")
    return src


def pack_argv(src: Path, out: Path, vocab: Path, *args: str) -> list[str]:
    return ["pack", "--format", "jsonl", "--input", str(src), "--output", str(out), "--tokenizer_path", str(vocab),
            *(args or KILL_ARGS)]


@pytest.fixture(scope="module")
def uninterrupted(kill_corpus, vocab_dir) -> Path:
    out = kill_corpus.parent / "uninterrupted"
    assert main(pack_argv(kill_corpus, out, vocab_dir)) == 0
    m = read_manifest(out)
    assert [len(m.splits[s].shards) for s in ("train", "validation")] == [4, 2]  # the layout the kill points assume
    assert all(sh.samples == 1 for s in m.splits.values() for sh in s.shards)
    return out


def pack_killed_at(point: str, arg: str | int, argv: list[str]) -> str:
    """Run ``python -m data_tools`` + argv in a new process, SIGKILLed at ``point``; returns its stderr. The process
    is forked from the tests' fork server, which has imported transformers once (pretrain_helpers.run_code)."""
    from pretrain_helpers import run_code

    proc = run_code(KILL_DRIVER, [point, str(arg), *argv])
    assert proc.returncode == -signal.SIGKILL, \
        f"not killed at {point} {arg}: exit {proc.returncode}\n{proc.stderr[-3000:]}"
    return proc.stderr


def dataset_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def assert_same_pack(reference: Path, out: Path) -> None:
    """``out`` holds exactly the files of ``reference`` (no partial shard, temp file or resume state left),
    every shard with the same sha256, every other file byte-identical, and the same manifest but for the
    creation time (every pack here reads the same --input with the same --tokenizer_path)."""
    want, got = dataset_files(reference), dataset_files(out)
    assert sorted(got) == sorted(want)
    sha = {name: hashlib.sha256(b).hexdigest() for name, b in want.items() if name.endswith(".tar")}
    assert len(sha) == 6
    assert {name: hashlib.sha256(got[name]).hexdigest() for name in sha} == sha
    assert all(sh.sha256 == sha[sh.name] for s in read_manifest(out).splits.values() for sh in s.shards)
    mw, mg = (json.loads(files.pop("manifest.json")) for files in (want, got))
    assert mg["source"].pop("created") and mw["source"].pop("created")
    assert mg == mw
    for name, blob in want.items():
        assert got[name] == blob, f"{name} differs"


def completed_shards(out: Path) -> list[str]:
    """The shards the resume state records as complete."""
    state = pack_state.load_state(out)
    return [sh["name"] for s in state["splits"].values() for sh in s["shards"]] if state else []


def file_ids(out: Path, names: list[str]) -> dict[str, tuple[int, int]]:
    """(inode, mtime_ns) per file: unchanged iff the file was neither rewritten nor replaced."""
    return {n: ((out / n).stat().st_ino, (out / n).stat().st_mtime_ns) for n in names}


def rerun_and_check(argv: list[str], out: Path, reference: Path, capsys, resumes_at: int | None) -> None:
    """Re-run the killed command: it resumes at the checkpoint (keeping the shards it records untouched)
    or, with none, starts afresh; either way it ends with the reference's bytes."""
    kept = file_ids(out, completed_shards(out))
    capsys.readouterr()
    assert main(argv) == 0
    err = " ".join(capsys.readouterr().err.split())
    if resumes_at is None:
        assert not kept and "resuming" not in err
    else:
        assert f"resuming {out}: {resumes_at} documents already consumed, {len(kept)} shards complete" in err
        assert kept and file_ids(out, list(kept)) == kept
    assert_same_pack(reference, out)


@pytest.mark.slow
@pytest.mark.parametrize("doc", [20, 100, 140])
def test_pack_killed_while_reading_finishes_byte_identical(doc, kill_corpus, vocab_dir, uninterrupted, tmp_path,
                                                           capsys) -> None:
    # SIGKILL as the reader is about to yield document `doc`: 20 is before the first checkpoint (nothing
    # to resume: start afresh), 100 and 140 are after 1 and 3 checkpoints (resume from the newest).
    out = tmp_path / "data"
    argv = pack_argv(kill_corpus, out, vocab_dir)
    pack_killed_at("read", doc, argv)
    assert not (out / "manifest.json").exists()
    state = pack_state.load_state(out)
    if doc == 20:
        assert state is None and not any(out.glob("*/*.tar"))
        resumes_at = None
    else:
        resumes_at = state["documents_consumed"]
        assert 0 < resumes_at < doc  # documents read after the checkpoint are read again
    rerun_and_check(argv, out, uninterrupted, capsys, resumes_at)


@pytest.mark.parametrize("shard, at_byte", [
    ("train/shard-00000.tar", 40000),  # before the first checkpoint
    ("train/shard-00002.tar", 40000),  # after 2 checkpoints, before the one this shard completes
    ("validation/shard-00001.tar", 5000),  # final flush: train/shard-00003.tar is complete, in no checkpoint
])
@pytest.mark.slow
def test_pack_killed_while_writing_a_shard_finishes_byte_identical(shard, at_byte, kill_corpus, vocab_dir,
                                                                   uninterrupted, tmp_path, capsys) -> None:
    out = tmp_path / "data"
    argv = pack_argv(kill_corpus, out, vocab_dir)
    pack_killed_at("shard", f"{shard}:{at_byte}", argv)
    partial = out / (shard + ".tmp")
    assert partial.stat().st_size == at_byte  # the half-written tar, left where the kill found it
    assert not (out / shard).exists() and not (out / "manifest.json").exists()
    assert shard not in completed_shards(out)
    if shard == "validation/shard-00001.tar":
        assert (out / "train/shard-00003.tar").exists() and "train/shard-00003.tar" not in completed_shards(out)
    state = pack_state.load_state(out)
    rerun_and_check(argv, out, uninterrupted, capsys, None if state is None else state["documents_consumed"])


@pytest.mark.slow
def test_pack_killed_while_writing_the_manifest_finishes_byte_identical(kill_corpus, vocab_dir, uninterrupted, tmp_path,
                                                                        capsys) -> None:
    out = tmp_path / "data"
    argv = pack_argv(kill_corpus, out, vocab_dir)
    pack_killed_at("manifest_half", 0, argv)
    assert not (out / "manifest.json").exists()  # written to a temp file and renamed: never half there
    half = (out / "manifest.json.tmp").read_bytes()
    assert 0 < len(half) < len((uninterrupted / "manifest.json").read_bytes())
    with pytest.raises(ValueError, match="the pack was interrupted; re-run the same pack command"):
        read_manifest(out)  # training refuses it, and says why
    # every shard is on disk; the newest checkpoint is the last before the final flush
    assert sorted(completed_shards(out)) == ["train/shard-00000.tar", "train/shard-00001.tar", "train/shard-00002.tar",
                                             "validation/shard-00000.tar"]
    rerun_and_check(argv, out, uninterrupted, capsys, pack_state.load_state(out)["documents_consumed"])


@pytest.mark.slow
def test_pack_killed_after_writing_the_manifest_before_removing_its_state_finishes_byte_identical(
        kill_corpus, vocab_dir, uninterrupted, tmp_path, capsys) -> None:
    out = tmp_path / "data"
    argv = pack_argv(kill_corpus, out, vocab_dir)
    pack_killed_at("manifest_written", 0, argv)
    assert (out / "manifest.json").exists() and pack_state.load_state(out) is not None
    rerun_and_check(argv, out, uninterrupted, capsys, pack_state.load_state(out)["documents_consumed"])


@pytest.mark.slow
def test_pack_without_checkpoints_killed_while_writing_the_manifest_finishes_byte_identical(
        kill_corpus, vocab_dir, tmp_path, capsys) -> None:
    # shards bigger than the corpus: no shard completes before the final flush, so no checkpoint exists
    args = ("--max_seq_length", "128", "--val_fraction", "0.2", "--wwm")
    reference = tmp_path / "reference"
    assert main(pack_argv(kill_corpus, reference, vocab_dir, *args)) == 0
    out = tmp_path / "data"
    argv = pack_argv(kill_corpus, out, vocab_dir, *args)
    pack_killed_at("manifest_half", 0, argv)
    assert (out / "manifest.json.tmp").exists() and not (out / "manifest.json").exists()
    assert pack_state.load_state(out) is None
    capsys.readouterr()
    assert main(argv) == 0, capsys.readouterr().err
    want, got = dataset_files(reference), dataset_files(out)
    assert sorted(got) == sorted(want)
    mw, mg = (json.loads(files.pop("manifest.json")) for files in (want, got))
    assert mg["source"].pop("created") and mw["source"].pop("created")
    assert mg == mw and got == want


@pytest.mark.slow
def test_pack_killed_while_removing_its_state_keeps_the_finished_dataset(kill_corpus, vocab_dir, uninterrupted,
                                                                         tmp_path, capsys) -> None:
    # After manifest.json is in place the pack deletes .pack_state file by file: kill it after each deletion,
    # with the directory listed in the worst order (state.json last), and re-run the command each time.
    real_unlink, real_iterdir = Path.unlink, Path.iterdir
    removed, kill_after = [], 0

    def unlink(self, *a, **k):
        real_unlink(self, *a, **k)
        if self.parent.name == pack_state.STATE_DIRNAME and (self.parent.parent / "manifest.json").exists():
            removed.append(self.name)
            if len(removed) == kill_after:
                raise SimulatedKill(f"stopped after deleting {removed}")

    def iterdir(self):
        entries = list(real_iterdir(self))
        if self.name == pack_state.STATE_DIRNAME:
            entries.sort(key=lambda p: p.name == pack_state.STATE_NAME)
        return iter(entries)

    while True:
        kill_after += 1
        removed.clear()
        out = tmp_path / f"data{kill_after}"
        argv = pack_argv(kill_corpus, out, vocab_dir)
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(Path, "unlink", unlink)
            mp.setattr(Path, "iterdir", iterdir)
            try:
                assert main(argv) == 0
            except SimulatedKill:
                pass
            else:
                break  # every file deleted without a kill: all kill points done
        assert removed[0] == pack_state.STATE_NAME  # the state is gone before any file it names
        assert (out / pack_state.STATE_DIRNAME).exists()
        finished = (out / "manifest.json").read_bytes()
        capsys.readouterr()
        assert main(argv) == 2
        assert f"{out} already holds a finished dataset (manifest.json)" in " ".join(capsys.readouterr().err.split())
        assert (out / "manifest.json").read_bytes() == finished  # untouched, creation time included
        assert_same_pack(uninterrupted, out)  # and the resume state's leftovers are gone
    assert kill_after > 4  # state.json, and per split its arrays and its hashes


def test_build_vocab_on_a_sample_equals_build_vocab_on_those_documents(zh_docs, tmp_path, capsys) -> None:
    """--sample_docs N trains on the N documents with the smallest content hashes (uniform, deterministic, whatever
    the input order): the same bytes as a vocab built from exactly those documents."""
    from data_tools.normalize import normalize
    from data_tools.tokenize_worker import doc_hash

    def jsonl(path, docs):
        path.write_text("".join(json.dumps({"text": d}, ensure_ascii=False) + "\n" for d in docs), encoding="utf-8")
        return path

    docs = zh_docs[:100]
    chosen = sorted(docs, key=lambda d: doc_hash(normalize(d)[0]))[:40]
    args = ["build-vocab", "--format", "jsonl", "--vocab_size", "1500"]
    assert main([*args, "--input", str(jsonl(tmp_path / "all.jsonl", docs)), "--output", str(tmp_path / "s"),
                 "--sample_docs", "40"]) == 0
    assert "from 100 documents, of which 40 sampled" in " ".join(capsys.readouterr().err.split())
    assert main([*args, "--input", str(jsonl(tmp_path / "rev.jsonl", docs[::-1])), "--output", str(tmp_path / "r"),
                 "--sample_docs", "40"]) == 0
    assert main([*args, "--input", str(jsonl(tmp_path / "chosen.jsonl", chosen)), "--output", str(tmp_path / "c")]) == 0
    sample = (tmp_path / "s" / "vocab.txt").read_bytes()
    assert sample == (tmp_path / "c" / "vocab.txt").read_bytes() == (tmp_path / "r" / "vocab.txt").read_bytes()
    assert main([*args, "--input", str(tmp_path / "all.jsonl"), "--output", str(tmp_path / "x"),
                 "--sample_docs", "0"]) == 2
