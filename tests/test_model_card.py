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
