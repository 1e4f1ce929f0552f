"""Does an exported model work in the client a colleague runs? Load it the way each client loads a hub checkpoint,
in whatever environment this runs in, and print what each one gives.

    python launcher/check_clients.py RUN/final_model                      # what is installed here
    python launcher/check_clients.py RUN/final_model --clients transformers,onnx --out clients.json

Checks (each reported as ok, failed with the error, or not installed):
  transformers           AutoTokenizer (and that the character table applies), fill-mask through ``pipeline``,
                         a sentence-pair batch truncated at the model's length through
                         AutoModelForSequenceClassification, and the slow ``BertTokenizer`` from vocab.txt giving the
                         fast tokenizer's ids on every vocab entry
  onnx                   optimum's ONNX export (ORTModelForMaskedLM, export=True); onnxruntime's logits against
                         torch's on the same batch (max |difference| over the real tokens, at most --onnx_tolerance)
  sentence-transformers  SentenceTransformer(DIR).encode (mean pooling over the encoder's last layer)

Stock libraries only: nothing of roberta-ds is imported (but the package's stdlib-only __init__ files), so the check runs in a colleague's environment (transformers
4.40 to 5.x) from a checkout that was never installed. ``--out`` writes the results and the masked-LM logits of a
fixed batch (``--logits FILE.npy``), so two environments' predictions can be compared number for number.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
import traceback
from pathlib import Path

CLIENTS = ("transformers", "onnx", "sentence-transformers")
INSTALL = {"onnx": "pip install optimum-onnx onnxruntime  (optimum-onnx 0.1 needs transformers < 4.58)",
           "sentence-transformers": "pip install sentence-transformers"}
PUNCTUATION = "“中国”——新闻…‘测试’"
"""Characters the standard Chinese BERT vocab lacks; the export's tokenizer maps them (its character table)."""
FILL = "今天北京的天气[MASK]好。"
PAIRS = (["北京举行新闻发布会", "股市今日大幅上涨" * 40], ["记者从会上获悉，本市将新建三所学校。", "分析人士认为，资金面趋于宽松。" * 40])
"""Two title/body pairs; the second far longer than any model's positions (truncation=True must cut it)."""


def check_transformers(model_dir: Path) -> dict:
    import torch
    import transformers
    from transformers import (AutoModelForMaskedLM, AutoModelForSequenceClassification, AutoTokenizer,
                              BertTokenizer, pipeline)

    tok = AutoTokenizer.from_pretrained(model_dir)
    ids = tok(PUNCTUATION)["input_ids"]
    unknown = [t for t, i in zip(tok.convert_ids_to_tokens(ids), ids) if i == tok.unk_token_id]
    fill = pipeline("fill-mask", model=str(model_dir), tokenizer=tok, device=-1)(FILL)
    clf = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=2).eval()
    batch = tok(*PAIRS, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        logits = clf(**batch).logits
    slow = BertTokenizer.from_pretrained(model_dir)
    vocab = tok.get_vocab()
    wrong = [t for t, i in vocab.items() if slow.convert_tokens_to_ids(t) != i]
    plain = "北京举行新闻发布会，记者从会上获悉。"
    out = {
        "transformers": transformers.__version__, "tokenizer_class": type(tok).__name__,
        "punctuation_unknown": unknown,
        "fill_mask": [(r["token_str"], round(float(r["score"]), 4)) for r in fill[:3]],
        "pair_batch": {k: list(v.shape) for k, v in batch.items()}, "pair_logits_shape": list(logits.shape),
        "model_max_length": tok.model_max_length,
        "slow_tokenizer": type(slow).__name__, "slow_vocab_mismatches": len(wrong),
        "slow_equals_fast": slow(plain)["input_ids"] == tok(plain)["input_ids"],
    }
    problems = []
    if unknown:
        problems.append(f"the character table is not applied: {PUNCTUATION!r} gives [UNK] for {unknown}")
    if batch["input_ids"].shape[1] > tok.model_max_length:
        problems.append(f"truncation=True left {batch['input_ids'].shape[1]} tokens > {tok.model_max_length}")
    if wrong or not out["slow_equals_fast"]:
        problems.append(f"the slow BertTokenizer (vocab.txt) disagrees with the fast one: {len(wrong)} vocab ids, "
                        f"sample {slow(plain)['input_ids']} != {tok(plain)['input_ids']}")
    mlm = AutoModelForMaskedLM.from_pretrained(model_dir).eval()
    with torch.no_grad():
        out["_logits"] = mlm(**_mlm_batch(tok)).logits.numpy()
    return _result(out, problems)


def _mlm_batch(tok):
    return tok([FILL, PUNCTUATION * 3, PAIRS[1][1]], padding=True, truncation=True, return_tensors="pt")


def check_onnx(model_dir: Path, tolerance: float) -> dict:
    import numpy as np
    import torch
    from optimum.onnxruntime import ORTModelForMaskedLM
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    t0 = time.perf_counter()
    ort = ORTModelForMaskedLM.from_pretrained(model_dir, export=True)
    export_s = time.perf_counter() - t0
    tok = AutoTokenizer.from_pretrained(model_dir)
    batch = _mlm_batch(tok)
    with torch.no_grad():
        want = AutoModelForMaskedLM.from_pretrained(model_dir).eval()(**batch).logits.numpy()
    got = np.asarray(ort(**batch).logits)
    real = batch["attention_mask"].numpy().astype(bool)
    diff = float(np.abs(got - want)[real].max())
    out = {"export_s": round(export_s, 2), "max_abs_logit_difference": diff, "tolerance": tolerance,
           "compared": f"{int(real.sum())} real tokens x {want.shape[-1]} logits"}
    return _result(out, [] if diff <= tolerance else [f"onnxruntime's logits differ from torch's by {diff:.3g} "
                                                      f"> {tolerance:g}"])


def check_sentence_transformers(model_dir: Path) -> dict:
    import numpy as np
    import sentence_transformers
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(model_dir), device="cpu")
    texts = [PAIRS[0][0], PAIRS[1][0], PUNCTUATION]
    emb = model.encode(texts, normalize_embeddings=True)
    out = {"sentence_transformers": sentence_transformers.__version__, "shape": list(emb.shape),
           "cosine": [[round(float(x), 4) for x in row] for row in emb @ emb.T]}
    return _result(out, [] if np.isfinite(emb).all() else ["non-finite embeddings"])


