"""Downstream probe: metric definitions, data formats, deterministic split, both arms on a tiny set."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from data_tools.labelled import read_labelled, stratified_split
from data_tools.normalize import normalize
from data_tools.readers import ReadStats
from roberta_ds.downstream.probe import classification_metrics

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "launcher"))  # as tests/pretrain_helpers.py

from probe import main as probe_main  # noqa: E402  (launcher/probe.py)


def test_metrics_hand_case():
    # gold 0 0 1 1 2, pred 0 1 1 1 0: acc 3/5. label 0: P 1/2 R 1/2 F1 .5; label 1: P 2/3 R 1 F1 .8; label 2: 0.
    m = classification_metrics([0, 0, 1, 1, 2], [0, 1, 1, 1, 0])
    assert m["accuracy"] == pytest.approx(0.6)
    assert m["per_label"][1]["f1"] == pytest.approx(0.8) and m["per_label"][2]["f1"] == 0.0
    assert m["macro_f1"] == pytest.approx((0.5 + 0.8 + 0.0) / 3)


def _labelled(zh_docs: list[str]) -> list[tuple[str, str]]:
    # Two classes a small encoder can tell apart: article openings vs their reversed text.
    out = []
    for i, d in enumerate(zh_docs[:120]):
        text = d.replace("\n", " ")[:40].strip()
        out.append((text, "fwd") if i % 2 else (text[::-1], "rev"))
    return out


def test_formats_and_split(zh_docs, tmp_path):
    pairs = _labelled(zh_docs)
    f = tmp_path / "l.txt"
    f.write_text("".join(f"{t}\t{y}\n" for t, y in pairs), encoding="utf-8")
    assert read_labelled(f) == [(normalize(t)[0], y) for t, y in pairs]  # as data_tools pack normalises
    tree = tmp_path / "tree"
    for i, (t, y) in enumerate(pairs[:10]):
        (tree / y).mkdir(parents=True, exist_ok=True)
        (tree / y / f"{i}.txt").write_text(t + "\n\u3000\u3000正文", encoding="utf-8")
    got = read_labelled(tree)
    assert len(got) == 10 and {y for _, y in got} == {"fwd", "rev"} and got[0][0].endswith("正文")
    train, test = stratified_split(pairs, 0.25, seed=7)
    assert (train, test) == stratified_split(pairs, 0.25, seed=7)
    assert len(test) == 30 and sorted(train + test) == sorted(pairs)
    assert sum(y == "fwd" for _, y in test) == 15
    (tmp_path / "bad.txt").write_text("no tab here\n", encoding="utf-8")
    with pytest.raises(ValueError, match="not text<TAB>label, first at line 1"):
        read_labelled(tmp_path / "bad.txt")


@pytest.mark.slow  # fine-tunes through transformers.Trainer (pretrained and scratch)
def test_probe_pretrained_vs_scratch_on_a_tiny_set(tiny_run, zh_docs, tmp_path, capsys):
    f = tmp_path / "l.txt"
    f.write_text("".join(f"{t}\t{y}\n" for t, y in _labelled(zh_docs)), encoding="utf-8")
    rc = probe_main(["--model", str(tiny_run / "final_model"), "--train", str(f), "--test_fraction", "0.25",
                     "--max_steps", "30", "--batch_size", "16", "--max_length", "32", "--out", str(tmp_path / "p.json")])
    out = capsys.readouterr().out
    assert rc == 0
    res = json.loads((tmp_path / "p.json").read_text())
    assert set(res["arms"]) == {"pretrained", "scratch"}
    assert res["train_examples"] == 90 and res["test_examples"] == 30 and res["labels"] == ["fwd", "rev"]
    for arm in res["arms"].values():
        assert 0.0 <= arm["accuracy"] <= 1.0 and 0.0 <= arm["macro_f1"] <= 1.0
    runs = res["tasks"]["single"]["runs"]
    if all(r["did_not_learn"] is None for r in runs):
        assert res["gain"]["accuracy"] == pytest.approx(res["arms"]["pretrained"]["accuracy"]
                                                        - res["arms"]["scratch"]["accuracy"])
    else:  # an arm that did not learn: no gain reported as if it were a measurement (one seed: no spread to read)
        assert res["gain"] is None and res["gain_measured"].startswith("not measured: ")
        assert "did not learn" in out
    assert res["architecture"]["hidden_size"] == 128 and res["majority_accuracy"] == 0.5
    assert "pretrained - scratch" in out and "the same for every arm" in out
    assert res["fine_tuning"] == "transformers.Trainer" and set(res["tasks"]) == {"single"}  # no articles: no pairs
    # --model none: only the from-scratch arm, architecture from --model_size, tokenizer from --tokenizer.
    rc = probe_main(["--model", "none", "--tokenizer", str(tiny_run / "final_model"), "--model_size", "tiny",
                     "--train", str(f), "--test_fraction", "0.25", "--max_steps", "10", "--batch_size", "16",
                     "--max_length", "32", "--out", str(tmp_path / "n.json")])
    assert rc == 0
    res = json.loads((tmp_path / "n.json").read_text())
    assert set(res["arms"]) == {"scratch"} and res["gain"] is None and res["architecture_from"] == "--model_size tiny"


def test_model_none_needs_a_tokenizer(tmp_path, capsys):
    (tmp_path / "l.txt").write_text("a\tx\n", encoding="utf-8")
    assert probe_main(["--model", "none", "--train", str(tmp_path / "l.txt")]) == 2
    assert "--model none needs --tokenizer" in capsys.readouterr().err


def test_gbk_files_and_curly_quotes_read_like_the_corpus(tmp_path):
    # GBK is common in Chinese corpora; curly quotes are [UNK] in the standard vocab unless normalised.
    tree = tmp_path / "tree"
    (tree / "体育").mkdir(parents=True)
    (tree / "体育" / "1.txt").write_bytes("火箭“大胜”湖人\n\u3000\u3000姚明砍下三十分……\n".encode("gbk"))
    (tree / "体育" / "2.txt").write_bytes(b"")
    (tree / "体育" / "3.txt").write_bytes(b"\x00\x01binary" * 4)
    stats = ReadStats()
    assert read_labelled(tree, stats) == [('火箭"大胜"湖人 姚明砍下三十分......', "体育")]
    assert stats.encodings == {"gb18030": 1} and stats.empty_files == 1 and stats.binary_files_skipped == 1
    f = tmp_path / "l.txt"
    f.write_bytes("他说：“好”\t1\n国足\u3000\u3000热身赛\t2\n".encode("gbk"))
    assert read_labelled(f) == [('他说："好"', "1"), ("国足 热身赛", "2")]


def test_unreadable_input_is_a_clear_error(tmp_path, capsys):
    f = tmp_path / "l.bin"
    f.write_bytes(b"\x00\x01\x02" * 100)
    with pytest.raises(ValueError, match=r"l\.bin: binary file \(NUL bytes in the first 8 KiB\)"):
        read_labelled(f)
    # read before any model or tokenizer is loaded: exit 2 with one line, no traceback
    assert probe_main(["--model", "none", "--tokenizer", "unused", "--train", str(f)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "binary file" in err and "Traceback" not in err


def test_literal_special_token_text_in_examples_is_text(vocab_dir):
    from roberta_ds.downstream.probe import encode
    from roberta_ds.tokenizer import load_tokenizer

    tok = load_tokenizer(vocab_dir)
    ids = encode(tok, ["今天[SEP]天气[PAD]好"], 24)["input_ids"][0]
    real = ids[: ids.index(tok.sep_token_id) + 1]
    assert real[0] == tok.cls_token_id and real.count(tok.sep_token_id) == 1 and tok.pad_token_id not in real


def test_inews_labelled_splits_read_like_the_corpus(capsys):
    """--train inews:train --test inews:test: the embedded corpus' labelled splits, normalised as pack reads them."""
    from data_tools.readers import ReaderConfig, read_documents

    test = read_labelled("inews:test")
    assert 990 <= len(test) <= 999 and {y for _, y in test} == {"0", "1", "2"}
    raw = [d.text for d in read_documents(ReaderConfig(format="inews", inews_splits=("test",)), ReadStats())]
    assert [t for t, _ in test] == [normalize(r)[0] for r in raw if normalize(r)[0]]
    # pack --inews_splits train,dev reads the other two splits only (20 test articles have exact duplicates there).
    kept = [d.meta["split"] for d in read_documents(ReaderConfig(format="inews", inews_splits=("train", "dev")),
                                                    ReadStats())]
    assert set(kept) == {"train", "dev"} and len(kept) == 6354  # the package's train (5,355) and dev (999)
    assert probe_main(["--model", "none", "--tokenizer", "x", "--train", "inews:validation"]) == 2
    assert "--train inews:validation: the inews package has splits train, dev, test" in capsys.readouterr().err
    with pytest.raises(ValueError, match="--inews_splits test,val: choose from train,dev,test"):
        list(read_documents(ReaderConfig(format="inews", inews_splits=("test", "val")), ReadStats()))


