"""Nothing of the user's is deleted or overwritten: pack and merge refuse an --output they did not write, a new run
refuses a used run directory, rotation deletes only this run's checkpoints, export refuses a colleague's files.
Every planted file is compared byte for byte afterwards. And what we load ourselves runs no code from the file."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import pack_corpus
from pretrain_helpers import launcher_main, run_pretrain

from data_tools.cli import main as data_tools_main
from roberta_ds.training.engine.checkpoint import STATE_NAME, list_checkpoints
from roberta_ds.shard_format import ShardFormatError, read_manifest


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def plant_corpus(root: Path) -> dict[str, str]:
    """A user's corpus laid out the way our datasets are: train/ and validation/ (and a tokenizer/ of theirs)."""
    for split, n in (("train", 3), ("validation", 1)):
        (root / split).mkdir(parents=True)
        for i in range(n):
            (root / split / f"{i}.txt").write_text(f"用户的语料 {split} {i}\n", encoding="utf-8")
    (root / "tokenizer").mkdir()
    (root / "tokenizer" / "vocab.txt").write_text("[PAD]\n", encoding="utf-8")
    return snapshot(root)


def test_pack_refuses_a_users_corpus_as_output_and_leaves_it_byte_identical(zh_docs, vocab_dir, tmp_path, capsys):
    corpus = tmp_path / "corpus"
    before = plant_corpus(corpus)
    with pytest.raises(AssertionError):  # pack_corpus asserts exit code 0
        pack_corpus(zh_docs[:30], corpus, vocab_dir, "--max_seq_length", "128")
    err = capsys.readouterr().err
    assert f"--output {corpus} is not empty and not a data_tools dataset" in err and "not written by data_tools pack" in err
    assert "train/" in err and "validation/" in err and "nothing in it was changed" in err
    assert snapshot(corpus) == before


def test_a_killed_packs_own_leftovers_are_still_cleaned_up(zh_docs, vocab_dir, tmp_path):
    # Our own leftovers (marker present) are removed on a fresh start; a user's file beside them stops it.
    out = tmp_path / "data"
    pack_corpus(zh_docs[:40], out, vocab_dir, "--max_seq_length", "128")
    (out / "manifest.json").unlink()  # as if killed before the manifest, with no resume state
    shutil.rmtree(out / ".pack_state", ignore_errors=True)
    (out / "train" / "stray.tar").write_bytes(b"half a shard")
    pack_corpus(zh_docs[:40], out, vocab_dir, "--max_seq_length", "128")
    assert not (out / "train" / "stray.tar").exists() and read_manifest(out).splits["train"].documents > 0
    (out / "manifest.json").unlink()
    (out / "notes.txt").write_text("mine", encoding="utf-8")
    assert data_tools_main(["pack", "--format", "jsonl", "--input", str(tmp_path / "data.jsonl"), "--output", str(out),
                            "--tokenizer_path", str(vocab_dir)]) == 2
    assert (out / "notes.txt").read_text(encoding="utf-8") == "mine" and (out / "train").is_dir()


def test_merge_refuses_a_users_directory_and_leaves_it_byte_identical(zh_docs, vocab_dir, tmp_path, capsys):
    parts = [pack_corpus(zh_docs[:60], tmp_path / f"p{i}", vocab_dir, "--max_seq_length", "128", "--part", f"{i}/2")
             for i in (1, 2)]
    target = tmp_path / "corpus"
    before = plant_corpus(target)
    assert data_tools_main(["merge", *map(str, parts), "--output", str(target)]) == 2
    assert "not a data_tools dataset" in (err := capsys.readouterr().err) and "not written by data_tools merge" in err
    assert snapshot(target) == before


def test_a_new_run_refuses_a_used_run_directory_and_changes_nothing(shard_dir: Path, tiny_run: Path, tmp_path: Path,
                                                                     capsys):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    before = snapshot(run)
    assert run_pretrain(shard_dir, run, "zero2", 6, "--seed", "7") == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"--output_dir {run} already holds a run (metrics.jsonl, summary.json" in err
    assert "--resume_from_checkpoint auto" in err and "another --output_dir" in err
    assert snapshot(run) == before