def _result(out: dict, problems: list[str]) -> dict:
    return {"status": "failed" if problems else "ok", "problems": problems, **out}


def run(model_dir: Path, clients: set[str] | None, tolerance: float) -> dict:
    """Each client in ``clients`` (it must be installed), or with None every client installed here."""
    checks = {"transformers": lambda: check_transformers(model_dir),
              "onnx": lambda: check_onnx(model_dir, tolerance),
              "sentence-transformers": lambda: check_sentence_transformers(model_dir)}
    modules = {"transformers": "transformers", "onnx": "optimum.onnxruntime",
               "sentence-transformers": "sentence_transformers"}
    results = {}
    for name, check in checks.items():
        if clients is not None and name not in clients:
            continue
        if importlib.util.find_spec(modules[name].split(".")[0]) is None:
            results[name] = {"status": "not installed" if clients is None else "failed",
                             "problems": [f"{modules[name]} is not installed: {INSTALL.get(name, '')}"]}
            continue
        try:
            results[name] = check()
        except Exception as e:  # a client's failure is the finding: report it whole and go on to the next client
            results[name] = {"status": "failed", "problems": [f"{type(e).__name__}: {e}"],
                             "traceback": traceback.format_exc(limit=-4)}
    return results


def _quiet() -> None:
    """The clients' load reports (the MLM head left out of a classifier, and so on) and progress bars would bury the
    results: errors only."""
    import os

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:
        pass


def main(argv: list[str] | None = None) -> int:
    from roberta_ds.commands import prog  # the package's __init__ and this: stdlib only

    p = argparse.ArgumentParser(prog=prog("check_clients"), description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 2)[2])
    p.add_argument("model", help="an exported model directory (RUN/final_model, or `launcher/export.py` output)")
    p.add_argument("--clients", help=f"comma-separated clients to check, each of which must be installed ("
                                     f"{', '.join(CLIENTS)}); default: every one installed here")
    p.add_argument("--onnx_tolerance", type=float, default=1e-3, help="largest |onnxruntime - torch| logit allowed")
    p.add_argument("--out", help="also write the results as JSON here")
    p.add_argument("--logits", help="also write the masked-LM logits of the fixed batch here (.npy)")
    args = p.parse_args(argv)
    model_dir = Path(args.model)
    clients = {c.strip() for c in args.clients.split(",") if c.strip()} if args.clients else None
    problems = [f"--clients {c}: choose from {', '.join(CLIENTS)}" for c in sorted((clients or set()) - set(CLIENTS))]
    if not (model_dir / "config.json").is_file():
        problems.append(f"{model_dir}: no config.json there; pass an exported model directory (RUN/final_model)")
    if problems:
        print("error: " + "\n  ".join(problems), file=sys.stderr)
        return 2
    _quiet()
    results = run(model_dir, clients, args.onnx_tolerance)
    logits = results.get("transformers", {}).pop("_logits", None)
    if args.logits and logits is not None:
        import numpy as np

        np.save(args.logits, logits)
    for name, r in results.items():
        shown = {k: v for k, v in r.items() if k not in ("status", "problems", "traceback")}
        print(f"{name}: {r['status']}" + (f" — {'; '.join(r['problems'])}" if r["problems"] else ""))
        for k, v in shown.items():
            print(f"  {k}: {json.dumps(v, ensure_ascii=False)}")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    failed = [n for n, r in results.items() if r["status"] == "failed"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