def _thucnews_tree(zh_docs: list[str], root: Path) -> Path:
    """A THUCNews-layout tree, <category>/<n>.txt with a title line and a body, two categories of 30 articles."""
    for i, d in enumerate(zh_docs[:60]):
        title, _, body = d.partition("\n")
        (root / ("体育" if i % 2 else "财经")).mkdir(parents=True, exist_ok=True)
        (root / ("体育" if i % 2 else "财经") / f"{i}.txt").write_text(f"{title}\n\u3000\u3000{body}\n", "utf-8")
    return root


def test_the_pair_task_matches_titles_to_articles_of_the_same_class(zh_docs, tmp_path):
    from data_tools.labelled import LabelledConfig, read_titled, title_article_pairs

    tree = _thucnews_tree(zh_docs, tmp_path / "tree")
    articles = read_titled(tree)
    assert len(articles) == 60 and all(t and b for t, b, _ in articles)
    label_of_body = {b: y for _, b, y in articles}
    own = {t: b for t, b, _ in articles}
    pairs = title_article_pairs(articles, seed=5)
    assert pairs == title_article_pairs(articles, seed=5) and pairs != title_article_pairs(articles, seed=6)
    assert len(pairs) == 120 and sum(y == "match" for *_, y in pairs) == 60  # balanced
    for title, body, y in pairs:
        assert (body == own[title]) == (y == "match")
        # the negative is another article of the same class: the class alone cannot tell them apart
        assert label_of_body[body] == label_of_body[own[title]]
    # --pair_negatives any: the mismatch is any other article's body (BERT's next-sentence pairs), here often of the
    # other class; still balanced and never the title's own body
    anyone = title_article_pairs(articles, seed=5, negatives="any")
    assert len(anyone) == 120 and sum(y == "match" for *_, y in anyone) == 60
    assert all((body == own[title]) == (y == "match") for title, body, y in anyone)
    assert 10 < sum(label_of_body[b] != label_of_body[own[t]] for t, b, y in anyone if y == "mismatch") < 50
    with pytest.raises(ValueError, match="no article bodies; the pair task"):
        read_titled(tmp_path / "lines.txt")
    # --tasks auto (the default): the pair task whenever the sources are articles
    (tmp_path / "lines.txt").write_text("标题\t1\n", encoding="utf-8")
    assert LabelledConfig(train=str(tree)).task_names() == ("single", "pair")
    assert LabelledConfig(train="inews:train", test="inews:test").task_names() == ("single", "pair")
    assert LabelledConfig(train=str(tmp_path / "lines.txt")).task_names() == ("single",)


