"""The export in the clients colleagues run, each in its own environment: transformers 5.x here (Auto classes, the
slow BertTokenizer from vocab.txt, sentence-transformers) and a real transformers 4.57 in a venv of its own (the
last 4.x, and what optimum's ONNX export pins), where optimum exports it to ONNX and onnxruntime runs it.
launcher/check_clients.py does the checking with stock libraries only; these tests run it and read its results."""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from pretrain_helpers import launcher_main

REPO = Path(__file__).resolve().parent.parent
CLIENT_PINS = ["transformers==4.57.6", "optimum-onnx==0.1.0", "onnxruntime==1.32.0"]
"""The colleague's environment: the last transformers 4.x and the ONNX stack that pins it (transformers < 4.58)."""


def test_the_export_names_a_tokenizer_every_version_loads_and_ships_vocab_txt(tiny_run: Path):
    model_dir = tiny_run / "final_model"
    config = json.loads((model_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast"  # 4.x has no "TokenizersBackend"
    assert "backend" not in config
    assert config["do_lower_case"] is True and config["tokenize_chinese_chars"] is True
    vocab = json.loads((model_dir / "tokenizer.json").read_text(encoding="utf-8"))["model"]["vocab"]
    lines = (model_dir / "vocab.txt").read_text(encoding="utf-8").split("\n")[:-1]
    assert {t: i for i, t in enumerate(lines)} == vocab


@pytest.mark.slow  # imports sentence-transformers (scikit-learn, scipy): 5 s before it checks anything
def test_check_clients_passes_on_the_export_in_this_environment(tiny_run: Path, tmp_path: Path, capsys):
    """transformers 5.x and sentence-transformers (installed with the test extra): Auto classes, fill-mask, a
    truncated pair batch, the table applied, the slow tokenizer's ids; sentence embeddings."""
    out = tmp_path / "clients.json"
    code = launcher_main("check_clients")([str(tiny_run / "final_model"), "--clients",
                                           "transformers,sentence-transformers", "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    res = json.loads(out.read_text(encoding="utf-8"))
    assert res["transformers"]["punctuation_unknown"] == [] and res["transformers"]["slow_vocab_mismatches"] == 0
    assert res["transformers"]["pair_batch"]["input_ids"][1] <= res["transformers"]["model_max_length"]
    assert res["sentence-transformers"]["shape"][0] == 3
    assert "transformers: ok" in printed and "sentence-transformers: ok" in printed


def test_check_clients_reports_a_broken_export_and_a_missing_required_client(tiny_run: Path, tmp_path: Path,
                                                                             capsys):
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in (tiny_run / "final_model").iterdir():
        if f.name != "tokenizer.json":
            (broken / f.name).write_bytes(f.read_bytes())
    (broken / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "TokenizersBackend"}))
    code = launcher_main("check_clients")([str(broken), "--clients", "transformers,onnx"])
    printed = capsys.readouterr().out
    assert code == 1
    assert "transformers: failed" in printed
    assert "onnx: failed — optimum.onnxruntime is not installed: pip install optimum-onnx onnxruntime" in printed
    assert launcher_main("check_clients")([str(tmp_path), "--clients", "tensorflow"]) == 2
    err = capsys.readouterr().err
    assert "--clients tensorflow: choose from" in err and "no config.json there" in err


def test_check_clients_imports_nothing_of_roberta_ds():
    """It must run where only the clients are installed (a colleague's transformers 4.x, no DeepSpeed)."""
    code = ("import sys; sys.argv = ['x', '--help']\nimport runpy\ntry:\n"
            " runpy.run_path('launcher/check_clients.py', run_name='__main__')\nexcept SystemExit: pass\n"
            "print(sorted(m for m in sys.modules if m.startswith(('roberta_ds', 'data_tools', 'deepspeed'))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "['roberta_ds', 'roberta_ds.commands', 'roberta_ds.commands.check_clients']"


@pytest.fixture(scope="session")
def transformers4_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv holding transformers 4.57.6, optimum-onnx and onnxruntime (CLIENT_PINS, from the package index) over
    this environment's torch: its site-packages come first, this one's are read after them (a .pth file), so torch
    is not installed twice."""
    venv = tmp_path_factory.mktemp("transformers4") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    child_site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                capture_output=True, text=True, check=True).stdout.strip()
    (Path(child_site) / "parent_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *CLIENT_PINS],
                   check=True, capture_output=True)
    return python


@pytest.mark.slow
def test_transformers4_loads_the_export_and_onnx_matches_torch(tiny_run: Path, tmp_path: Path,
                                                               transformers4_python: Path):
    """In transformers 4.57, for the RoBERTa and the BERT export: Auto classes, fill-mask, a truncated pair batch,
    the slow BertTokenizer; optimum's ONNX export within 1e-3 of torch; and the masked-LM logits equal to
    transformers 5's on the same batch. (One test for both: the transformers 4 venv is built once, not per worker.)"""
    bert = tmp_path / "bert"
    assert launcher_main("export")([str(tiny_run / "checkpoints"), str(bert), "--architecture", "bert"]) == 0
    for model_dir in (tiny_run / "final_model", bert):
        _check_in_transformers4(model_dir, tmp_path / f"check_{model_dir.name}", transformers4_python)


def _check_in_transformers4(model_dir: Path, tmp_path: Path, transformers4_python: Path) -> None:
    tmp_path.mkdir()
    here, there = tmp_path / "here.npy", tmp_path / "there.npy"
    assert launcher_main("check_clients")([str(model_dir), "--clients", "transformers", "--logits", str(here)]) == 0
    out = tmp_path / "clients.json"
    proc = subprocess.run([transformers4_python, "launcher/check_clients.py", str(model_dir), "--clients",
                           "transformers,onnx", "--out", str(out), "--logits", str(there)],
                          cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    res = json.loads(out.read_text(encoding="utf-8"))
    assert res["transformers"]["transformers"] == "4.57.6"
    assert res["transformers"]["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert res["transformers"]["punctuation_unknown"] == []
    assert res["onnx"]["max_abs_logit_difference"] <= 1e-3
    a, b = np.load(here), np.load(there)
    assert a.shape == b.shape and np.abs(a - b).max() < 1e-4
