"""The model card of an exported run: ``final_model/README.md`` in the Hugging Face model-card format.

Written from the run's own records (summary.json, effective_config.json, the shard manifest, probe.json
when a probe ran), so every number on the card is one the run measured, with its definition.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from roberta_ds.training.observe import records
from roberta_ds.training.observe.summary import RunSummary, read_summary
from roberta_ds.training.observe.tables import format_value
from roberta_ds.training.run_files import EFFECTIVE_CONFIG_NAME, PROBE_NAME, SUMMARY_NAME
from roberta_ds.training.engine.checkpoint import read_state
from roberta_ds.training.observe.state import TrainState
from roberta_ds.shard_format import MANIFEST_NAME, UNIGRAM_DEFINITION, read_manifest
from roberta_ds.tokenizer import POSITION_OFFSET

CARD_NAME = "README.md"


def _sha256(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


def model_card(run_dir: str | Path) -> str:
    """The card's text for a finished run directory (RUN/summary.json must exist)."""
    run = Path(run_dir)
    summary = read_summary(run)
    if summary is None:
        raise ValueError(f"{run}: no {SUMMARY_NAME} (the run has not finished): no model card")
    config = json.loads((run / EFFECTIVE_CONFIG_NAME).read_text(encoding="utf-8"))
    probe_path = run / PROBE_NAME
    probe = json.loads(probe_path.read_text(encoding="utf-8")) if probe_path.exists() else None
    return _card(run.resolve().name, summary, config, probe, summary.warnings)


def checkpoint_summary(tag_dir: str | Path) -> tuple[RunSummary, dict]:
    """A checkpoint's numbers in the summary's terms (what the run had done when it saved), and its config."""
    saved = read_state(Path(tag_dir))
    config = saved["config"]
    split = None
    try:
        split = read_manifest(config["data"]["data_dir"]).splits.get("train")
    except (OSError, ValueError):  # the shards moved: the card says so instead of the counts
        pass
    data = None if split is None else {"train_documents": split.documents, "train_tokens": split.tokens}
    return RunSummary.from_state(TrainState.from_dict(saved), config, data=data), config


def checkpoint_model_card(tag_dir: str | Path) -> str:
    """The card's text for one checkpoint (any step of a run, finished or not)."""
    tag_dir = Path(tag_dir).resolve()
    summary, config = checkpoint_summary(tag_dir)
    return _card(f"{tag_dir.parent.parent.name} at {tag_dir.name}", summary, config, None,
                 ["not checked for a checkpoint export (a finished run's summary.json has the run-level checks)"])