@pytest.mark.slow  # fine-tunes through transformers.Trainer (2 seeds x 2 shares x 2 arms)
def test_probe_runs_the_pair_task_with_seeds_and_shares_from_a_checkpoint(tiny_run, zh_docs, tmp_path, capsys):
    """The pair path colleagues use (Trainer on two segments), from a checkpoint exported on the way, with two
    seeds and two training shares: the summary is the runs' mean and spread, the gain per seed."""
    tree = _thucnews_tree(zh_docs, tmp_path / "tree")
    rc = probe_main(["--model", str(tiny_run / "checkpoints"), "--train", str(tree), "--test_fraction", "0.3",
                     "--tasks", "pair", "--max_steps", "6", "--batch_size", "8", "--max_length", "48", "--repeats", "2",
                     "--train_fractions", "0.5,1", "--out", str(tmp_path / "p.json")])
    out = capsys.readouterr().out
    assert rc == 0, out
    res = json.loads((tmp_path / "p.json").read_text())
    assert set(res["tasks"]) == {"pair"} and res["budget"]["seeds"] == [42, 43]
    pair = res["tasks"]["pair"]
    assert pair["labels"] == ["match", "mismatch"] and pair["test_examples"] == 2 * 18  # 30 % of 60 articles
    assert len(pair["runs"]) == 2 * 2 * 2  # shares x seeds x arms
    half = pair["summary"]["0.5"]
    assert half["train_examples"] == 42  # half of the 84 training pairs
    acc = [r["accuracy"] for r in pair["runs"] if r["train_fraction"] == 0.5 and r["arm"] == "pretrained"]
    assert half["pretrained"]["accuracy"]["mean"] == pytest.approx(sum(acc) / 2)
    assert half["pretrained"]["accuracy"]["std"] == pytest.approx(abs(acc[0] - acc[1]) / 2 ** 0.5)
    gains = [a["accuracy"] - b["accuracy"] for a, b in zip(
        *[[r for r in pair["runs"] if r["train_fraction"] == 0.5 and r["arm"] == arm] for arm in ("pretrained", "scratch")])]
    assert half["gain"]["accuracy"]["mean"] == pytest.approx(sum(gains) / 2)
    assert half["gain_measured"] == "measured" or half["gain_measured"].startswith(("measured (", "not measured: "))
    assert "pair task: 84 train / 36 test examples" in out and " ± " in out
    assert "probe pair, 0.5 of the training examples (42), seed 43, batch 8, lr 0.0005, 6 steps, scratch: accuracy" in out


