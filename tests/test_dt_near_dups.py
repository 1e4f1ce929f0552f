"""Near-duplicates at crawl scale on datatrove (issue 32): `near-dups --executor local|slurm` runs datatrove's MinHash
stages (character 5-gram signatures, buckets, verified clusters) and writes the drop list `pack --drop_list` reads;
planted near-duplicates are dropped, unique documents kept; the SLURM path (stand-in sbatch/srun running the array
tasks on this host) writes the same list as the local one, for any number of tasks; a rerun resumes."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO
from data_tools.cli import main
from data_tools.near_dedup import DROP_HASHES, DROP_INFO, DropList
from data_tools.normalize import normalize
from data_tools.tokenize_worker import doc_hash

sys.path.insert(0, str(REPO / "bench"))
from synthetic_crawl import recombined, sentences, with_planted  # noqa: E402



FILE = 83
"""Documents per file (330 in 4 files)."""


@pytest.fixture(scope="module")
def crawl_files(zh_docs, tmp_path_factory) -> tuple[Path, list[str], list[int]]:
    """300 recombined documents and 30 planted near-copies (5 characters changed, a footer added), in 4 JSONL files."""
    docs, planted = with_planted(recombined(sentences(zh_docs), 300, seed=3), 30, seed=4)
    root = tmp_path_factory.mktemp("crawl")
    for f in range(4):  # consecutive stretches of the crawl: every copy still comes after its original
        (root / f"part-{f}.jsonl").write_text("".join(json.dumps({"text": d}, ensure_ascii=False) + "\n"
                                                      for d in docs[FILE * f: FILE * (f + 1)]), encoding="utf-8")
    return root, docs, planted


def near_dups(crawl: Path, out: Path, *extra: str) -> int:
    return main(["near-dups", "--format", "jsonl", "--input", str(crawl), "--output", str(out), *extra])


@pytest.mark.slow  # datatrove's executor starts a manager process and 2 workers
def test_datatrove_stages_drop_the_planted_near_duplicates(crawl_files, tmp_path):
    crawl, docs, planted = crawl_files
    out = tmp_path / "local"
    assert near_dups(crawl, out, "--executor", "local", "--tasks", "3", "--workers", "2") == 0
    drop = DropList.load(out)
    hs = [doc_hash(normalize(d)[0]) for d in docs]
    planted_set = set(planted)
    dropped_planted = sum(hs[i] in drop for i in planted)
    dropped_unique = sum(h in drop for i, h in enumerate(hs) if i not in planted_set)
    assert dropped_planted >= 0.9 * len(planted), dropped_planted
    assert dropped_unique <= 0.01 * (len(docs) - len(planted)), dropped_unique
    info = drop.info
    assert info["engine"] == "datatrove" and info["documents_read"] == len(docs)
    assert info["documents_dropped"] == len(drop.hashes) == dropped_planted + dropped_unique
    assert info["drops"] + info["documents_indexed"] + info["left_out"]["exact duplicates"] == len(docs)
    # an example names a dropped document and the one it duplicates, which stays (its hash is not in the list)
    position = [FILE * e[k]["file_index"] + e[k]["record"] for e in info["examples"]
                for k in ("document", "near_duplicate_of")]
    assert info["examples"] and all(hs[i] in drop for i in position[0::2])
    assert not any(hs[i] in drop for i in position[1::2])


@pytest.mark.slow  # three stages submitted as job arrays, each task a process with datatrove imported
def test_the_slurm_path_writes_the_local_runs_list_for_any_number_of_tasks(crawl_files, tmp_path, monkeypatch):
    crawl, _, _ = crawl_files
    monkeypatch.setenv("PATH", str(REPO / "tests" / "fake_slurm") + os.pathsep + os.environ["PATH"])
    monkeypatch.setenv("FAKE_SBATCH_LOG", str(tmp_path / "sbatch.log"))
    assert near_dups(crawl, tmp_path / "local", "--executor", "local", "--tasks", "2") == 0
    assert near_dups(crawl, tmp_path / "slurm", "--executor", "slurm", "--tasks", "4", "--slurm_partition", "cpu") == 0
    log = (tmp_path / "sbatch.log").read_text()
    assert "FAILED" not in log, log[-3000:]
    assert log.count("== job ") >= 4 + 16 + 1  # the signature array, the 16 bucket tasks, the clusters task
    local, slurm = (tmp_path / "local" / DROP_HASHES).read_bytes(), (tmp_path / "slurm" / DROP_HASHES).read_bytes()
    assert slurm == local and len(local) > 0
    info = json.loads((tmp_path / "slurm" / DROP_INFO).read_text())
    assert info["engine"] == "datatrove"


@pytest.mark.slow  # three passes on datatrove's executor
def test_a_rerun_resumes_and_other_settings_are_refused(crawl_files, tmp_path, capsys):
    crawl, _, _ = crawl_files
    out = tmp_path / "list"
    assert near_dups(crawl, out, "--executor", "local", "--tasks", "2") == 0
    first = (out / DROP_HASHES).read_bytes()
    (out / DROP_INFO).unlink()  # as if killed before the last stage finished
    (out / ".datatrove" / "logs" / "clusters" / "completions" / "00000").unlink()
    assert near_dups(crawl, out, "--executor", "local", "--tasks", "2") == 0
    assert (out / DROP_HASHES).read_bytes() == first and "resuming" in capsys.readouterr().err
    assert near_dups(crawl, out, "--executor", "local", "--tasks", "3") == 2
    assert "holds an unfinished near-dups pass with other settings (tasks)" in capsys.readouterr().err
    assert main(["near-dups", "--format", "jsonl", "--input", str(crawl), "--output", str(tmp_path / "x"),
                 "--executor", "slurm"]) == 2
    assert "--executor slurm needs --slurm_partition" in capsys.readouterr().err


@pytest.mark.slow  # a near-dups pass, one pack and four part packs, a merge
def test_parts_that_read_only_their_files_merge_to_what_one_pack_keeps(zh_docs, vocab_dir, tmp_path):
    """pack --part I/4 --part_by files: each part reads 2 of the 8 input files; exact copies across files (listed by the
    datatrove pass) and near-duplicates dropped; the merged parts keep the documents, and the split, of one pack with
    the same --drop_list."""
    from roberta_ds.shard_format import read_manifest

    docs, _ = with_planted(recombined(sentences(zh_docs), 300, seed=5), 20, seed=6)
    docs = docs + [docs[i] for i in range(0, 300, 15)]  # 20 exact copies, in the last file: their originals earlier
    crawl = tmp_path / "crawl"
    crawl.mkdir()
    per = -(-len(docs) // 8)
    for f in range(8):
        (crawl / f"{f}.jsonl").write_text("".join(json.dumps({"text": d}, ensure_ascii=False) + "\n"
                                                  for d in docs[per * f: per * (f + 1)]), encoding="utf-8")
    listed = tmp_path / "list"
    assert near_dups(crawl, listed, "--executor", "local", "--tasks", "2") == 0
    drop = DropList.load(listed)
    for pos in range(len(docs) - 20, len(docs)):  # each copy: listed as a copy, or a near-duplicate (its original is)
        assert drop.is_copy(pos // per, pos % per) or doc_hash(normalize(docs[pos])[0]) in drop, pos
    common = ["--format", "jsonl", "--input", str(crawl), "--tokenizer_path", str(vocab_dir), "--max_seq_length", "128",
              "--val_fraction", "0.2", "--shard_size_mb", "0.07", "--drop_list", str(listed)]
    assert main(["pack", *common, "--output", str(tmp_path / "single")]) == 0
    for i in range(1, 5):
        assert main(["pack", *common, "--output", str(tmp_path / f"part{i}"), "--part", f"{i}/4",
                     "--part_by", "files"]) == 0
        read = read_manifest(tmp_path / f"part{i}").corpus["documents_read"]
        assert read == len(docs[per * (i - 1): per * i]) + len(docs[per * (i + 3): per * (i + 4)])  # files i-1, i+3
        assert read <= 0.3 * len(docs)
    assert main(["merge", *(str(tmp_path / f"part{i}") for i in range(1, 5)), "--output", str(tmp_path / "merged")]) == 0

    def kept(root: Path) -> dict[str, set[int]]:
        return {s: set(np.load(root / s / "documents.npy").tolist()) for s in ("train", "validation")}

    single, merged = kept(tmp_path / "single"), kept(tmp_path / "merged")
    assert merged == single and len(single["train"]) > 200
    assert main(["pack", *common[:-2], "--output", str(tmp_path / "x"), "--part", "1/4", "--part_by", "files"]) == 2


@pytest.mark.slow  # the parts and the merge as datatrove tasks, through stand-in sbatch/srun
def test_pack_on_the_executors_packs_the_parts_and_merges_them(crawl_files, vocab_dir, tmp_path, monkeypatch):
    """pack --executor local|slurm --parts 2 --part_by files: two part tasks, then a merge task; the merged dataset
    holds the documents of one pack with the same drop list, on either executor."""
    crawl, _, _ = crawl_files
    monkeypatch.setenv("PATH", str(REPO / "tests" / "fake_slurm") + os.pathsep + os.environ["PATH"])
    monkeypatch.setenv("FAKE_SBATCH_LOG", str(tmp_path / "sbatch.log"))
    listed = tmp_path / "list"
    assert near_dups(crawl, listed, "--executor", "local", "--tasks", "2") == 0
    common = ["--format", "jsonl", "--input", str(crawl), "--tokenizer_path", str(vocab_dir), "--max_seq_length", "128",
              "--val_fraction", "0.2", "--shard_size_mb", "0.07", "--drop_list", str(listed)]
    assert main(["pack", *common, "--output", str(tmp_path / "single")]) == 0
    for executor in ("local", "slurm"):
        out = tmp_path / executor
        assert main(["pack", *common, "--output", str(out), "--executor", executor, "--parts", "2", "--part_by",
                     "files", "--slurm_partition", "cpu"]) == 0
        assert sorted(p.name for p in (tmp_path / f"{executor}.parts").iterdir() if p.name.startswith("part")) == \
            ["part1", "part2"]
        for split in ("train", "validation"):
            assert set(np.load(out / split / "documents.npy").tolist()) == \
                set(np.load(tmp_path / "single" / split / "documents.npy").tolist())
    assert "FAILED" not in (tmp_path / "sbatch.log").read_text()
    assert main(["pack", *common, "--output", str(tmp_path / "x"), "--executor", "local", "--part", "1/2"]) == 2


@pytest.mark.slow  # datatrove's executor and an inline pass
def test_the_filters_run_as_datatrove_steps_and_drop_what_the_inline_pass_drops(zh_docs, tmp_path):
    """The quality filters (data_tools.steps) as datatrove filter steps: each document dropped for the reason the
    filter set gives it, counted by reason, as many as the inline pass leaves out."""
    from test_quality import FLAGS, PLANTED

    from data_tools.quality import QualityFilters

    docs = [*zh_docs[:30], *PLANTED, *zh_docs[30:60], *PLANTED]
    crawl = tmp_path / "crawl"
    crawl.mkdir()
    for f in range(2):
        (crawl / f"{f}.jsonl").write_text("".join(json.dumps({"text": d}, ensure_ascii=False) + "\n"
                                                  for d in docs[f::2]), encoding="utf-8")
    filters = QualityFilters.of(**{k.lstrip("-"): float(v) if "." in v else int(v) for k, v in zip(FLAGS[::2],
                                                                                                  FLAGS[1::2])})
    expected = dict.fromkeys(filters.reasons, 0)
    for d in docs:
        if why := filters.verdict(d, normalize(d)[0]):
            expected[why] += 1
    assert all(expected[r] >= 2 for r in filters.reasons), expected  # every filter drops something here
    assert near_dups(crawl, tmp_path / "dt", "--executor", "local", "--tasks", "2", *FLAGS) == 0
    assert near_dups(crawl, tmp_path / "inline", *FLAGS) == 0
    dt, inline = (json.loads((tmp_path / d / DROP_INFO).read_text(encoding="utf-8")) for d in ("dt", "inline"))
    assert dt["filtered"] == expected
    assert dt["left_out"]["quality filters"] == inline["left_out"]["quality filters"] == sum(expected.values())
