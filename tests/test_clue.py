"""CLUE-layout tasks in the probe: files read by their keys (single texts, sentence pairs), labels kept as strings,
test files predicted in CLUE's submission format, and CLUE's grid protocol with the reference score beside ours."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from data_tools.clue import read_clue, task_name
from data_tools.labelled import LabelledConfig, load_clue
from data_tools.normalize import normalize

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "launcher"))

from probe import main as probe_main  # noqa: E402  (launcher/probe.py)


def _jsonl(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def _tnews(zh_docs: list[str], root: Path) -> Path:
    """TNEWS' layout ({"label", "label_desc", "sentence", "keywords"}): two classes a tiny encoder tells apart,
    article openings (label "101") and their reversed text ("102"); train 80, dev 30, test 20 without labels."""
    def rec(i: int, d: str) -> dict:
        text = d.replace("\n", " ")[:40].strip()
        fwd = i % 2 == 0
        return {"label": "101" if fwd else "102", "label_desc": "news_culture" if fwd else "news_entertainment",
                "sentence": text if fwd else text[::-1], "keywords": ""}
    recs = [rec(i, d) for i, d in enumerate(zh_docs[:130])]
    _jsonl(root / "train.json", recs[:80])
    _jsonl(root / "dev.json", recs[80:110])
    _jsonl(root / "test.json", [{"id": i, "sentence": r["sentence"], "keywords": ""} for i, r in enumerate(recs[110:])])
    return root


def test_clue_files_are_read_by_their_keys(zh_docs, tmp_path):
    tnews = _tnews(zh_docs, tmp_path / "tnews_public")
    train = read_clue(tnews / "train.json")
    assert train.layout == "single" and len(train.examples) == 80 and train.labelled
    first = json.loads((tnews / "train.json").read_text(encoding="utf-8").splitlines()[0])
    assert train.examples[0] == (normalize(first["sentence"])[0], "101")  # label kept as its string, label_desc ignored
    test = read_clue(tnews / "test.json", labels=False)
    assert test.ids == list(range(20)) and all(e[-1] is None for e in test.examples)
    assert task_name(str(tnews / "train.json")) == "tnews" and task_name("data/afqmc_dev.jsonl") == "afqmc"
    assert task_name("mine/train.json") is None
    # AFQMC/OCNLI's layout: a pair; OCNLI's "-" (no gold label) left out and counted; a whole-file JSON array read too
    pairs = [{"sentence1": "蚂蚁借呗等额还款", "sentence2": "借呗可以提前还款吗", "label": "0"},
             {"sentence1": "花呗怎么还款", "sentence2": "花呗如何还款", "label": 1},
             {"sentence1": "一个", "sentence2": "两个", "label": "-", "genre": "news"}]
    ocnli = tmp_path / "ocnli" / "dev.json"
    ocnli.parent.mkdir()
    ocnli.write_text(json.dumps(pairs, ensure_ascii=False), encoding="utf-8")
    got = read_clue(ocnli)
    assert got.layout == "pair" and got.examples == [("蚂蚁借呗等额还款", "借呗可以提前还款吗", "0"),
                                                     ("花呗怎么还款", "花呗如何还款", "1")]
    assert got.left_out == {"no gold label ('-')": 1} and got.input_counts()["records"] == 3
    # bytes neither UTF-8 nor GB18030 decode: replaced and counted, as pack counts them
    odd = tmp_path / "odd.jsonl"
    odd.write_bytes('{"sentence": "新闻'.encode() + b"\xff\xfe\xff" + '", "label": "1"}\n'.encode())
    assert read_clue(odd).input_counts()["decode_errors"] == 1


def test_bad_clue_files_say_what_is_wrong(tmp_path, zh_docs, capsys):
    bad = _jsonl(tmp_path / "keys.json", [{"text": "新闻", "label": "1"}])
    with pytest.raises(ValueError, match=r"record 1 has keys \['label', 'text'\]; CLUE's layout is"):
        read_clue(bad)
    unlabelled = _jsonl(tmp_path / "nolabel.json", [{"sentence": "新闻", "label": "1"}, {"sentence": "体育"}])
    with pytest.raises(ValueError, match=r"line 2: no \"label\"; train and dev files need one per record"):
        read_clue(unlabelled)
    mixed = _jsonl(tmp_path / "mixed.json", [{"sentence": "新闻", "label": "1"}, {"sentence1": "体育", "label": "2"}])
    with pytest.raises(ValueError, match=r"line 2: no text under \['sentence'\]"):
        read_clue(mixed)
    broken = tmp_path / "broken.json"
    broken.write_text('{"sentence": "新闻", "label": "1"}\nnot json\n', encoding="utf-8")
    with pytest.raises(ValueError, match="1 line\\(s\\) are not JSON objects, first at line 2"):
        read_clue(broken)
    tnews = _tnews(zh_docs, tmp_path / "tnews")
    pair = _jsonl(tmp_path / "afqmc" / "dev.json", [{"sentence1": "a", "sentence2": "b", "label": "0"}])
    with pytest.raises(ValueError, match="the CLUE-layout files hold different layouts"):
        load_clue(LabelledConfig(train=str(tnews / "train.json"), test=str(pair)), seed=1)
    (tmp_path / "lines.txt").write_text("新闻\t1\n", encoding="utf-8")
    assert probe_main(["--model", "none", "--tokenizer", "t", "--train", str(tmp_path / "lines.txt"),
                       "--predict", str(tnews / "test.json")]) == 2
    assert "predictions are written for CLUE-layout files" in capsys.readouterr().err
    assert probe_main(["--model", "none", "--tokenizer", "t", "--train", str(tnews / "train.json"),
                       "--test", str(tmp_path / "lines.txt"), "--tasks", "pair"]) == 2
    err = capsys.readouterr().err
    assert "pass its dev file (.json/.jsonl)" in err and "a CLUE-layout file is one task" in err


@pytest.mark.slow  # fine-tunes through transformers.Trainer: 2 seeds x a 2-setting grid x 2 arms
def test_probe_runs_clues_grid_and_writes_the_submission(tiny_run, zh_docs, tmp_path, capsys):
    tnews = _tnews(zh_docs, tmp_path / "tnews")
    out = tmp_path / "result" / "probe.json"
    rc = probe_main(["--model", str(tiny_run / "final_model"), "--train", str(tnews / "train.json"),
                     "--test", str(tnews / "dev.json"), "--predict", str(tnews / "test.json"), "--grid",
                     "--grid_batch_sizes", "16", "--grid_lrs", "1e-3,3e-3", "--num_train_epochs", "4",
                     "--repeats", "2", "--max_length", "32", "--out", str(out)])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    res = json.loads(out.read_text(encoding="utf-8"))
    task = res["tasks"]["tnews"]
    assert task["labels"] == ["101", "102"] and task["train_examples"] == 80 and task["test_examples"] == 30
    assert len(task["runs"]) == 2 * 2 * 2  # seeds x settings x arms
    assert {r["max_steps"] for r in task["runs"]} == {20}  # ceil(4 epochs x 80 / 16)
    row = task["summary"]["1"]
    for arm in ("pretrained", "scratch"):
        best = [max((r for r in task["runs"] if r["arm"] == arm and r["seed"] == s), key=lambda r: r["accuracy"])
                for s in (42, 43)]
        assert row[arm]["accuracy"]["mean"] == pytest.approx(sum(r["accuracy"] for r in best) / 2)
        assert [x["lr"] for x in row[arm]["settings"]] == [r["lr"] for r in best]
    assert "the grid batch {16} x lr {0.001, 0.003}, 4 epochs each" in printed
    assert "tnews task: 80 train / 30 test examples, 2 labels" in printed
    assert "reference: RoBERTa-wwm-ext (base, PaddleNLP's CLUE benchmark, dev accuracy, best of the grid): " \
           "accuracy 0.5808" in printed
    submission = out.parent / "tnews10_predict.json"
    lines = [json.loads(x) for x in submission.read_text(encoding="utf-8").splitlines()]
    assert [x["id"] for x in lines] == list(range(20)) and {x["label"] for x in lines} <= {"101", "102"}
    assert (out.parent / "scratch_tnews10_predict.json").is_file()
    assert task["predictions"]["pretrained"]["file"] == str(submission)
    assert f"predictions of pretrained's best run (seed " in printed
