"""The hand-off as colleagues meet it: stock transformers Auto classes on the exported model, with sentence pairs,
long articles under truncation=True, and real Chinese punctuation (no roberta-ds code on the reading side)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

PUNCTUATION = "“中国”——新闻…‘测试’"


def test_sentence_pairs_long_articles_and_punctuation_work_in_stock_transformers(tiny_run: Path, zh_docs):
    model_dir = tiny_run / "final_model"
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=2).eval()
    firsts, seconds = [d[:30] for d in zh_docs[:4]], [d[30:70] for d in zh_docs[:4]]
    batch = tok(firsts, seconds, padding=True, truncation=True, return_tensors="pt")
    assert "token_type_ids" not in batch  # one token type in the model: a pair is told apart by [SEP]
    with torch.no_grad():
        assert model(**batch).logits.shape == (4, 2)
    article = "\n".join(zh_docs[:40])  # far longer than the model's positions
    enc = tok(article, truncation=True, return_tensors="pt")
    positions = model.config.max_position_embeddings - 2
    assert enc["input_ids"].shape[1] == positions == tok.model_max_length
    with torch.no_grad():
        model(**enc)
    ids = tok(PUNCTUATION)["input_ids"]
    assert tok.unk_token_id not in ids, tok.convert_ids_to_tokens(ids)


def test_the_bert_export_predicts_what_the_roberta_export_predicts(tiny_run: Path, shard_dir: Path, tmp_path: Path):
    """`export --architecture bert`: a BertForMaskedLM for code written for hfl's checkpoints. Stock Auto classes on
    both exports agree on the top-1 token at >= 99.9 % of the masked positions of the validation split."""
    from transformers import AutoModelForMaskedLM, BertForMaskedLM, BertForSequenceClassification

    from pretrain_helpers import launcher_main
    from roberta_ds.reading.data import ShardStream
    from roberta_ds.reading.masking import EVAL_MASK_SEED, IGNORE_INDEX, Masker, MaskingConfig, sample_rng
    from roberta_ds.shard_format import read_manifest

    bert_dir = tmp_path / "bert"
    assert launcher_main("export")([str(tiny_run / "checkpoints"), str(bert_dir), "--architecture", "bert"]) == 0
    roberta = AutoModelForMaskedLM.from_pretrained(tiny_run / "final_model").eval()
    bert = AutoModelForMaskedLM.from_pretrained(bert_dir).eval()
    assert isinstance(bert, BertForMaskedLM)
    manifest = read_manifest(shard_dir)
    stream = ShardStream(shard_dir, manifest, "validation", 128, EVAL_MASK_SEED, shuffle=False)
    masker = Masker(MaskingConfig(mask_prob=0.15), manifest.tokenizer)
    same = total = 0
    with torch.no_grad():
        for key, ids, ws in stream.epoch(0):
            x, y = masker(ids, ws, sample_rng(EVAL_MASK_SEED, 0, key))
            x = torch.from_numpy(x)[None]
            sel = torch.from_numpy(y != IGNORE_INDEX)
            a = roberta(input_ids=x).logits[0][sel].argmax(-1)
            b = bert(input_ids=x).logits[0][sel].argmax(-1)
            same, total = same + int((a == b).sum()), total + int(sel.sum())
    assert total > 1000 and same / total >= 0.999, (same, total)
    # The pair path of code written for BERT checkpoints: token_type_ids of 1 for the second segment.
    tok = AutoTokenizer.from_pretrained(bert_dir)
    batch = tok(["今天天气很好"], ["明天下雨"], return_tensors="pt")
    assert int(batch["token_type_ids"].max()) == 1
    clf = BertForSequenceClassification.from_pretrained(bert_dir, num_labels=3).eval()
    with torch.no_grad():
        assert clf(**batch).logits.shape == (1, 3)


def test_the_readmes_fine_tuning_snippet_runs_as_it_stands(tiny_run: Path, tmp_path: Path, monkeypatch):
    from pretrain_helpers import ROOT

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("<!-- finetune-snippet -->", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    assert 'model_dir = "runs/demo/run/final_model"' in block
    monkeypatch.chdir(tmp_path)  # the snippet writes ./finetuned
    code = block.replace('"runs/demo/run/final_model"', repr(str(tiny_run / "final_model")))
    exec(compile(code, "README.md (fine-tuning snippet)", "exec"), {})
    assert (tmp_path / "finetuned").is_dir()


def _documents_in_shards(data: Path) -> list[tuple[int, ...]]:
    """Every packed document's token ids, recovered from the shards: each split's sequences without their [CLS],
    joined in order (a long document continues in the next sequence), padding dropped, cut at [SEP]."""
    import numpy as np

    from data_tools.shard_check import raw_samples
    from roberta_ds.shard_format import decode_sample, read_manifest

    m = read_manifest(data)
    tok = m.tokenizer
    docs = []
    for split in m.splits.values():
        stream = []
        for shard in split.shards:
            for sample in raw_samples(data / shard.name):
                ids, _ = decode_sample(sample, m.max_seq_length)
                stream.append(ids[:, 1:].reshape(-1))
        flat = np.concatenate(stream)
        flat = flat[flat != tok.pad_id]  # only the split's last sequence is padded
        cuts = np.flatnonzero(flat == tok.sep_id)
        found = [tuple(int(t) for t in d[:-1]) for d in np.split(flat, cuts + 1)[:-1]]  # each without its [SEP]
        assert len(found) == split.documents
        docs += found
    assert len(docs) == sum(s.documents for s in m.splits.values())
    return docs


@pytest.mark.slow
def test_the_exported_tokenizer_gives_every_inews_document_the_ids_pack_wrote(vocab_dir: Path, tiny_run: Path,
                                                                                tmp_path: Path):
    """One tokenizer from pack to export: stock AutoTokenizer on the export, on each raw inews document (curly
    quotes, dashes, ellipses and all), gives exactly the ids pack wrote for it."""
    from data_tools.cli import main as data_tools_main
    from data_tools.readers import ReaderConfig, ReadStats, read_documents

    data = tmp_path / "inews"
    assert data_tools_main(["pack", "--format", "inews", "--output", str(data), "--tokenizer_path", str(vocab_dir),
                            "--max_seq_length", "512", "--val_fraction", "0.05", "--workers", "2"]) == 0
    packed = set(_documents_in_shards(data))
    tok = AutoTokenizer.from_pretrained(tiny_run / "final_model")  # the export of a run on this vocab
    raw = [d.text for d in read_documents(ReaderConfig(format="inews"), ReadStats())]
    assert len(raw) > 7000
    exported = {tuple(ids[1:-1]) for ids in tok(raw)["input_ids"]} - {()}  # one batch call, as datasets.map does
    assert exported == packed, (len(exported - packed), len(packed - exported))


def test_the_exported_tokenizer_gives_every_thucnews_file_the_ids_pack_wrote(zh_docs, vocab_dir: Path, tiny_run: Path,
                                                                             tmp_path: Path):
    """The same on a THUCNews-layout tree (<category>/<n>.txt: a title line, then paragraphs indented with two
    U+3000, curly quotes, dashes and ellipses as Chinese news writes them): the stock tokenizer on each file's
    text, as a colleague reads it, gives the ids pack wrote for that document."""
    from data_tools.cli import main as data_tools_main

    tree = tmp_path / "THUCNews"
    files = []
    for i, doc in enumerate(zh_docs[:120]):
        title, _, body = doc.partition("\n")
        text = f"{title}\n\u3000\u3000“{body[:400]}”——记者报道…\n\u3000\u3000‘完’\n"
        f = tree / ("体育" if i % 2 else "财经") / f"{i}.txt"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(text, encoding="utf-8")
        files.append(f)
    data = tmp_path / "packed"
    assert data_tools_main(["pack", "--format", "thucnews", "--input", str(tree), "--output", str(data),
                            "--tokenizer_path", str(vocab_dir), "--max_seq_length", "128", "--val_fraction", "0.1"]) == 0
    packed = set(_documents_in_shards(data))
    tok = AutoTokenizer.from_pretrained(tiny_run / "final_model")
    exported = {tuple(ids[1:-1]) for ids in tok([f.read_text(encoding="utf-8") for f in files])["input_ids"]}
    assert len(packed) == 120 and exported == packed, (len(exported - packed), len(packed - exported))
