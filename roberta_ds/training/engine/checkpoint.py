"""Checkpoints: their layout, saving and resuming, finding one, and reading one back as a Hugging Face model.

Layout of ``RUN/checkpoints/``::

    latest                      tag of the newest complete checkpoint (written by DeepSpeed)
    global_step100/             DeepSpeed's files (model, optimizer shards per rank)
        roberta_ds_state.json   the TrainState (observe/state.py), the data cursor, the exact effective configs;
                                written last, so its presence marks the checkpoint complete
        rng_rank00003.pt        each rank's RNG states (dropout must replay exactly on resume)
        hf_config.json          the model architecture, so any checkpoint exports on its own
        tokenizer/              the tokenizer the model was trained with

Reading a checkpoint back: the fp32 weights are consolidated from DeepSpeed's ZeRO shards (any
stage), loaded into a fresh RobertaForMaskedLM and, for an export, saved with ``save_pretrained``.
We do not use ``zero_to_fp32.py --safe_serialization``: it fails on RoBERTa's tied decoder weights
(docs/design.md), while ``save_pretrained`` knows the tie.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import random
import shutil
from pathlib import Path

import numpy as np
import torch

from roberta_ds.training.engine.collective import any_rank
from roberta_ds.training.model import TIED, attention  # noqa: F401  (TIED re-exported: checkpoint.TIED)
from roberta_ds.owned_dir import MARKER_NAME, claim_dir, record_entries
from roberta_ds.shard_format import TOKENIZER_DIRNAME
from roberta_ds.tokenizer import POSITION_OFFSET, TokenizerInfo, save_handoff_tokenizer

STATE_NAME = "roberta_ds_state.json"
HF_CONFIG_NAME = "hf_config.json"
WRAPPER_PREFIX = "mlm."  # SparseMaskedLM keeps the HF model as .mlm


def tag_for(step: int) -> str:
    return f"global_step{step}"


def rng_state() -> dict:
    """Every RNG's state as tensors, numbers and lists only: it loads with torch.load(weights_only=True), which
    runs no code from the file (a pickle of numpy's or Python's state objects would need the unsafe loader)."""
    version, words, gauss = random.getstate()
    key, np_words, pos, has_gauss, cached = np.random.get_state()
    state = {"python": [version, torch.tensor(words, dtype=torch.int64), gauss],
             "numpy": [key, torch.from_numpy(np_words.astype(np.int64)), pos, has_gauss, cached],
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict) -> None:
    version, words, gauss = state["python"]
    random.setstate((version, tuple(int(w) for w in words.tolist()), gauss))
    key, np_words, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((key, np.asarray(np_words.numpy() if torch.is_tensor(np_words) else np_words, dtype=np.uint32),
                         pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def load_rng_file(path: Path) -> dict:
    """Our RNG file, loaded without running code from it. Files written before v0.2 pickled numpy's state tuple;
    they load only through the unsafe loader, as DeepSpeed's own files do (resume only checkpoints you trust)."""
    try:
        return torch.load(path, weights_only=True)
    except pickle.UnpicklingError:
        logging.getLogger(__name__).warning("%s predates weights_only-safe RNG files: loading it as a pickle", path)
        state = torch.load(path, weights_only=False)
        version, words, gauss = state["python"]
        key, np_words, pos, has_gauss, cached = state["numpy"]
        return {**state, "python": [version, torch.tensor(words, dtype=torch.int64), gauss],
                "numpy": [key, torch.from_numpy(np.asarray(np_words).astype(np.int64)), pos, has_gauss, cached]}


class CheckpointWriteError(RuntimeError):
    """A checkpoint could not be written (disk full, no permission); the earlier ones are intact."""


def _abandon(ckpt_root: Path, tag_dir: Path, previous: Path | None) -> None:
    """Remove a partial checkpoint and point DeepSpeed's ``latest`` back at the newest complete one."""
    shutil.rmtree(tag_dir, ignore_errors=True)  # also frees the space a full disk needs for what follows
    latest = ckpt_root / "latest"
    try:
        if previous is not None:
            latest.write_text(previous.name)
        elif latest.exists():
            latest.unlink()
    except OSError:
        pass


