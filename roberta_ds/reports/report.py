"""Run reports and run comparison, written by the tool instead of by hand (behind launcher/report.py).

    python launcher/report.py RUN                      # RUN/report.md, RUN/loss.png, RUN/report.json
    python launcher/report.py RUN_A RUN_B --out DIR    # side-by-side table + one overlaid curve in DIR

Reads what the trainer writes, through training/observe/ (records, summary): RUN/metrics.jsonl, RUN/summary.json (absent while a
run is unfinished: the report then says so and uses the metrics), RUN/effective_config.json, and the
shard manifest the run names (for the dataset row and the train/validation leak check).
Every number in the tables carries its definition; sanity warnings (roberta_ds.training.observe.sanity) come first.
The picture needs matplotlib (`pip install roberta-ds[demo]`); without it the report is
complete in text (the curve is also a table).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from roberta_ds.training.observe import records as rec
from roberta_ds.training.observe import sanity
from roberta_ds.training.engine.ds_config import peak_lr, zero_stage
from roberta_ds.reading.masking import EVAL_MASKING
from roberta_ds.training.observe import metrics as window_metrics
from roberta_ds.training.observe.records import EVAL_DEFINITIONS, Evaluation, TrainWindow
from roberta_ds.training.observe.summary import SUMMARY_DEFINITIONS, RunSummary, read_summary
from roberta_ds.training.observe.tables import PROBE_COLUMNS, format_value, probe_rows
from roberta_ds.training.run_files import EFFECTIVE_CONFIG_NAME, METRICS_NAME, PROBE_NAME
from roberta_ds.training.loop.schedule import format_duration
from roberta_ds.shard_format import UNIGRAM_DEFINITION, ShardFormatError, read_manifest

CURVE_ROWS = 30
"""At most this many rows in the text version of the loss curve (evenly spaced, last one kept)."""


@dataclass
class Run:
    path: Path
    name: str
    records: list[rec.Record]
    summary: RunSummary | None
    config: dict | None
    manifest: dict | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def train(self) -> list[TrainWindow]:
        return rec.windows(self.records)

    @property
    def evals(self) -> list[Evaluation]:
        return rec.evaluations(self.records)


def load_run(path: str | Path, name: str | None = None) -> Run:
    p = Path(path)
    if not (p / METRICS_NAME).exists():
        raise ValueError(f"{p}: no {METRICS_NAME} (a run directory written by launcher/pretrain.py --output_dir)")
    records = rec.read_metrics(p)
    summary = read_summary(p)
    config = json.loads((p / EFFECTIVE_CONFIG_NAME).read_text()) if (p / EFFECTIVE_CONFIG_NAME).exists() else None
    run = Run(path=p, name=name or p.resolve().name, records=records, summary=summary, config=config)
    data_dir = config["data"]["data_dir"] if config else None
    if data_dir and Path(data_dir).is_dir():
        try:
            run.manifest = read_manifest(data_dir).to_dict()
        except ShardFormatError as e:
            run.warnings.append(f"cannot read the run's shard manifest: {e}")
    run.warnings += sanity.check_run(records, summary, data_dir)
    return run


# ---------------------------------------------------------------------------- the table
def _lr(v) -> str:
    return "—" if v is None else f"{v:g}"


def facts(run: Run) -> list[tuple[str, str, str]]:
    """(quantity, value, definition) rows; from summary.json, or from metrics.jsonl for an unfinished run."""
    s, c, m = run.summary or RunSummary(), run.config or {}, run.manifest
    last_train = run.train[-1] if run.train else None
    last_eval = s.last_eval or (run.evals[-1] if run.evals else None)

    def either(from_summary, from_metrics):
        return from_metrics if from_summary is None else from_summary

    src = (m or {}).get("source") or (c.get("data") or {}).get("source") or {}
    dataset = f"{src.get('format', '?')}" + (f" ({src['input']})" if src.get("input") else "")
    data_dir = (c.get("data") or {}).get("data_dir", "?")
    ds = c.get("deepspeed") or {}
    steps = either(s.steps, last_train and last_train.step)
    spe = (c.get("data") or {}).get("steps_per_epoch")
    epochs = either(s.epochs_completed, steps / spe if steps is not None and spe else None)
    mdl = c.get("model") or {}
    arch = (f"hidden {mdl['hidden_size']}, {mdl['num_hidden_layers']} layers, {mdl['num_attention_heads']} heads"
            if mdl else "—")
    window = either(s.final_window_steps, last_train and last_train.window_steps)
    final_loss = either(s.final_window_loss, last_train and last_train.loss)
    epoch_means = either(s.epoch_mean_loss, rec.epoch_means(run.train))  # unfinished run: from the windows
    done = epochs or 0.0
    epoch_str = ", ".join(f"epoch {k}: {format_value(v)}" + (" (partial)" if int(k) + 1 > done + 1e-9 else "")
                          for k, v in (epoch_means or {}).items()) or "—"
    unigram = unigram_of(run)
    gap = (f" ({unigram - last_eval.loss:.3f} nats below the unigram line)"
           if last_eval and unigram is not None else "")
    col = last_eval.collapse if last_eval else None
    col_str = (f"{'COLLAPSED' if col['collapsed'] else 'not collapsed'}: token cosine {col['token_cosine']:.4f}, "
               f"sequence cosine {col['sequence_cosine']:.4f}, [CLS] spread {col['cls_relative_spread']:.3g}"
               if col else "—")
    ev_where = (f" at step {last_eval.step}, {last_eval.sequences:,} sequences, "
                f"{last_eval.masked_tokens:,} masked tokens" if last_eval else "")
    rows = [
        ("status", "finished" if run.summary else "unfinished (no summary.json): figures from metrics.jsonl",
         "whether the run wrote summary.json at its end"),
        ("dataset", dataset, f"corpus format and input of the shards in {data_dir}"),
        ("documents", format_value(((m or {}).get("splits", {}).get("train") or {}).get("documents",
                                                                                (s.data or {}).get("train_documents"))),
         "documents in the shards' training split (manifest)"),
        ("model", arch, "architecture (effective_config.json)"),
        ("sequences", format_value(either(s.sequences, last_train and last_train.sequences_seen)),
         "training sequences processed = steps x global batch"),
        ("tokens", format_value(either(s.tokens, last_train and last_train.tokens_seen)),
         SUMMARY_DEFINITIONS["tokens"]),
        ("steps", format_value(steps), "optimizer steps"),
        ("epochs", format_value(epochs, 3), "steps / steps per epoch (passes over the training split)"),
        ("batch", f"{format_value(either(s.global_batch, c.get('global_batch')))} x "
                  f"{format_value(either(s.seq_len, (c.get('data') or {}).get('seq_len')))}",
         "global batch (sequences per step = micro x accumulation x ranks) x sequence length"),
        ("lr", _lr(either(s.lr, peak_lr(ds))),
         "peak learning rate (DeepSpeed optimizer lr)"),
        ("precision", str(either(s.precision, c.get("precision", "—"))), "training precision"),
        ("ZeRO stage", format_value(either(s.zero_stage, zero_stage(ds) if ds else None)),
         "DeepSpeed ZeRO stage the run ran at (ZeRO-1/2 run as stage 0 on one fp32 rank)"),
        ("ranks", format_value(either(s.world_size, c.get("world_size"))), "processes (GPUs) in the run"),
        ("initial loss", format_value(either(s.initial_loss, run.train[0].loss if run.train else None)),
         SUMMARY_DEFINITIONS["initial_loss"]),
        ("final loss", format_value(final_loss) + (f" (last {window} steps)" if window else ""),
         f"training loss over the last logging window: {rec.LOSS}"),
        ("epoch mean loss", epoch_str, SUMMARY_DEFINITIONS["epoch_mean_loss"]),
        ("unigram line", format_value(unigram), UNIGRAM_DEFINITION),
        ("held-out loss", format_value(last_eval.loss) + gap if last_eval else "—",
         f"{EVAL_DEFINITIONS['loss']}, on the validation split; masking {EVAL_DEFINITIONS['masking']}{ev_where}"),
        ("perplexity", format_value(last_eval.perplexity, 2) if last_eval else "—", EVAL_DEFINITIONS["perplexity"]),
        ("accuracy", format_value(last_eval.accuracy) if last_eval else "—",
         EVAL_DEFINITIONS["accuracy"]),
        ("collapse check", col_str, EVAL_DEFINITIONS["collapse"]),
        ("wall time", format_duration(s.train_time_s), "training time, excluding evaluation, checkpoints and start-up"),
        ("tokens/s", format_value(s.tokens_per_s), "tokens / wall time"),
    ]
    rows += [(f"{metric.name} (last window)", format_value(last_train.metrics.get(metric.name) if last_train else None),
              metric.definition) for metric in window_metrics.WINDOW_METRICS]
    return rows


def unigram_of(run: Run) -> float | None:
    """The unigram line (shard_format.unigram_line): from the eval records, else from the run's manifest."""
    for e in reversed(run.evals):
        if e.unigram_nats is not None:
            return e.unigram_nats
    u = ((run.manifest or {}).get("corpus") or {}).get("unigram")
    return None if u is None else u["nats"]


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    esc = [[str(x).replace("|", "\\|") for x in r] for r in [header] + rows]
    lines = ["| " + " | ".join(esc[0]) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in esc[1:]]
    return "\n".join(lines)


