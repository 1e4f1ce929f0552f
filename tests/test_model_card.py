"""final_model/README.md: a Hugging Face model card that huggingface_hub parses, with the run's own numbers."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from huggingface_hub import ModelCard
from pretrain_helpers import launcher_main


def test_the_export_writes_a_model_card_with_the_runs_numbers(tiny_run: Path):
    card = ModelCard.load(tiny_run / "final_model" / "README.md")
    assert card.data.language == "zh" and card.data.library_name == "transformers"
    assert card.data.pipeline_tag == "fill-mask" and "roberta" in card.data.tags
    assert card.data.license is None  # left for the user to set
    summary = json.loads((tiny_run / "summary.json").read_text())
    config = json.loads((tiny_run / "effective_config.json").read_text())
    manifest = Path(config["data"]["data_dir"]) / "manifest.json"
    text = card.text
    for fact in (f"{summary['eval']['loss']:.4f} nats per masked token",
                 f"{summary['steps']:,} steps x global batch {summary['global_batch']}",
                 f"{summary['tokens']:,} tokens seen",
                 hashlib.sha256(manifest.read_bytes()).hexdigest(),
                 f"sha256 {config['data']['tokenizer']['vocab_sha256']}",  # the tokenizer's real hash, not "?"
                 f"DeepSpeed ZeRO stage {summary['zero_stage']}, {summary['precision']}",
                 f"{summary['eval']['unigram_nats']:.4f}", "not collapsed",
                 'AutoModelForMaskedLM.from_pretrained("PATH_TO_THIS_DIRECTORY")'):
        assert fact in text, fact


def test_the_report_adds_a_probe_run_after_the_export_to_the_card(tiny_run: Path, tmp_path: Path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    probe = {"split": "--train t.txt, --test s.txt", "majority_accuracy": 0.5, "gain": None,
             "arms": {"pretrained": {"accuracy": 0.75, "macro_f1": 0.7, "final_train_loss": 0.4},
                      "scratch": {"accuracy": 0.6, "macro_f1": 0.55, "final_train_loss": 0.6}},
             "budget": {"max_steps": 10, "batch_size": 4, "lr": 5e-4, "max_length": 32},
             "train_examples": 40, "test_examples": 20, "labels": ["a", "b"],
             "definitions": {"accuracy": "correct / all", "macro_f1": "mean F1 over labels"}}
    (run / "probe.json").write_text(json.dumps(probe))
    assert launcher_main("report")([str(run)]) == 0
    text = ModelCard.load(run / "final_model" / "README.md").text
    assert "pretrained 0.7500 acc / 0.7000 macro-F1, scratch 0.6000 acc / 0.5500 macro-F1" in text


def test_exporting_any_checkpoint_writes_its_own_card(shard_dir: Path, tmp_path: Path):
    from pretrain_helpers import eval_records, run_pretrain

    run = tmp_path / "run"
    assert run_pretrain(shard_dir, run, "zero2", 8, "--stop_at_step", "4", "--eval_steps", "2",
                        "--eval_max_sequences", "16") == 0  # unfinished: no summary.json, a checkpoint at step 4
    assert launcher_main("export")([str(run / "checkpoints"), str(tmp_path / "hf")]) == 0
    card = ModelCard.load(tmp_path / "hf" / "README.md")
    assert card.data.pipeline_tag == "fill-mask"
    last_eval = eval_records(run)[-1]
    assert last_eval["step"] == 4
    for fact in ("run at global_step4", "4 steps x global batch 16",
                 f"{last_eval['loss']:.4f} nats per masked token", "not checked for a checkpoint export"):
        assert fact in card.text, fact


def test_exporting_a_finished_runs_last_checkpoint_gives_the_runs_card(tiny_run: Path, tmp_path: Path):
    assert launcher_main("export")([str(tiny_run / "checkpoints" / "global_step12"), str(tmp_path / "hf")]) == 0
    assert (tmp_path / "hf" / "README.md").read_text() == (tiny_run / "final_model" / "README.md").read_text()