def save(engine, ckpt_root: Path, step: int, state: dict, hf_config, tokenizer, rank: int, keep: int) -> Path:
    """Save on every rank (DeepSpeed requires all ranks to call save_checkpoint).

    A write that fails on any rank (disk full, no permission) raises CheckpointWriteError on every rank,
    after rank 0 removed the partial checkpoint and pointed ``latest`` back at the newest complete one;
    without STATE_NAME a partial checkpoint is never chosen for resume in any case.
    """
    import torch.distributed as dist

    tag = tag_for(step)
    tag_dir = ckpt_root / tag
    previous = find(ckpt_root)
    failure: OSError | None = None
    try:
        engine.save_checkpoint(str(ckpt_root), tag=tag)  # our state goes in STATE_NAME only, once
        torch.save(rng_state(), tag_dir / f"rng_rank{rank:05d}.pt")
        if rank == 0:
            (tag_dir / HF_CONFIG_NAME).write_text(json.dumps(attention.config_dict(hf_config), indent=2,
                                                             sort_keys=True) + "\n")
            tokenizer.save_pretrained(str(tag_dir / TOKENIZER_DIRNAME))
    except OSError as e:
        failure = e
    if not any_rank(failure is not None) and rank == 0:
        try:
            # Written last, once every rank's files exist: its presence is what marks the checkpoint complete.
            tmp = tag_dir / (STATE_NAME + ".tmp")
            tmp.write_text(json.dumps(state, indent=1, ensure_ascii=False))
            os.replace(tmp, tag_dir / STATE_NAME)
        except OSError as e:
            failure = e
    if any_rank(failure is not None):
        if rank == 0:
            _abandon(ckpt_root, tag_dir, previous)
        if dist.is_initialized():
            dist.barrier()
        what = f"{failure.strerror or failure} ({failure.filename})" if failure else "a write failed on another rank"
        raise CheckpointWriteError(
            f"could not write checkpoint {tag_dir}: {what}. Free space or fix the permissions under {ckpt_root}; "
            + (f"the newest complete checkpoint is still {previous} (--resume_from_checkpoint auto picks it)"
               if previous else "no earlier checkpoint exists")
        ) from failure
    if rank == 0 and keep > 0:
        # Only this run's checkpoints: a directory can also hold another run's (copied in to resume from).
        mine = [p for p in list_checkpoints(ckpt_root) if read_state(p).get("run_id", "") == state.get("run_id", "")]
        for old in mine[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    if dist.is_initialized():
        dist.barrier()
    return tag_dir


def list_checkpoints(ckpt_root: Path) -> list[Path]:
    """Complete checkpoints (with our state file), oldest first."""
    if not ckpt_root.exists():
        return []
    found = [p for p in ckpt_root.glob("global_step*") if (p / STATE_NAME).exists()]
    return sorted(found, key=lambda p: int(p.name.removeprefix("global_step")))


def find(path: str | Path) -> Path | None:
    """A complete checkpoint: ``path`` itself (a global_stepN directory), or the newest one in ``path``
    (a checkpoints/ directory); None when there is none."""
    p = Path(path)
    if (p / STATE_NAME).exists():
        return p
    found = list_checkpoints(p)
    return found[-1] if found else None


def find_in_run(path: str | Path) -> Path | None:
    """``find`` of ``path``, or of the checkpoints/ directory of a run directory ``path`` (--continue_from)."""
    from roberta_ds.training.run_files import CHECKPOINTS_DIRNAME

    return find(path) or find(Path(path) / CHECKPOINTS_DIRNAME)


def resolve_resume(arg: str | None, ckpt_root: Path) -> Path | None:
    """'auto' -> the newest complete checkpoint under the run (or None to start fresh); a path -> that checkpoint."""
    if arg is None:
        return None
    if arg == "auto":
        return find(ckpt_root)
    found = find(arg)
    if found is None:
        raise ValueError(
            f"--resume_from_checkpoint {arg}: no checkpoint there (expected a global_stepN directory with "
            f"{STATE_NAME}, or a checkpoints/ directory holding them); use 'auto' to resume the run's latest"
        )
    return found


def resume_conflicts(saved: dict, now: dict) -> list[str]:
    """What keeps a checkpoint (its effective config, ``saved``) from continuing this run (``now``): a different
    tokenizer, sequence length, epoch length, global batch or model shape. Empty when it fits."""
    ours = TokenizerInfo.from_dict(saved["data"]["tokenizer"])
    problems = [f"tokenizer {c}" for c in ours.conflicts(TokenizerInfo.from_dict(now["data"]["tokenizer"]))]
    for key in ("seq_len", "steps_per_epoch"):
        if saved["data"][key] != now["data"][key]:
            problems.append(f"{key}: checkpoint {saved['data'][key]} vs now {now['data'][key]}")
    if saved["global_batch"] != now["global_batch"]:
        problems.append(_global_batch_problem(saved, now))
    problems += _model_conflicts(saved, now)
    old_mix, new_mix = _mixture_key(saved["data"].get("mixture")), _mixture_key(now["data"].get("mixture"))
    if old_mix != new_mix:
        problems.append(f"mixture: checkpoint {_mixture_text(old_mix)} vs now {_mixture_text(new_mix)}")
    old_ph, new_ph = _phases_key(saved["data"].get("phases")), _phases_key(now["data"].get("phases"))
    if old_ph != new_ph:
        problems.append(f"phases: checkpoint {old_ph or 'none'} vs now {new_ph or 'none'}")
    if old_mix != new_mix or old_ph != new_ph:
        problems.append("to train on a new mixture or with new phases from here, start a new run with "
                        "--continue_from CHECKPOINT (weights and optimizer state carried, a new schedule)")
    return problems


def _model_conflicts(saved: dict, now: dict) -> list[str]:
    return [f"model {key}: checkpoint {saved['model'][key]} vs now {now['model'][key]}"
            for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size",
                        "max_position_embeddings", "type_vocab_size")
            if saved["model"].get(key) != now["model"].get(key)]