def test_rotation_deletes_only_this_runs_checkpoints(shard_dir: Path, tiny_run: Path, tmp_path: Path):
    run = tmp_path / "run"
    assert run_pretrain(shard_dir, run, "zero2", 8, "--save_steps", "2", "--save_total_limit", "1",
                        "--stop_at_step", "2") == 0
    # Another run's checkpoint, older by step, copied into this run's checkpoints/ (to compare, say).
    foreign = run / "checkpoints" / "global_step1"
    shutil.copytree(tiny_run / "checkpoints" / "global_step12", foreign)
    state = json.loads((foreign / STATE_NAME).read_text())
    (foreign / STATE_NAME).write_text(json.dumps({**state, "step": 1, "run_id": "another-run"}))
    before = snapshot(foreign)
    assert run_pretrain(shard_dir, run, "zero2", 8, "--save_steps", "2", "--save_total_limit", "1",
                        "--resume_from_checkpoint", str(run / "checkpoints" / "global_step2")) == 0
    assert [p.name for p in list_checkpoints(run / "checkpoints")] == ["global_step1", "global_step8"]
    assert snapshot(foreign) == before
    mine = json.loads((run / "checkpoints" / "global_step8" / STATE_NAME).read_text())["run_id"]
    assert mine and mine != "another-run"


def test_export_refuses_a_colleagues_files_and_overwrites_only_its_own(tiny_run: Path, tmp_path: Path, capsys):
    export = launcher_main("export")
    target = tmp_path / "model"
    target.mkdir()
    (target / "README.md").write_text("# Our team's model notes\n", encoding="utf-8")
    before = snapshot(target)
    assert export([str(tiny_run / "checkpoints"), str(target)]) == 2
    assert "is not empty and not a roberta-ds export (it holds README.md" in capsys.readouterr().err
    assert snapshot(target) == before
    fresh = tmp_path / "fresh"
    assert export([str(tiny_run / "checkpoints"), str(fresh)]) == 0
    assert export([str(tiny_run / "checkpoints"), str(fresh)]) == 0  # again over its own export: fine
    assert (fresh / "README.md").exists() and (fresh / "model.safetensors").exists()


def test_a_manifest_naming_shards_outside_the_dataset_is_refused(shard_dir: Path, tmp_path: Path):
    data = tmp_path / "data"
    shutil.copytree(shard_dir, data)
    m = json.loads((data / "manifest.json").read_text())
    for bad in ("../../etc/passwd", "/etc/passwd"):
        m["splits"]["train"]["shards"][0]["name"] = bad
        (data / "manifest.json").write_text(json.dumps(m, ensure_ascii=False))
        with pytest.raises(ShardFormatError, match="shard names must be plain relative paths inside the dataset"):
            read_manifest(data)


def test_our_rng_files_load_without_the_unsafe_loader(tiny_run: Path):
    files = sorted((tiny_run / "checkpoints" / "global_step12").glob("rng_rank*.pt"))
    assert files
    state = torch.load(files[0], weights_only=True)  # raises on anything but tensors and plain containers
    assert set(state) >= {"python", "numpy", "torch"}


def test_re_running_a_run_finished_before_export_markers_exports_over_its_own_final_model(shard_dir: Path,
                                                                                            tiny_run: Path,
                                                                                            tmp_path: Path):
    from roberta_ds.owned_dir import MARKER_NAME
    from pretrain_helpers import TINY_RUN

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    (run / "final_model" / MARKER_NAME).unlink()  # as a v0.1 export: no marker
    assert run_pretrain(shard_dir, run, "zero2", 12, *TINY_RUN, "--resume_from_checkpoint", "auto") == 0
    assert (run / "final_model" / MARKER_NAME).exists()
