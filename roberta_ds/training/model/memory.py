"""Memory planning (``--estimate_memory GPUSxNODES``): per-device memory of a run under each ZeRO stage and offload.

Model states (weights, gradients, optimizer state) come from DeepSpeed's own estimators
(``estimate_zero2_model_states_mem_needs``, ``estimate_zero3_model_states_mem_needs``, with their default 1.5x
buffer factor for the CPU side); DeepSpeed has none for ZeRO-1, whose line is DeepSpeed's ZeRO-2 estimate plus
the 16-bit gradients ZeRO-1 does not partition (2 bytes per parameter x (1 - 1/GPUs); Rajbhandari et al. 2020). Activations are an estimate, not a measurement:
per layer 34 x seq x micro batch x hidden bytes in 16-bit (Korthikanti et al. 2022, with a fused attention
kernel that keeps no seq x seq scores, no activation checkpointing), doubled in fp32, plus the LM head's
logits over the masked positions only (15 % of the tokens x vocab, 16-bit logits and fp32 softmax).
"""

from __future__ import annotations

from roberta_ds.reading.masking import MASK_PROB

from dataclasses import dataclass

import torch

GIB = 2**30
MASKED_FRACTION = MASK_PROB


@dataclass(frozen=True)
class Sizes:
    total_params: int
    largest_layer_params: int


def model_sizes(hf_config) -> Sizes:
    """Parameter counts of the model the run builds, on the meta device (no memory, no init time)."""
    from roberta_ds.training.model import SparseMaskedLM
    from transformers import RobertaForMaskedLM

    with torch.device("meta"):
        model = SparseMaskedLM(RobertaForMaskedLM(hf_config))
    # tied weights count once, as DeepSpeed's _all_live estimators count them
    total = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    largest = max(sum(p.numel() for p in m.parameters(recurse=False)) for m in model.modules())
    return Sizes(total, largest)


def parse_world(text: str) -> tuple[int, int]:
    """'8x4' -> (8 GPUs per node, 4 nodes); '8' -> (8, 1)."""
    try:
        parts = [int(x) for x in text.lower().split("x")]
    except ValueError:
        parts = []
    if len(parts) not in (1, 2) or min(parts) < 1:
        raise ValueError(f"--estimate_memory {text!r}: give GPUS_PER_NODE or GPUS_PER_NODExNODES, e.g. 8 or 8x4")
    return parts[0], parts[1] if len(parts) == 2 else 1


def activation_bytes(hf_config, seq_len: int, micro_batch: int, precision: str) -> float:
    h, layers, vocab = hf_config.hidden_size, hf_config.num_hidden_layers, hf_config.vocab_size
    per_layer = 34 * seq_len * micro_batch * h * (2 if precision == "fp32" else 1)
    logits = MASKED_FRACTION * seq_len * micro_batch * vocab * (2 + 4)
    return layers * per_layer + logits


def estimate(hf_config, seq_len: int, micro_batch: int, precision: str, gpus_per_node: int,
             nodes: int) -> list[dict]:
    """One row per ZeRO set-up: model states per GPU and per node's CPU (GiB), activations per GPU (GiB)."""
    from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs
    from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs

    sizes = model_sizes(hf_config)
    p, n = sizes.total_params, gpus_per_node * nodes
    act = activation_bytes(hf_config, seq_len, micro_batch, precision)
    rows = []
    for offload in (False, True):
        cpu, gpu = estimate_zero2_model_states_mem_needs(p, gpus_per_node, nodes, cpu_offload=offload)
        if not offload:
            rows.append(dict(setup="ZeRO-1", gpu=gpu + 2 * p * (1 - 1 / n), cpu=cpu))
        rows.append(dict(setup="ZeRO-2" + (" + offload optimizer" if offload else ""), gpu=gpu, cpu=cpu))
    for offload, params in ((False, False), (True, False), (True, True)):
        cpu, gpu, _ = estimate_zero3_model_states_mem_needs(p, sizes.largest_layer_params, gpus_per_node, nodes,
                                                            cpu_offload=offload, cpu_offload_params=params)
        what = " + offload optimizer and params" if params else (" + offload optimizer" if offload else "")
        rows.append(dict(setup="ZeRO-3" + what, gpu=gpu, cpu=cpu))
    for r in rows:
        r["activations"] = act
    return rows


def report(hf_config, model_size: str, seq_len: int, micro_batch: int, precision: str, world: str) -> str:
    gpus_per_node, nodes = parse_world(world)
    sizes = model_sizes(hf_config)
    rows = estimate(hf_config, seq_len, micro_batch, precision, gpus_per_node, nodes)
    head = (f"memory estimate: {model_size} ({sizes.total_params / 1e6:.1f} M parameters, largest layer "
            f"{sizes.largest_layer_params / 1e6:.1f} M), {gpus_per_node} GPU(s) per node x {nodes} node(s), "
            f"micro batch {micro_batch} x {seq_len} tokens, {precision}")
    lines = [head, f"{'set-up':<36} {'model states/GPU':>16} {'+ activations/GPU':>18} {'CPU/node':>10}"]
    for r in rows:
        cpu = "-" if r["cpu"] is None else f"{r['cpu'] / GIB:.1f} GiB"
        lines.append(f"{r['setup']:<36} {r['gpu'] / GIB:>12.2f} GiB {(r['gpu'] + r['activations']) / GIB:>14.2f} GiB "
                     f"{cpu:>10}")
    lines.append("model states: DeepSpeed's estimators (ZeRO-1: ZeRO-2's plus its unpartitioned 16-bit gradients); "
                 "activations: an estimate (roberta_ds/training/model/memory.py says how), without activation checkpointing. "
                 "Leave ~10-20 % of the GPU for the allocator and communication buffers.")
    return "\n".join(lines)