def continue_conflicts(saved: dict, now: dict) -> list[str]:
    """What keeps a checkpoint's weights and optimizer state from starting this run (--continue_from): a different
    tokenizer or model shape. The data, the schedule and the batch may all change."""
    ours = TokenizerInfo.from_dict(saved["data"]["tokenizer"])
    problems = [f"tokenizer {c}" for c in ours.conflicts(TokenizerInfo.from_dict(now["data"]["tokenizer"]))]
    problems += _model_conflicts(saved, now)
    if any("max_position_embeddings" in p for p in problems):
        problems.append("(the longest --phases length, or --max_seq_length, sets the positions: use the checkpoint's)")
    return problems


def _mixture_key(mixture: list[dict] | None) -> list[tuple] | None:
    """What of a mixture decides the data order: names, directories, weights, exhaustion and the manifests."""
    if not mixture:
        return None
    return [(m["name"], m["dir"], m["weight"], m["on_exhausted"], m.get("max_epochs"), m.get("manifest_sha256"))
            for m in mixture]


def _mixture_text(key: list[tuple] | None) -> str:
    if key is None:
        return "none (--data_dir)"
    return ", ".join(f"{name}={w:g} ({d}{', ' + mode if mode != 'repeat' else ''})" for name, d, w, mode, *_ in key)


def _phases_key(phases: list[dict] | None) -> str | None:
    if not phases:
        return None
    return ",".join(f"{p['seq_len']}:{p['share']:g}" + (f"@{p['start']}" if p.get("start") is not None else "")
                    for p in phases)


