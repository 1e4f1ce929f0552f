"""Build a pretraining run from its config: the data, the engine settings, the model and the engine.

Everything is checked before the engine starts, and every problem is reported in one message.
The result (``PretrainRun``) is what the trainer's loop (trainer.py) runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from rich.console import Console

from roberta_ds.training.engine import ds_config
from roberta_ds.training.observe import monitor, sanity
from roberta_ds.training import run_files
from roberta_ds.training.config import RunConfig
from roberta_ds.reading.data import Layout, PretrainingData, ShardStream
from roberta_ds.reading.mixture import MixedData, PhaseSpec, Source, load_mixture, parse_phases
from roberta_ds.training.engine import setup as engine_setup
from roberta_ds.training.engine.setup import build_engine, device, init_distributed, optimizer_implementation
from roberta_ds.reading.masking import EVAL_MASK_SEED, Masker
from roberta_ds.training.model import SparseMaskedLM, attention, build_model, roberta_config
from roberta_ds.training.loop.cadence import PROJECTION_PLACEHOLDER
from roberta_ds.training.loop.schedule import TIME_SCHEDULERS
from roberta_ds.shard_format import MANIFEST_NAME, TOKENIZER_DIRNAME, Manifest, read_manifest, sha256_file
from roberta_ds.tokenizer import load_tokenizer, tokenizer_info
from roberta_ds.training.model.hf_adapter import init_from_pretrained, source_token_types

@dataclass
class PretrainRun:
    """A built run: what the trainer needs, nothing it has to look up again."""

    cfg: RunConfig
    rank: int
    world: int
    device: torch.device
    console: Console
    manifest: Manifest
    tokenizer: object
    seq_len: int
    layout: Layout
    train_stream: ShardStream
    data: PretrainingData | MixedData
    eval_stream: ShardStream | None
    ds_cfg: dict
    precision: str
    hf_config: object
    engine: object
    scheduler: object
    total_steps: int
    """Steps of a step-count schedule; PROJECTION_PLACEHOLDER for a time budget until the clock projects it."""
    warm_start_report: dict | None
    data_warnings: list[str]
    sources: list[Source] | None = None
    """Mixtures and phases (MixedData): the sources (one, named after --data_dir, for --phases alone)."""
    eval_streams: dict[int, dict[str, ShardStream]] | None = None
    """Mixtures and phases: validation streams per evaluated length, then per source (the last length is the
    headline one: the run's final phase)."""
    data_limit: tuple[int, str] | None = None
    """The step at which a 'stop' source runs out, and its name (the run ends there)."""
    manifests: list[Manifest] | None = None
    """Mixtures and phases: each source's manifest, in the sources' order."""
    mixture: list[dict] | None = None
    """Mixtures and phases: the sources as configured, each with its manifest's sha256 (read once, at build)."""

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def mixed(self) -> bool:
        return isinstance(self.data, MixedData)

    @property
    def out(self) -> Path:
        return Path(self.cfg.train.output_dir)

    @property
    def ckpt_root(self) -> Path:
        return self.out / run_files.CHECKPOINTS_DIRNAME

    @property
    def budget_s(self) -> float | None:
        return self.cfg.train.time_budget_s

    @property
    def evaluating(self) -> bool:
        return self.eval_stream is not None or bool(self.eval_streams)

    @property
    def data_dir(self) -> Path:
        """The (first) shard directory: --data_dir, or the mixture's first source."""
        return Path(self.sources[0].dir if self.sources else self.cfg.train.data_dir).resolve()

    def data_summary(self) -> dict:
        """The data the run trained on, for its summary: where, from what, and the training split's counts."""
        split = self.manifest.splits["train"]
        out = {"data_dir": str(self.data_dir), "source": self.manifest.source,
               "train_documents": split.documents, "train_sequences": split.sequences, "train_tokens": split.tokens}
        if self.sources and self.cfg.train.mixture:
            splits = [m.splits["train"] for m in self.manifests]
            out.update(train_documents=sum(x.documents for x in splits), train_sequences=sum(x.sequences for x in splits),
                       train_tokens=sum(x.tokens for x in splits), mixture=self.mixture)
        return out

    def phases_record(self) -> list[dict] | None:
        if not self.mixed:
            return None
        return [{"seq_len": p.seq_len, "share": p.share,
                 "start": None if self.data.time_shares and k else p.start}
                for k, p in enumerate(self.data.phases)]

    def coverage_warnings(self) -> list[str]:
        streams = [st for row in self.data.streams for st in row] if self.mixed else [self.train_stream]
        return sorted({w for st in streams if (w := st.shuffle_coverage())})

    def effective_config(self) -> dict:
        """Every setting the run uses, resolved: written to RUN/effective_config.json and into each checkpoint."""
        return {
            "run": self.cfg.to_dict(),
            "deepspeed": self.ds_cfg,
            "model": attention.config_dict(self.hf_config),
            "data": {
                "data_dir": str(self.data_dir),
                "tokenizer": self.manifest.tokenizer.to_dict(),
                "packed_length": self.manifest.max_seq_length,
                "seq_len": self.seq_len,
                "train_sequences": (int(self.data.lengths[0].sum()) if self.mixed else len(self.train_stream)),
                "steps_per_epoch": self.data.steps_per_epoch,
                "dropped_sequences_per_epoch": self.data.dropped_per_epoch,
                "source": self.manifest.source,
                **({"mixture": self.mixture, "phases": self.phases_record()} if self.mixed else {}),
            },
            "world_size": self.world,
            "global_batch": self.layout.global_batch,
            "total_steps": None if self.budget_s is not None else self.total_steps,
            "time_budget_s": self.budget_s,
            "precision": self.precision,
            "optimizer_implementation": optimizer_implementation(self.engine),
            # what the module is, not what was asked: nn.Module.compile() sets _compiled_call_impl
            "encoder_compiled": getattr(self.engine.module.mlm.roberta, "_compiled_call_impl", None) is not None,
            "launcher": engine_setup.LAUNCH.launcher if engine_setup.LAUNCH else None,
        }


def check_time_schedule(raw: dict) -> None:
    """A --time_budget run needs a scheduler whose total steps the clock can set (or none: constant lr)."""
    sched = raw.get("scheduler")
    if sched is None:
        return  # constant lr: the budget only decides where the run stops
    total = sched.get("params", {}).get("total_num_steps")
    if sched.get("type") not in TIME_SCHEDULERS or total != ds_config.AUTO:
        raise ValueError(
            f"--time_budget needs a scheduler whose decay the budget can place: one of {list(TIME_SCHEDULERS)} "
            f"with \"total_num_steps\": \"auto\" (the DeepSpeed config has {sched.get('type')!r} with "
            f"total_num_steps {total!r}); or remove the scheduler section for a constant lr"
        )


def memory_report(cfg: RunConfig) -> str:
    """--estimate_memory: the run's model (from the manifest's vocab and length) under every ZeRO set-up."""
    from roberta_ds.training.model.memory import report

    t = cfg.train
    root = Path(t.data_dir) if t.data_dir else Path(load_mixture(t.mixture)[0].dir)
    manifest = read_manifest(root)
    seq_len = (max(p.seq_len for p in parse_phases(t.phases)) if t.phases else None) or t.max_seq_length \
        or manifest.max_seq_length
    raw = ds_config.load_ds_config(t.ds_config, t.ds_overrides)
    micro, _ = ds_config.batch_layout(raw)
    hf_config = roberta_config(cfg.model, manifest.tokenizer, seq_len)
    return report(hf_config, cfg.model.model_size, seq_len, micro, ds_config.precision(raw), t.estimate_memory)


def _open_source(root: Path) -> tuple[Manifest, object, list[str]]:
    """A shard directory's manifest and tokenizer, and the problems of their pairing."""
    manifest = read_manifest(root)
    tokenizer = load_tokenizer(root / TOKENIZER_DIRNAME)
    conflicts = tokenizer_info(tokenizer, str(root / TOKENIZER_DIRNAME)).conflicts(manifest.tokenizer)
    problems = [f"{root}/tokenizer does not match the manifest:\n  " + "\n  ".join(conflicts)
                + "\nRe-run `python -m data_tools pack` to rebuild the shards."] if conflicts else []
    return manifest, tokenizer, problems


def _check_sources(sources: list[Source], manifests: list[Manifest], phases: list[PhaseSpec], wwm: bool) -> list[str]:
    """What keeps the sources from training together in this run: a tokenizer that differs from the first source's
    (vocab hash, special ids), a phase longer than a source's packed length, --wwm on shards without word starts."""
    problems, named_first = [], False
    for s, m in zip(sources, manifests):
        if s is not sources[0]:
            tokenizer = [f"source {s.name!r}: tokenizer {c}" for c in m.tokenizer.conflicts(manifests[0].tokenizer)]
            if tokenizer and not named_first:
                problems.append(f"(tokenizers are compared with the first source, {sources[0].name!r})")
                named_first = True
            problems += tokenizer
        too_long = sorted({p.seq_len for p in phases if p.seq_len > m.max_seq_length})
        if too_long:
            problems.append(f"source {s.name!r} ({s.dir}) is packed at {m.max_seq_length} tokens, shorter than the "
                            f"run's length(s) {too_long}: re-pack it with --max_seq_length {max(too_long)} (packs at "
                            "the longest length serve every shorter phase)")
        if wwm and not m.wwm:
            problems.append(f"source {s.name!r}: --wwm needs shards packed with --wwm (re-run data_tools pack --wwm)")
    return problems


def _saved_zero_stage(t) -> int | None:
    """The ZeRO stage of the checkpoint this run resumes (or continues from); None for a fresh run."""
    from roberta_ds.training.engine import checkpoint

    tag = checkpoint.resolve_resume(t.resume_from_checkpoint, Path(t.output_dir) / run_files.CHECKPOINTS_DIRNAME)
    if tag is None and t.continue_from:
        tag = checkpoint.find_in_run(t.continue_from)
    if tag is None:
        return None
    return ds_config.zero_stage(checkpoint.read_state(tag)["config"]["deepspeed"])


def build_run(cfg: RunConfig) -> PretrainRun:
    t = cfg.train
    if t.resume_from_checkpoint is None:
        run_files.refuse_used_run_dir(Path(t.output_dir))
    mixed = t.mixture is not None or t.phases is not None
    sources = (load_mixture(t.mixture) if t.mixture else
               [Source(Path(t.data_dir).resolve().name or "data", str(t.data_dir), 1.0)]) if mixed else None
    rank, world, _ = init_distributed()
    console = Console(stderr=False, force_terminal=None)
    root = Path(sources[0].dir if sources else t.data_dir)

    # Data: the manifest is the source of truth for the tokenizer and the packed length.
    manifest, tokenizer, problems = _open_source(root)
    manifests = [manifest]
    for s in (sources or [])[1:]:
        m, _, more = _open_source(Path(s.dir))
        manifests.append(m)
        problems += more
    tok = manifest.tokenizer
    phases = None
    if mixed:
        phases = parse_phases(t.phases) if t.phases else [PhaseSpec(t.max_seq_length or manifest.max_seq_length, 1.0)]
        problems += _check_sources(sources, manifests, phases, cfg.masking.wwm)
    if problems:
        raise ValueError("the training data cannot be used:\n  " + "\n  ".join(problems))
    data_warnings = []
    if rank == 0:
        for s, m in zip(sources or [None], manifests):
            data_warnings += sanity.check_data(Path(s.dir) if s else root, m)
        if sources and len(sources) > 1:
            data_warnings += sanity.check_mixture_leaks([(s.name, Path(s.dir), m) for s, m in zip(sources, manifests)])
    if cfg.masking.wwm and not manifest.wwm:
        raise ValueError(f"--wwm needs shards packed with --wwm; {root} has none (re-run data_tools pack --wwm)")
    seq_len = max(p.seq_len for p in phases) if mixed else (t.max_seq_length or manifest.max_seq_length)

    # Engine config: resolve "auto" against the data (total steps) and the hardware (precision).
    raw = ds_config.load_ds_config(t.ds_config, t.ds_overrides)
    micro, accum = ds_config.batch_layout(raw)
    layout = Layout(micro_batch=micro, grad_accum=accum, world_size=world, rank=rank)
    masker = Masker(cfg.masking, tok)
    data_limit = None
    if mixed:
        data = MixedData(sources, manifests, phases, layout, masker, t.seed, t.shuffle_buffer, t.num_workers)
        train_stream = data.streams[0][0]
    else:
        train_stream = ShardStream(root, manifest, "train", seq_len, t.seed, True, t.shuffle_buffer)
        data = PretrainingData(train_stream, layout, masker, t.seed, t.num_workers)
    if t.time_budget_s is None:
        total_steps = t.max_steps or max(1, round((t.num_train_epochs or 1.0) * data.steps_per_epoch))
        if mixed and not t.max_steps:
            total_steps = data.steps_for_epochs(t.num_train_epochs or 1.0)
        if mixed:
            data.plan_steps(total_steps)
            data_limit = data.limit()
            if data_limit is not None and data_limit[0] < total_steps:
                if data_limit[0] == 0:
                    raise ValueError(f"source {data_limit[1]!r} (on_exhausted: stop) runs out before the first step: "
                                     "raise its max_epochs or let it repeat")
                data_warnings.append(f"source {data_limit[1]!r} runs out after step {data_limit[0]} "
                                     f"(on_exhausted: stop): the run ends there instead of at step {total_steps}, "
                                     "and the lr schedule decays to that step")
                total_steps = data_limit[0]
    else:
        check_time_schedule(raw)
        # A placeholder until the first sync point projects the steps that fit in the budget (schedule.py);
        # until then the run is in warmup.
        total_steps = PROJECTION_PLACEHOLDER
        if mixed:
            data.time_shares = True
            data_limit = data.limit()  # within the first phase; re-computed when the clock starts the next one
    ds_cfg = ds_config.resolve(raw, total_steps=total_steps, world_size=world)
    ds_cfg, stage_note = ds_config.one_rank_stage(ds_cfg, world, _saved_zero_stage(t))
    if stage_note and rank == 0:
        console.print(stage_note)
    problems = monitor.place_outputs(ds_cfg, Path(t.output_dir), is_main=rank == 0)
    if problems:
        raise ds_config.DSConfigError("DeepSpeed config problems:\n  " + "\n  ".join(problems))
    precision = ds_config.precision(ds_cfg)
    ds_config.check_device_precision(ds_cfg)

    # Model: fresh, or warm-started from a Hugging Face directory.
    if problems := attention.problems(cfg.model.attention, device().type, precision):
        raise ValueError("invalid model settings:\n  " + "\n  ".join(problems))
    hf_config = roberta_config(cfg.model, tok, seq_len)
    if t.init_from:  # keep every tensor of the source: its segment rows too (pretraining itself uses type 0)
        hf_config.type_vocab_size = max(hf_config.type_vocab_size, source_token_types(t.init_from))
    mlm = build_model(hf_config, t.seed, cfg.model.position_init)
    warm_start_report = init_from_pretrained(mlm, t.init_from, tok, seq_len) if t.init_from else None
    if cfg.model.compile:
        mlm.roberta.compile()  # in place (nn.Module.compile): parameter names, state dicts and checkpoints unchanged
    engine, scheduler = build_engine(SparseMaskedLM(mlm), ds_cfg)
    # The engine reports the batch layout; check it is what our data layout assumed.
    got = (engine.train_micro_batch_size_per_gpu(), engine.gradient_accumulation_steps())
    if got != (micro, accum):
        raise RuntimeError(f"DeepSpeed batch layout {got} differs from the config's {(micro, accum)}")

    eval_stream, eval_streams = None, None
    if (t.eval_steps or t.eval_time) and mixed:
        eval_streams = _eval_streams(sources, manifests, phases, data_warnings)
    elif t.eval_steps or t.eval_time:
        if "validation" in manifest.splits and manifest.splits["validation"].shards:
            eval_stream = ShardStream(root, manifest, "validation", seq_len, EVAL_MASK_SEED, False)
        else:
            data_warnings.append("--eval_steps set but the shards have no validation split; no held-out evaluation "
                                 "(pack with --val_fraction > 0)")

    return PretrainRun(
        cfg=cfg, rank=rank, world=world, device=device(), console=console, manifest=manifest, tokenizer=tokenizer,
        seq_len=seq_len, layout=layout, train_stream=train_stream, data=data, eval_stream=eval_stream, ds_cfg=ds_cfg,
        precision=precision, hf_config=hf_config, engine=engine, scheduler=scheduler, total_steps=total_steps,
        warm_start_report=warm_start_report, data_warnings=data_warnings, sources=sources,
        eval_streams=eval_streams or None, data_limit=data_limit, manifests=manifests if mixed else None,
        mixture=[{**s.to_dict(), "manifest_sha256": sha256_file(Path(s.dir) / MANIFEST_NAME)} for s in sources]
        if mixed else None,
    )


def _eval_streams(sources: list[Source], manifests: list[Manifest], phases: list[PhaseSpec],
                  warnings: list[str]) -> dict[int, dict[str, ShardStream]]:
    """Each source's validation split at every phase's length (the final phase's length last: the headline)."""
    lengths = list(dict.fromkeys(p.seq_len for p in reversed(phases)))[::-1]
    out: dict[int, dict[str, ShardStream]] = {}
    for L in lengths:
        out[L] = {s.name: ShardStream(Path(s.dir), m, "validation", L, EVAL_MASK_SEED, False)
                  for s, m in zip(sources, manifests)
                  if "validation" in m.splits and m.splits["validation"].shards}
    missing = [s.name for s, m in zip(sources, manifests)
               if not ("validation" in m.splits and m.splits["validation"].shards)]
    if missing:
        warnings.append(f"source(s) {missing} have no validation split: no held-out numbers for them "
                        "(pack with --val_fraction > 0)")
    return {L: d for L, d in out.items() if d}