def test_bad_probe_tasks_and_shares_are_named(tmp_path, capsys):
    (tmp_path / "l.txt").write_text("a\tx\n", encoding="utf-8")
    assert probe_main(["--model", "none", "--tokenizer", "t", "--train", str(tmp_path / "l.txt"), "--tasks", "pair",
                       "--train_fractions", "0,1.5", "--repeats", "0"]) == 2
    err = capsys.readouterr().err
    assert "--tasks pair: " in err and "no article bodies" in err
    assert "--train_fractions 0,1.5: shares in (0, 1]" in err and "--repeats 0: must be >= 1" in err


def _run(arm: str, seed: int, acc: float, why: str | None = None, batch: int = 32, lr: float = 5e-4) -> dict:
    return {"arm": arm, "seed": seed, "train_fraction": 1.0, "train_examples": 100, "accuracy": acc, "macro_f1": acc,
            "batch_size": batch, "lr": lr, "max_steps": 10, "did_not_learn": why}


def test_an_arm_that_did_not_learn_is_named_and_its_gain_is_not_measured():
    """The pair task that both arms answered with one class once showed 'gain +0.0000' as a measurement."""
    from roberta_ds.downstream.probe import did_not_learn, summarize
    from roberta_ds.training.observe.tables import probe_rows

    assert did_not_learn([1] * 200, 0.5, 0.5) == "predicts one class"
    # 200 test examples, majority 0.5: noise bar 0.5 + 2 * sqrt(0.25 / 200) = 0.5707
    assert did_not_learn([0, 1] * 100, 0.56, 0.5).startswith("accuracy 0.5600 within noise of the majority class (0.5000")
    assert did_not_learn([0, 1] * 100, 0.58, 0.5) is None
    one_class = "predicts one class"
    row = summarize([_run("pretrained", 42, 0.5, one_class), _run("scratch", 42, 0.5, one_class)])["1"]
    assert row["gain_measured"] == ("not measured: pretrained did not learn (seed 42); scratch did not learn (seed 42)")
    rows = probe_rows({"summary": {"1": row}, "majority_accuracy": 0.5})
    assert rows[0][1] == "pretrained: did not learn (seed 42: one class)"
    assert rows[2][1:3] == ["pretrained - scratch", row["gain_measured"]]  # not "+0.0000"
    # scratch fails on every seed, the pretrained arm is far above it on every seed: the gain is outside the spread
    runs = [_run("pretrained", s, a) for s, a in ((42, 0.80), (43, 0.82), (44, 0.81))]
    runs += [_run("scratch", s, 0.5, one_class) for s in (42, 43, 44)]
    row = summarize(runs)["1"]
    assert row["gain_measured"] == "measured (outside the seeds' spread)"
    assert probe_rows({"summary": {"1": row}, "majority_accuracy": 0.5})[-2][2].startswith("+0.3100 ± ")
    both = summarize([_run("pretrained", 42, 0.8), _run("scratch", 42, 0.7)])["1"]
    assert both["gain_measured"] == "measured" and both["gain"]["accuracy"]["mean"] == pytest.approx(0.1)


def test_the_grid_keeps_each_seeds_best_setting():
    """CLUE's protocol: per arm and seed, the best test (dev) accuracy over the grid; mean and spread over seeds."""
    from roberta_ds.downstream.probe import summarize
    from roberta_ds.downstream.probe_config import BudgetConfig

    budget = BudgetConfig(grid=True, grid_batch_sizes=("16", "32"), grid_lrs=("2e-5", "3e-5"))
    assert budget.settings() == [(16, 2e-5), (16, 3e-5), (32, 2e-5), (32, 3e-5)]
    assert budget.epochs == 3.0 and budget.steps(32, 1000) == 94  # ceil(3 * 1000 / 32)
    runs = [_run("pretrained", 42, a, batch=b, lr=lr) for (b, lr), a in zip(budget.settings(), (0.6, 0.7, 0.65, 0.62))]
    runs += [_run("pretrained", 43, a, batch=b, lr=lr) for (b, lr), a in zip(budget.settings(), (0.66, 0.61, 0.6, 0.6))]
    row = summarize(runs)["1"]
    assert row["pretrained"]["accuracy"]["mean"] == pytest.approx(0.68)
    assert row["pretrained"]["settings"] == [{"seed": 42, "batch_size": 16, "lr": 3e-5, "max_steps": 10},
                                             {"seed": 43, "batch_size": 16, "lr": 2e-5, "max_steps": 10}]
    with pytest.raises(ValueError, match="--grid with --train_fractions"):
        BudgetConfig(grid=True, train_fractions=("0.5",))
    with pytest.raises(ValueError, match="--arms both"):
        BudgetConfig(arms=("both",))