def curve_table(run: Run) -> str:
    """The loss curve as text: training windows (subsampled) with the held-out loss where one was measured."""
    evals = {e.step: e for e in run.evals}
    unigram = unigram_of(run)
    train = run.train
    if len(train) > CURVE_ROWS:
        idx = sorted({round(i * (len(train) - 1) / (CURVE_ROWS - 1)) for i in range(CURVE_ROWS)})
        train = [train[i] for i in idx]
    steps = sorted({r.step for r in train} | set(evals))
    by_step = {r.step: r for r in train}
    rows = []
    for st in steps:
        r, e = by_step.get(st), evals.get(st)
        tokens = (r or e).tokens_seen
        below = f"{unigram - e.loss:.3f}" if e and unigram is not None else ""
        rows.append([format_value(st), format_value(tokens), format_value(r.loss) if r else "", format_value(r.window_steps) if r else "",
                     format_value(e.loss) if e else "", below])
    return _md_table(["step", "tokens seen", "training loss (window)", "window steps", "held-out loss",
                      "nats below unigram"], rows)


# ---------------------------------------------------------------------------- the picture
def plot_losses(runs: list[Run], out_png: Path) -> str | None:
    """Training windowed loss (lines) and held-out loss (markers) against steps and tokens; None if no matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only, no display
        import matplotlib.pyplot as plt
    except ImportError:
        return "loss.png not drawn: matplotlib is not installed (`pip install matplotlib`, or roberta-ds[demo])"
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), constrained_layout=True)
    for i, run in enumerate(runs):
        color = f"C{i}"
        label = run.name if len(runs) > 1 else "training (window mean)"
        for ax, x in zip(axes, ("step", "tokens_seen")):
            ax.plot([getattr(r, x) for r in run.train], [r.loss for r in run.train], color=color, lw=1.5,
                    label=label if len(runs) == 1 else f"{run.name}: training")
            if run.evals:
                ax.plot([getattr(e, x) for e in run.evals], [e.loss for e in run.evals], color=color, ls="--", marker="o",
                        ms=4, label=f"held-out ({EVAL_MASKING.mask_prob:.0%} mask, fixed seed)" if len(runs) == 1 else f"{run.name}: held-out")
    unigram = unigram_of(runs[0])
    if unigram is not None and all(unigram_of(r) == unigram for r in runs):
        for ax in axes:
            ax.axhline(unigram, color="0.4", ls=":", lw=1.2, label=f"unigram line {unigram:.2f} (no context learned)")
    for ax, xl in zip(axes, ("optimizer step", "training tokens seen")):
        ax.set_xlabel(xl)
        ax.set_ylabel("masked-LM loss (nats per masked token)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    title = runs[0].name if len(runs) == 1 else " vs ".join(r.name for r in runs)
    fig.suptitle(f"{title}: training loss (mean per logging window) and held-out loss")
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return None


# ---------------------------------------------------------------------------- the documents
def _warnings_md(runs: list[Run]) -> str:
    lines = []
    for run in runs:
        prefix = f"**{run.name}**: " if len(runs) > 1 else ""
        lines += [f"- ⚠ {prefix}{w}" for w in run.warnings]
    if not lines:
        return ("None. Checked: loss finite, not flat, not implausibly low for the tokens seen, held-out not far "
                "below training, held-out clear of the unigram line, encoder not collapsed, summary consistent with "
                "metrics.jsonl, no validation document in the training split.")
    return "\n".join(lines)


def single_report(run: Run, picture_note: str | None) -> str:
    rows = [[q, v, d] for q, v, d in facts(run)]
    pic = f"_{picture_note}_" if picture_note else "![loss curve](loss.png)"
    return "\n\n".join([
        f"# Run report: {run.name}",
        f"Run directory `{run.path}`. Written by `python launcher/report.py`.",
        "## Warnings\n\n" + _warnings_md([run]),
        "## Summary\n\n" + _md_table(["quantity", "value", "definition"], rows),
        "## Loss curve\n\n" + pic + "\n\nTraining loss: masked-token-weighted mean cross-entropy over each logging "
        "window (the window is the steps since the previous point). Held-out loss: validation split, masking "
        f"{EVAL_DEFINITIONS['masking']}, measured at that step.",
        "### Curve data\n\n" + curve_table(run),
        *mixture_section(run),
        *probe_section(run),
    ]) + "\n"


def mixture_section(run: Run) -> list[str]:
    """Mixtures and phases: what each source and phase gave, and the last held-out numbers per source and length."""
    s, last = run.summary or RunSummary(), (run.evals[-1] if run.evals else None)
    out = []
    if s.sources:
        mix = {m["name"]: m for m in ((run.config or {}).get("data") or {}).get("mixture") or []}
        total = sum(w["weight"] for w in mix.values()) or 1.0
        ev = (last.sources or {}) if last else {}
        rows = [[n, f"{mix.get(n, {}).get('weight', 0) / total:.1%}", format_value(v["sequences"]),
                 format_value(v["tokens"]), f"{v['tokens'] / max(sum(x['tokens'] for x in s.sources.values()), 1):.1%}",
                 format_value(v["epochs"], 3), format_value(ev.get(n, {}).get("loss"))]
                for n, v in s.sources.items()]
        out.append("## Sources\n\n" + _md_table(
            ["source", "weight", "sequences", "tokens", "share of tokens", "epochs", "held-out loss"], rows)
            + "\n\nWeight: the source's normalised share of every global batch's sequences. Epochs: passes over the "
            f"source's training split. Held-out loss: its validation split at the last evaluation (step "
            f"{last.step if last else '—'}, {last.seq_len if last else '—'} tokens), masking {EVAL_DEFINITIONS['masking']}.")
    if s.phases and len(s.phases) > 1:
        by_len = (last.lengths or {}) if last else {}
        rows = [[str(k + 1), str(p["max_seq_length"]), format_value(p["steps"]), format_value(p["sequences"]),
                 format_value(p["tokens"]), format_value((by_len.get(str(p["max_seq_length"])) or {}).get("loss"))]
                for k, p in enumerate(s.phases)]
        out.append("## Phases\n\n" + _md_table(["phase", "length", "steps", "sequences", "tokens",
                                                  "held-out loss at this length (last evaluation)"], rows))
    return out


def probe_section(run: Run) -> list[str]:
    path = run.path / PROBE_NAME
    if not path.exists():
        return []
    res = json.loads(path.read_text(encoding="utf-8"))
    if "tasks" not in res:
        return _probe_section_v1(res)
    b = res["budget"]
    parts = ["## Downstream probe: did pretraining help?\n\n"
             f"Fine-tuned this run's export with transformers.Trainer (stock AutoTokenizer and "
             f"AutoModelForSequenceClassification: pretrained) and, with the same architecture, tokenizer, data and "
             f"budget ({b['max_steps']} steps x {b['batch_size']}, lr {b['lr']:g}, {b['max_length']} tokens), the "
             f"same classifier from random initialisation (scratch), with seeds {', '.join(map(str, b['seeds']))}. "
             f"Accuracy: {res['definitions']['accuracy']}; macro-F1: {res['definitions']['macro_f1']}; cells: "
             f"{res['definitions']['spread']}."]
    for name, task in res["tasks"].items():
        parts.append(f"### {name} task\n\n{task['train_examples']:,} training and {task['test_examples']:,} test "
                     f"examples, {len(task['labels'])} labels ({task['split']}).\n\n"
                     + _md_table(list(PROBE_COLUMNS), probe_rows(task, minus="−")))
    return parts


def _probe_section_v1(res: dict) -> list[str]:
    """A probe.json written before the probe ran on Trainer with seeds and tasks (one classifier, one seed)."""
    rows = [[name, format_value(a["accuracy"]), format_value(a["macro_f1"]), format_value(a["final_train_loss"])]
            for name, a in res["arms"].items()]
    rows.append(["majority class", format_value(res["majority_accuracy"]), "", ""])
    if res.get("gain"):
        rows.append(["pretrained − scratch", f"{res['gain']['accuracy']:+.4f}", f"{res['gain']['macro_f1']:+.4f}", ""])
    b = res["budget"]
    return ["## Downstream probe: did pretraining help?\n\n"
            f"Fine-tuned a classifier from this run's encoder (pretrained) and, with the same architecture, tokenizer, "
            f"seed, data order and budget ({b['max_steps']} steps x {b['batch_size']}, lr {b['lr']:g}, "
            f"{b['max_length']} tokens), from random initialisation (scratch); {res['train_examples']:,} training and "
            f"{res['test_examples']:,} test examples, {len(res['labels'])} labels ({res['split']}). "
            f"Accuracy: {res['definitions']['accuracy']}; macro-F1: {res['definitions']['macro_f1']}.\n\n"
            + _md_table(["arm", "accuracy", "macro-F1", "final train loss"], rows)]


def comparison_report(runs: list[Run], picture_note: str | None) -> str:
    all_facts = [facts(r) for r in runs]
    rows = [[q, d] + [f[i][1] for f in all_facts] for i, (q, _, d) in enumerate(all_facts[0])]
    pic = f"_{picture_note}_" if picture_note else "![loss curves](loss.png)"
    paths = "\n".join(f"- **{r.name}**: `{r.path}`" for r in runs)
    return "\n\n".join([
        "# Run comparison: " + " vs ".join(r.name for r in runs),
        paths,
        "## Warnings\n\n" + _warnings_md(runs),
        "## Side by side\n\n" + _md_table(["quantity", "definition"] + [r.name for r in runs], rows),
        "Held-out numbers compare only when both runs were evaluated on the same shards and number of sequences "
        "(see the held-out loss definition); to compare on common ground run `launcher/evaluate.py` on each "
        "final model with the same --data_dir and --max_sequences.",
        "## Loss curves\n\n" + pic,
    ]) + "\n"


def write_report(run_dirs: list[str | Path], out: str | Path | None = None) -> list[Path]:
    """Write report.md, report.json and (with matplotlib) loss.png; returns the paths written."""
    if not run_dirs:
        raise ValueError("give at least one run directory")
    names = [Path(p).resolve().name for p in run_dirs]
    if len(set(names)) < len(names):  # runs/a/run and runs/b/run: name them by parent too
        names = [f"{Path(p).resolve().parent.name}/{Path(p).resolve().name}" for p in run_dirs]
    runs = [load_run(p, n) for p, n in zip(run_dirs, names)]
    if out is None:
        if len(runs) > 1:
            raise ValueError("--out DIR is required when comparing several runs")
        out = runs[0].path
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    note = plot_losses(runs, out / "loss.png")
    text = single_report(runs[0], note) if len(runs) == 1 else comparison_report(runs, note)
    written = [out / "report.md", out / "report.json"]
    written[0].write_text(text, encoding="utf-8")
    written[1].write_text(json.dumps(
        {"runs": [{"name": r.name, "path": str(r.path), "warnings": r.warnings,
                   "facts": [{"quantity": q, "value": v, "definition": d} for q, v, d in facts(r)],
                   "summary": r.summary.to_dict() if r.summary else None} for r in runs]},
        indent=1, ensure_ascii=False, default=str), encoding="utf-8")
    if note is None:
        written.append(out / "loss.png")
    return written


if __name__ == "__main__":  # `python -m roberta_ds.reports.report` once ran the command; say where it went instead of doing nothing
    raise SystemExit("roberta_ds.reports.report is a library module: run the command `roberta-ds-report` "
                     "(or `python launcher/report.py` from a checkout); --help lists its flags")