def _card(title: str, summary: RunSummary, config: dict, probe: dict | None, warnings: list[str] | None) -> str:
    data = config["data"]
    manifest_path = Path(data["data_dir"]) / MANIFEST_NAME
    source = data.get("source") or {}
    tok = data.get("tokenizer") or {}
    mdl = config["model"]
    ev = summary.last_eval
    col = (ev.collapse or {}) if ev else {}
    front = "\n".join([
        "---",
        "language: zh",
        "library_name: transformers",
        "pipeline_tag: fill-mask",
        "# license: set the license of your data and weights here",
        "tags:",
        "- roberta",
        "- fill-mask",
        "- chinese",
        "- roberta-ds",
        "---",
    ])
    rows = [
        ("corpus", f"{source.get('format', '?')}" + (f" ({source['input']})" if source.get("input") else "")),
        ("shard manifest sha256", _sha256(manifest_path) or f"{manifest_path} no longer exists"),
        ("documents / tokens in the training split", f"{format_value((summary.data or {}).get('train_documents'))} / "
                                                     f"{format_value((summary.data or {}).get('train_tokens'))}"),
        ("tokenizer", f"vocab {format_value(tok.get('vocab_size'))}, sha256 {tok.get('vocab_sha256', '?')}"),
        ("architecture", f"RobertaForMaskedLM, hidden {mdl['hidden_size']}, {mdl['num_hidden_layers']} layers, "
                         f"{mdl['num_attention_heads']} heads, {mdl['max_position_embeddings'] - POSITION_OFFSET} positions"),
        ("training", f"{format_value(summary.steps)} steps x global batch {format_value(summary.global_batch)} x "
                     f"{format_value(summary.seq_len)} tokens; {format_value(summary.tokens)} tokens seen"),
        ("engine", f"DeepSpeed ZeRO stage {summary.zero_stage}, {summary.precision}, {summary.world_size} rank(s), "
                   f"peak lr {summary.lr:g}"),
        ("training wall time", f"{(summary.train_time_s or 0) / 3600:.2f} h"),
        ("held-out loss", (f"{ev.loss:.4f} nats per masked token (perplexity {ev.perplexity:.2f}, accuracy "
                           f"{ev.accuracy:.4f}) on {format_value(ev.sequences)} validation sequences, "
                           f"{records.EVAL_DEFINITIONS['masking']}") if ev else "not measured"),
        ("unigram line", (f"{ev.unigram_nats:.4f} ({UNIGRAM_DEFINITION}); the model is "
                          f"{ev.unigram_nats - ev.loss:.3f} nats below it") if ev and ev.unigram_nats else "—"),
        ("collapse check", (f"{'COLLAPSED' if col.get('collapsed') else 'not collapsed'}: token cosine "
                            f"{col['token_cosine']:.4f}") if col else "—"),
        ("warnings", "; ".join(warnings or []) or "none"),
    ]
    trained, extra = summary.sources or {}, []
    held_out = (ev.sources or {}) if ev else {}
    for m in data.get("mixture") or []:
        got, h = trained.get(m["name"]), held_out.get(m["name"])
        extra.append((f"mixture source {m['name']}",
                        f"{m['dir']}, weight {m['weight']:g}, on_exhausted {m['on_exhausted']}, manifest sha256 "
                        f"{m.get('manifest_sha256', '?')}" + (f"; trained on {format_value(got['sequences'])} "
                        f"sequences, {format_value(got['tokens'])} tokens, {got['epochs']:.3f} epochs"
                        if got else "") + (f"; held-out loss {h['loss']:.4f}" if h else "")))
    if summary.phases and len(summary.phases) > 1:
        extra.append(("phases", "; ".join(f"{p['max_seq_length']} tokens for {format_value(p['steps'])} "
                                          "steps" for p in summary.phases)))
    if summary.continued_from:
        c = summary.continued_from
        extra.append(("continued from", f"{c['checkpoint']} (step {c['step']}, {format_value(c['tokens_seen'])} "
                                        "tokens); weights and optimizer state carried"))
    rows[2:2] = extra
    if probe is not None and "tasks" in probe:
        seeds = probe["budget"]["seeds"]
        for name, task in probe["tasks"].items():
            share, row = list(task["summary"].items())[-1]
            text = ", ".join(f"{arm} {row[arm]['accuracy']['mean']:.4f} acc / {row[arm]['macro_f1']['mean']:.4f} "
                             f"macro-F1" + (" (did not learn)" if row[arm].get("did_not_learn") else "")
                             for arm in ("pretrained", "scratch") if arm in row)
            rows.append((f"downstream probe ({name} task)",
                         f"{task['split']}, {float(share):.0%} of train, mean over {len(seeds)} seed(s): {text}; "
                         f"majority class {task['majority_accuracy']:.4f}"))
    elif probe is not None:
        arms = probe["arms"]
        text = ", ".join(f"{name} {a['accuracy']:.4f} acc / {a['macro_f1']:.4f} macro-F1" for name, a in arms.items())
        rows.append(("downstream probe", f"{probe['split']}: {text}; majority class {probe['majority_accuracy']:.4f}"))
    table = "\n".join(["| | |", "|---|---|"] + [f"| {k} | {str(v).replace('|', '/')} |" for k, v in rows])
    return f"""{front}

# {title}: a Chinese RoBERTa masked LM pretrained with roberta-ds

{table}

Losses are {records.LOSS}. The numbers come from the run's own records (`summary.json`, `metrics.jsonl`, or
the checkpoint's `roberta_ds_state.json`).

## How to use

```python
from transformers import AutoModelForMaskedLM, AutoTokenizer, pipeline

tokenizer = AutoTokenizer.from_pretrained("PATH_TO_THIS_DIRECTORY")
model = AutoModelForMaskedLM.from_pretrained("PATH_TO_THIS_DIRECTORY")
print(pipeline("fill-mask", model=model, tokenizer=tokenizer)("今天北京的天气[MASK]好。"))
```

Loads with transformers 4.40 to 5.x. `AutoTokenizer` reads `tokenizer.json`, whose normalizer maps the characters
the vocab lacks (“ ” ‘ ’ — – ― …) to ones it has, as pretraining did. `vocab.txt` holds the same ids for the slow
`BertTokenizer` and tools that read a vocab file; they (and transformers 5's `BertTokenizer`) apply BERT's normalizer
only, so map those characters first (“ ” to ", ‘ ’ to ', — – ― to -, … to ...). ONNX: `optimum-cli export onnx
--model PATH_TO_THIS_DIRECTORY --task fill-mask onnx/` (optimum-onnx); sentence embeddings:
`SentenceTransformer("PATH_TO_THIS_DIRECTORY")` (mean pooling).
"""


def write_model_card(run_dir: str | Path, model_dir: str | Path) -> Path:
    path = Path(model_dir) / CARD_NAME
    path.write_text(model_card(run_dir), encoding="utf-8")
    return path


def write_checkpoint_model_card(tag_dir: str | Path, model_dir: str | Path) -> Path:
    """The card of an exported checkpoint: the finished run's card when the checkpoint is the run's last
    (it has the run-level checks and the probe), else the checkpoint's own."""
    tag_dir = Path(tag_dir)
    run = tag_dir.parent.parent
    summary = read_summary(run)
    if summary is not None and summary.steps == read_state(tag_dir)["step"]:
        return write_model_card(run, model_dir)
    path = Path(model_dir) / CARD_NAME
    path.write_text(checkpoint_model_card(tag_dir), encoding="utf-8")
    return path