def _global_batch_problem(old: dict, now: dict) -> str:
    """The global batch must survive a resume (the data position and the schedule are counted in it); say which
    micro batch and accumulation give the saved one at this world size."""
    gb, world = old["global_batch"], now["world_size"]
    ds = now["deepspeed"]
    text = (f"global batch: checkpoint {gb} vs now {now['global_batch']} = micro "
            f"{ds['train_micro_batch_size_per_gpu']} x accumulation {ds['gradient_accumulation_steps']} x {world} "
            f"rank(s). It must stay the same to continue the data and the schedule exactly")
    if gb % world:
        return text + f"; {gb} sequences do not split evenly over {world} ranks: use a world size that divides {gb}"
    per_rank = gb // world
    accum = next(a for a in range(1, per_rank + 1) if per_rank % a == 0
                 and per_rank // a <= max(ds["train_micro_batch_size_per_gpu"], 1))
    return (text + f": at {world} rank(s) use --ds train_micro_batch_size_per_gpu={per_rank // accum} "
            f"--ds gradient_accumulation_steps={accum}")


def read_state(tag_dir: Path) -> dict:
    return json.loads((tag_dir / STATE_NAME).read_text())


def load(engine, tag_dir: Path, rank: int, *, saved_world: int, world: int, seed: int, schedule: bool = True) -> None:
    """Load engine state (weights, optimizer, scheduler) and the RNG (the JSON record: read_state).

    Saved at this world size: DeepSpeed's checkpoint as it is, and this rank's RNG. Saved at another world size:
    DeepSpeed's universal form of it (``universal``), and an RNG derived from (seed, step, rank) on every rank,
    since the saved ranks' streams do not map onto the new ones.

    ``schedule=False`` (--continue_from): weights and optimizer state only; the engine keeps this run's fresh
    scheduler, step counters and RNG, and the optimizer's groups take the fresh scheduler's lr.
    """
    same, flat = saved_world == world, unpartitioned(tag_dir)
    if same or flat and engine.zero_optimization_stage() == 0:
        load_path = engine.load_checkpoint(str(tag_dir.parent), tag=tag_dir.name, load_lr_scheduler_states=schedule)[0]
    elif flat:
        load_path = _load_unpartitioned(engine, tag_dir, schedule)
    else:
        load_path = _load_universal(engine, universal(tag_dir, rank), schedule)
    if load_path is None:
        raise RuntimeError(f"DeepSpeed could not load the checkpoint at {tag_dir}")
    if not schedule:
        for name in ("global_steps", "global_samples", "micro_steps", "skipped_steps"):
            if hasattr(engine, name):
                setattr(engine, name, 0)
        scheduler = engine.lr_scheduler
        if scheduler is not None:  # the saved groups carry the old run's last lr
            for group, lr in zip(scheduler.optimizer.param_groups, scheduler.get_last_lr()):
                group["lr"] = lr
        return
    if not same:
        derive_rng(seed, int(tag_dir.name.removeprefix("global_step")), rank)
        return
    rng_file = tag_dir / f"rng_rank{rank:05d}.pt"
    if not rng_file.exists():
        raise ValueError(f"{rng_file} is missing: the checkpoint is incomplete")
    set_rng_state(load_rng_file(rng_file))


def unpartitioned(tag_dir: Path) -> bool:
    """A checkpoint saved at ZeRO stage 0 (a one-rank fp32 run: ds_config.one_rank_stage): the module and torch's
    Adam state in one file, no optimizer partitions."""
    return not any(tag_dir.glob("*_optim_states.pt"))


def _load_unpartitioned(engine, tag_dir: Path, schedule: bool = True) -> str | None:
    """A stage-0 checkpoint into a ZeRO-1/2 engine at another world size (DeepSpeed's universal conversion reads
    only partitioned checkpoints). DeepSpeed loads the module, the step counters and the scheduler, and copies the
    weights into its fp32 partitions; Adam's moments and step go into the partitions through DeepSpeed's own
    fragment API (safe_set_full_optimizer_state), parameter by parameter in the order of the optimizer's groups,
    each checked after it is set."""
    from deepspeed.utils import safe_get_full_optimizer_state, safe_set_full_optimizer_state

    from roberta_ds.training.engine.setup import param_groups

    stage = engine.zero_optimization_stage()
    if stage not in (1, 2):
        raise ValueError(f"{tag_dir} was saved by a one-rank fp32 run at ZeRO stage 0 (no optimizer partitions); it "
                         f"resumes on more ranks under ZeRO-1 or -2 (ds_configs/zero1.json, zero2.json), not stage "
                         f"{stage}: resume under zero2 first, then move on from its next checkpoint")
    load_path, _ = engine.load_checkpoint(str(tag_dir.parent), tag=tag_dir.name, load_optimizer_states=False,
                                          load_lr_scheduler_states=schedule)
    if load_path is None:
        return None
    saved = _module_states(tag_dir)["optimizer"]
    params = [p for group in param_groups(engine.module) for p in group["params"]]
    if len(saved["state"]) not in (0, len(params)):
        raise RuntimeError(f"{tag_dir}: optimizer state for {len(saved['state'])} parameters, the model has "
                           f"{len(params)}")
    if not saved["state"]:  # saved before the first update: Adam has no state yet
        return load_path
    zero = engine.optimizer
    base = zero.optimizer
    for group, old in zip(base.param_groups, saved["param_groups"], strict=True):  # the lr the schedule had reached
        group.update({k: old[k] for k in ("lr", "initial_lr") if k in old})
    step = next(iter(saved["state"].values()))["step"]
    for flat in (g["params"][0] for g in base.param_groups):  # torch Adam's state for each flat fp32 partition
        base.state[flat] = {"step": step.clone() if torch.is_tensor(step) else torch.tensor(float(step)),
                            "exp_avg": torch.zeros_like(flat), "exp_avg_sq": torch.zeros_like(flat)}
    zero._lazy_init_hp_params_optimizer_state()  # DeepSpeed links each parameter's fragment of that state
    for i, p in enumerate(params):
        for key in ("exp_avg", "exp_avg_sq"):
            value = saved["state"][i][key].to(torch.float32)
            safe_set_full_optimizer_state(p, value, key)
            if not torch.equal(safe_get_full_optimizer_state(p, key).cpu(), value):
                raise RuntimeError(f"{tag_dir}: Adam's {key} of parameter {i} did not reach the ZeRO partitions")
    return load_path


def _load_universal(engine, universal_dir: Path, schedule: bool = True) -> str | None:
    """Load DeepSpeed's universal checkpoint; returns the path DeepSpeed loaded (None: nothing loaded)."""
    groups = _base_param_groups(engine)
    settings = [{k: v for k, v in g.items() if k not in _GROUP_STATE} for g in groups]
    engine._config.load_universal_checkpoint = True  # what "checkpoint": {"load_universal": true} sets
    try:
        load_path, _ = engine.load_checkpoint(str(universal_dir.parent), tag=universal_dir.name,
                                              load_lr_scheduler_states=schedule)
    finally:
        engine._config.load_universal_checkpoint = False  # later saves and loads are ordinary ones
    # DeepSpeed 0.19's ZeRO-3 universal load gives every parameter group the first group's hyperparameters
    # (our no-decay group came back with weight decay 0.01); they are this run's settings, restore them.
    for group, own in zip(groups, settings):
        group.update(own)
    # It also hands every ZeRO-3 sub-group's state the one 'step' tensor it read; torch's Adam increments each
    # state's step in place, so a shared tensor advanced once per sub-group per step and the bias correction
    # ran ahead (the loss of the first resumed step off by 1e-4). Each state gets its own copy.
    base = getattr(engine.optimizer, "optimizer", engine.optimizer)
    for state in getattr(base, "state", {}).values():
        if torch.is_tensor(state.get("step")):
            state["step"] = state["step"].clone()
    return load_path


_GROUP_STATE = ("params", "lr", "initial_lr", "step")
"""Parameter-group entries that are training state (the checkpoint's); the rest are settings (the run's)."""


def _base_param_groups(engine) -> list[dict]:
    opt = engine.optimizer
    return getattr(opt, "optimizer", opt).param_groups  # ZeRO wraps the torch optimizer


def derive_rng(seed: int, step: int, rank: int) -> None:
    """Every RNG of this rank seeded from (seed, step, rank): the same on every resume at this world size."""
    key = int(np.random.SeedSequence([seed, step, rank]).generate_state(1)[0])
    random.seed(key)
    np.random.seed(key)
    torch.manual_seed(key)  # also seeds CUDA's generators


UNIVERSAL_DIRNAME = "universal"
"""TAG/universal: DeepSpeed's universal checkpoint made from TAG (made once, reused)."""


def universal(tag_dir: Path, rank: int) -> Path:
    """DeepSpeed's universal form of a checkpoint, which loads at any world size: converted once, by rank 0, with
    DeepSpeed's own ``ds_to_universal`` (``--inject_missing_state``: a plain Hugging Face module carries no
    ``universal_checkpoint_info``), kept in TAG/universal and reused by later resumes."""
    import subprocess
    import sys

    out = tag_dir / UNIVERSAL_DIRNAME
    failure = ""
    if rank == 0 and not (out / STATE_NAME).exists():
        tmp = tag_dir / (UNIVERSAL_DIRNAME + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(out, ignore_errors=True)  # a conversion killed half-way
        workers = str(max(1, min(4, os.cpu_count() or 1)))
        cmd = [sys.executable, "-m", "deepspeed.checkpoint.ds_to_universal", "--input_folder", str(tag_dir),
               "--output_folder", str(tmp), "--inject_missing_state", "--num_extract_workers", workers,
               "--num_merge_workers", workers]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            failure = (f"DeepSpeed's ds_to_universal failed (exit {proc.returncode}) on {tag_dir}:\n"
                       + (proc.stdout + proc.stderr)[-3000:] + f"\ncommand: {' '.join(cmd)}")
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            shutil.copy2(tag_dir / STATE_NAME, tmp / STATE_NAME)  # marks the conversion complete
            os.replace(tmp, out)
    if any_rank(bool(failure)):
        raise RuntimeError(failure or "converting the checkpoint to DeepSpeed's universal format failed on rank 0")
    return out


# ---------------------------------------------------------------------------- reading back as Hugging Face
def fp32_state_dict(tag_dir: Path) -> dict[str, torch.Tensor]:
    # ZeRO keeps the fp32 master weights in the optimizer shards ("zero_pp_rank_*" or, with bf16,
    # "bf16_zero_pp_rank_*"); mp_rank_*_model_states.pt holds the module in its training dtype (bf16/fp16).
    if not unpartitioned(tag_dir):
        from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

        # zero_to_fp32 logs every parameter at INFO; keep the export readable.
        logging.getLogger("DeepSpeed").setLevel(logging.WARNING)
        sd = get_fp32_state_dict_from_zero_checkpoint(str(tag_dir.parent), tag=tag_dir.name)
    else:  # no ZeRO partitioning: DeepSpeed keeps the whole module in one file
        sd = _module_states(tag_dir)["module"]
    return {k.removeprefix(WRAPPER_PREFIX): v.float() for k, v in sd.items()}


def _module_states(tag_dir: Path) -> dict:
    """DeepSpeed's mp_rank_00_model_states.pt: the module and, at stage 0, torch's optimizer state."""
    files = sorted(tag_dir.glob("mp_rank_*_model_states.pt"))
    if not files:
        raise FileNotFoundError(f"{tag_dir}: no DeepSpeed model states found")
    return torch.load(files[0], map_location="cpu", weights_only=False)


def model_from_checkpoint(tag_dir: Path):
    """A RobertaForMaskedLM with a checkpoint's consolidated fp32 weights (any ZeRO stage), decoder tied, the
    tokenizer's rows only (a padded vocabulary's padding rows cut: model.core.unpad), with the checkpoint's attention
    kind where it runs here (sdpa otherwise; the kind stays recorded in the config for an export)."""
    from transformers import RobertaConfig, RobertaForMaskedLM

    from roberta_ds.training.model.core import unpad

    config = RobertaConfig.from_json_file(str(tag_dir / HF_CONFIG_NAME))
    trained, here = attention.trained_kind(config), attention.reload_kind(config)
    if here != trained:  # e.g. trained with flash_attention_2, exported on a CPU machine
        setattr(config, attention.RECORD_KEY, trained)
        config._attn_implementation = here
    model = RobertaForMaskedLM(config)
    missing, unexpected = model.load_state_dict(fp32_state_dict(tag_dir), strict=False)
    model.tie_weights()
    bad_missing = [k for k in missing if k not in TIED]
    if bad_missing or unexpected:
        raise RuntimeError(f"checkpoint {tag_dir} does not match its config: missing {bad_missing}, unexpected {unexpected}")
    if model.lm_head.decoder.weight.data_ptr() != model.roberta.embeddings.word_embeddings.weight.data_ptr():
        raise RuntimeError("decoder weight is not tied to the word embeddings after loading")
    return unpad(model)


def export_checkpoint(checkpoint: str | Path, out: str | Path, architecture: str = "roberta") -> Path:
    """Write a checkpoint (a global_stepN directory, or the newest in a checkpoints/ directory) as a
    Hugging Face model directory: save_pretrained weights and config, and the tokenizer. ``architecture``
    "bert" writes a BertForMaskedLM (model/hf_adapter.py) for code written for BERT-architecture checkpoints."""
    from transformers import AutoTokenizer

    tag_dir = find(checkpoint)
    if tag_dir is None:
        raise ValueError(f"{checkpoint}: no checkpoint there (a global_stepN directory with {STATE_NAME}, or a "
                         "checkpoints/ directory holding them)")
    out = Path(out)
    model = model_from_checkpoint(tag_dir)
    kind = attention.trained_kind(model.config)
    positions, types = model.config.max_position_embeddings - POSITION_OFFSET, model.config.type_vocab_size
    if architecture == "bert":
        from roberta_ds.training.model.hf_adapter import roberta_to_bert

        model = roberta_to_bert(model)
        types = model.config.type_vocab_size
    # Never over a colleague's files: only into a new or empty directory, or over an export of ours.
    claim_dir(out, "roberta-ds export", EXPORT_ENTRIES, flag="export directory", what="a roberta-ds export", clean=False)
    model.save_pretrained(str(out))
    attention.record(out, kind)
    tok = AutoTokenizer.from_pretrained(str(tag_dir / TOKENIZER_DIRNAME))
    save_handoff_tokenizer(tok, out, max_tokens=positions, token_types=types,
                           normalize=_packed_with_normalization(tag_dir))
    record_entries(out, "roberta-ds export", EXPORT_ENTRIES | {p.name for p in out.iterdir()} - {MARKER_NAME})
    return out


def adopt_legacy_export(out: Path) -> None:
    """A run's own final_model/ written before exports carried their marker (v0.1): only export files in it, so
    it is this run's export; mark it, so that re-running the finished run exports over it as before."""
    if out.is_dir() and not (out / MARKER_NAME).exists():
        names = {p.name for p in out.iterdir()}
        if names and names <= EXPORT_ENTRIES:
            record_entries(out, "roberta-ds export", names)


def _packed_with_normalization(tag_dir: Path) -> bool:
    """Whether the run's shards were packed with the character table (pack's default; --no_normalize turns it off):
    then the exported tokenizer applies the same table."""
    source = read_state(tag_dir).get("config", {}).get("data", {}).get("source") or {}
    return source.get("options", {}).get("normalize", True) is not False


EXPORT_ENTRIES = {"config.json", "model.safetensors", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                  "special_tokens_map.json", "vocab.txt", "added_tokens.json", "README.md"}
"""What an export writes (save_pretrained of the model and the tokenizer, and the model card)."""
