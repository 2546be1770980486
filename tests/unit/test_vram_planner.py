# Copyright: homelab.gpu_stack contributors
# Apache License 2.0 (see LICENSE)
"""The VRAM planner's arithmetic and choices (the real-vLLM check is tests/e2e)."""

import os
import re
import sys

import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.homelab.gpu_stack.plugins.filter.vllm import vllm_args, vram_plan
from ansible_collections.homelab.gpu_stack.plugins.module_utils import model_config as mc
from ansible_collections.homelab.gpu_stack.plugins.module_utils import vram_planner as vp

GIB = 1 << 30

# The shapes (config.json and checkpoint size) of the models the H100 runs served.
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "gpu"))
import gen_models  # noqa: E402

QWEN05 = dict(name="qwen2.5-0.5b", num_layers=24, num_attention_heads=14, num_kv_heads=2, head_dim=64,
              hidden_size=896, intermediate_size=4864, vocab_size=151936, tie_word_embeddings=True,
              max_position_embeddings=32768, params_b=0.494)
LLAMA8 = dict(name="llama-3.1-8b", num_layers=32, num_attention_heads=32, num_kv_heads=8, head_dim=128,
              hidden_size=4096, intermediate_size=14336, vocab_size=128256, max_position_embeddings=131072,
              params_b=8.03)
QWEN14 = dict(name="qwen2.5-14b", num_layers=48, num_attention_heads=40, num_kv_heads=8, head_dim=128,
              hidden_size=5120, intermediate_size=13824, vocab_size=152064, max_position_embeddings=32768,
              params_b=14.77)


def test_bytes_per_token_is_two_x_layers_x_kv_heads_x_head_dim_x_dtype():
    assert vp.kv_bytes_per_token(LLAMA8) == 2 * 32 * 8 * 128 * 2 == 131072
    assert vp.kv_bytes_per_token(LLAMA8, dtype="float32") == 262144
    assert vp.kv_bytes_per_token(LLAMA8, kv_cache_dtype="fp8") == 65536
    # KV heads split over tensor-parallel ranks, replicated when fewer than ranks.
    assert vp.kv_bytes_per_token(LLAMA8, tensor_parallel_size=2) == 65536
    assert vp.kv_bytes_per_token(QWEN05, tensor_parallel_size=4) == 2 * 24 * 1 * 64 * 2


def test_matches_the_h100_run_at_vllms_large_card_defaults():
    """vLLM 0.26 on an H100 (../shared/gpu-vllm): util 0.15 and vLLM's defaults for a
    card of >= 70 GiB (8192 batched tokens, 1024 sequences) -> 906,992 KV tokens.
    The activation constants come from the home-card matrix at 2048 tokens
    (test below); this run checks them at another token budget."""
    # nvidia-smi memory.total; CUDA saw 81079 MiB (480 reserved, estimated 640)
    plan = vp.plan(QWEN05, 81559, gpu_memory_utilization=0.15, max_num_batched_tokens=8192,
                   max_num_seqs_cap=1024)
    assert plan["weight_gib"] == pytest.approx(0.93, abs=0.02)
    assert plan["kv_cache_tokens"] == pytest.approx(906992, rel=0.03)
    assert plan["max_model_len"] <= 906992


# What vLLM 0.26 printed for the first start (empty compile cache) of each shape
# in the H100 home-card matrix (tests/gpu/results/matrix_run1.json, 2048 batched
# tokens): "Model loading took W GiB" and "P GiB for peak activation", or, for a
# server that refused to start, budget - available KV = non-KV memory.
H100_FIRST_STARTS = [
    # model, card, vLLM weights GiB, vLLM non-KV GiB (weights + peak + 0.22 non-torch)
    ("llama-3.1-8b", "24gb", 15.0, 16.24),
    ("llama-3.1-8b-awq", "12gb", 5.49, 6.72),
    ("qwen2.5-14b-awq", "24gb", 9.53, 11.25),
    ("qwen2.5-0.5b", "12gb", 0.93, 1.41),
    ("qwen2.5-3b", "12gb", 5.79, 6.61),
    ("qwen2.5-7b-awq", "16gb", 5.40, 6.67),
]


@pytest.mark.parametrize("model,card,vllm_weights,vllm_non_kv", H100_FIRST_STARTS)
def test_non_kv_memory_matches_vllms_first_start(model, card, vllm_weights, vllm_non_kv):
    cards = {"12gb": 12288, "16gb": 16380, "24gb": 24564}
    _cfg, _dtype, quant, _src = gen_models.MODELS[model]
    shape = mc.shape_from_hf_config(gen_models.hf_config(model), gen_models.checkpoint_bytes(model))
    plan = vp.plan(shape, cards[card], dtype="float16" if quant else "auto",
                   quantization="awq_marlin" if quant else None, cuda_reserved_mib=0)
    # AWQ loads 2.6-4.0% above its files; one factor (1.03) covers all three.
    assert plan["weight_bytes"] / GIB == pytest.approx(vllm_weights, abs=0.07)
    non_kv = (plan["weight_bytes"] + plan["activation_bytes"] + plan["non_torch_bytes"]) / GIB
    # P4 allows 3% of the smallest KV cache in the matrix (3.31 GiB): 0.099 GiB.
    assert non_kv == pytest.approx(vllm_non_kv, abs=0.09)


def test_llama8b_on_24gb_card():
    plan = vp.plan(LLAMA8, 24564)
    assert 0.90 <= plan["gpu_memory_utilization"] <= 0.95
    assert plan["weight_gib"] == pytest.approx(14.96, abs=0.05)
    # vLLM refuses a max_model_len the cache cannot hold once.
    assert plan["max_model_len"] <= plan["kv_cache_tokens"]
    assert plan["max_model_len"] < LLAMA8["max_position_embeddings"]
    # Enough sequences for a concurrency of 32 (the benchmark's), a multiple of 8.
    assert plan["max_num_seqs"] >= 32 and plan["max_num_seqs"] % 8 == 0
    assert plan["kv_cache_tokens"] >= plan["max_num_seqs"] * 512


def test_model_max_wins_when_the_cache_is_large():
    plan = vp.plan(QWEN05, 81559)
    assert plan["max_model_len"] == 32768
    assert plan["max_num_seqs"] == 256


def test_refuses_a_model_that_cannot_fit_with_the_numbers():
    with pytest.raises(vp.PlanError) as err:
        vp.plan(QWEN14, 24564)
    message = str(err.value)
    assert "qwen2.5-14b does not fit" in message
    assert "weights 27.51 GiB" in message and "24564 MiB" in message


def test_quantized_8b_fits_a_12gb_card():
    plan = vp.plan(LLAMA8, 12288, quantization="awq_marlin", dtype="float16")
    assert 5.0 < plan["weight_gib"] < 6.0
    assert plan["kv_cache_tokens"] > 16384


def test_tensor_parallel_halves_weights_per_gpu():
    one = vp.plan(QWEN14, 81559)
    two = vp.plan(QWEN14, 81559, tensor_parallel_size=2)
    assert two["weight_bytes"] == pytest.approx(one["weight_bytes"] / 2, rel=0.001)
    assert two["kv_bytes_per_token"] == one["kv_bytes_per_token"] // 2


def test_context_above_the_model_maximum():
    with pytest.raises(vp.PlanError, match=r"context_length 65536 is above the model's maximum 32768"):
        vp.plan(QWEN05, 24564, context_length=65536)


def test_context_above_the_kv_budget():
    with pytest.raises(vp.PlanError, match=r"context_length 131072 needs 16.00 GiB of KV cache"):
        vp.plan(LLAMA8, 24564, context_length=131072)


def test_explicit_context_is_kept():
    assert vp.plan(LLAMA8, 24564, context_length=8192)["max_model_len"] == 8192


def test_shape_gaps_are_named():
    with pytest.raises(vp.PlanError, match="lacks num_kv_heads, head_dim"):
        vp.plan({"num_layers": 2, "num_attention_heads": 4, "hidden_size": 128, "params_b": 1}, 12288)


def test_unknown_tunable_is_refused():
    with pytest.raises(vp.PlanError, match="vllm_planner_tunables: unknown max_seqs"):
        vp.plan(QWEN05, 12288, max_seqs=4)


def test_hf_config_shape():
    llama = {"model_type": "llama", "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 4,
             "hidden_size": 128, "head_dim": 16, "vocab_size": 500, "max_position_embeddings": 2048,
             "torch_dtype": "bfloat16"}
    assert mc.shape_from_hf_config(llama)["head_dim"] == 16
    # vLLM's Qwen2 derives head_dim from hidden/heads whatever config.json says.
    qwen = dict(llama, model_type="qwen2")
    assert mc.shape_from_hf_config(qwen)["head_dim"] == 32
    assert "weight_bytes" not in mc.shape_from_hf_config(llama)
    assert mc.shape_from_hf_config(llama, 1000)["weight_bytes"] == 1000


def test_float32_checkpoint_served_in_bf16_halves_the_file_size():
    shape = dict(LLAMA8, weight_bytes=32 * GIB, torch_dtype="float32")
    assert vp.weight_bytes(shape, dtype="bfloat16") == 16 * GIB


SPEC = {"name": "llama-8b", "source": "org/llama", "revision": "abc123", "served_name": "llama",
        "dtype": "float16", "quantization": "awq_marlin", "context_length": "auto", "tensor_parallel_size": 1,
        "node": "nuc", "tokenizer": None, "extra_args": {"reasoning-parser": "deepseek_r1"},
        "shape": {k: v for k, v in LLAMA8.items() if k != "name"}}
GPU12 = {"model": "RTX 3060", "vram_mib": 12288, "count": 1}


def test_filter_plans_and_builds_args():
    plan = vram_plan(SPEC, GPU12)
    args = vllm_args(SPEC, plan)
    assert args[0] == "org/llama"  # positional: `vllm serve --model` is deprecated
    assert args[args.index("--revision") + 1] == "abc123"
    assert args[args.index("--quantization") + 1] == "awq_marlin"
    assert args[args.index("--max-model-len") + 1] == str(plan["max_model_len"])
    assert args[args.index("--gpu-memory-utilization") + 1] == "%.2f" % plan["gpu_memory_utilization"]
    assert args[-2:] == ["--reasoning-parser", "deepseek_r1"]


def test_extra_args_replace_planned_flags_and_reach_the_planner():
    spec = dict(SPEC, extra_args={"max-num-seqs": 4, "enforce-eager": True, "kv-cache-dtype": "fp8"})
    plan = vram_plan(spec, GPU12)
    assert plan["enforce_eager"] and plan["cudagraph_bytes"] == 0
    assert plan["kv_bytes_per_token"] == 65536
    args = vllm_args(spec, plan)
    assert args.count("--max-num-seqs") == 1 and args[args.index("--max-num-seqs") + 1] == "4"
    assert args.count("--enforce-eager") == 1


def test_filter_refuses_more_gpus_than_the_node_has():
    with pytest.raises(AnsibleFilterError, match=r"gpu_stack_models on host nuc: model llama-8b: tensor_parallel_size 2 GPUs asked, the node has 1"):
        vram_plan(dict(SPEC, tensor_parallel_size=2), GPU12)


def test_filter_names_the_model_when_it_cannot_fit():
    with pytest.raises(AnsibleFilterError, match=r"gpu_stack_models on host nuc: model llama-8b does not fit: weights 14.96 GiB"):
        vram_plan(dict(SPEC, quantization=None), GPU12)


def test_local_path_has_no_revision():
    spec = dict(SPEC, source="/models/tiny", quantization=None, dtype="float32",
                shape=dict(num_layers=2, num_attention_heads=4, num_kv_heads=2, head_dim=32, hidden_size=128,
                           intermediate_size=256, vocab_size=512, params_b=0.0004, max_position_embeddings=2048))
    args = vllm_args(spec, vram_plan(spec, GPU12))
    assert args[0] == "/models/tiny" and "--revision" not in args


@pytest.mark.parametrize("model", sorted(gen_models.MODELS))
def test_never_caps_concurrency_where_vllms_defaults_start(model):
    """Issue 7's P6: the planner's arguments are never below vLLM's defaults. Where
    the defaults start at all (util 0.92, the model's full context), they take 32
    concurrent requests; the plan must take them too, on every home card size."""
    _cfg, _dtype, quant, _src = gen_models.MODELS[model]
    shape = mc.shape_from_hf_config(gen_models.hf_config(model), gen_models.checkpoint_bytes(model))
    kw = {"dtype": "float16", "quantization": "awq_marlin"} if quant else {}
    compared = 0
    for vram_mib in (8192, 10240, 12288, 16380, 20480, 24564, 49140):
        try:
            vp.plan(shape, vram_mib, context_length=shape["max_position_embeddings"],
                    gpu_memory_utilization=0.92, **kw)
        except vp.PlanError:
            continue  # vLLM's defaults would not start on this card
        plan = vp.plan(shape, vram_mib, **kw)
        assert plan["max_num_seqs"] >= 32, (vram_mib, plan)
        assert plan["kv_cache_tokens"] >= 32 * 512, (vram_mib, plan)
        compared += 1
    assert compared, "no card where vLLM's defaults start: the test compares nothing"


def test_the_example_nucs_rtx_3060_starts_its_8b_awq_model():
    """inventories/example: Llama-3.1-8B AWQ on the NUC's RTX 3060 12 GB. nvidia-smi
    says 12288 MiB, CUDA (and so vLLM's budget) 11.75 GiB = 12032 MiB. With the
    non-KV memory vLLM used for this model on the H100 (6.72 GiB, first start),
    the cache vLLM finds must hold the planned max_model_len, or vLLM refuses to
    start. Planning on memory.total (cuda_reserved_mib 0) fails this: 30720 > 30688."""
    shape = mc.shape_from_hf_config(gen_models.hf_config("llama-3.1-8b-awq"),
                                    gen_models.checkpoint_bytes("llama-3.1-8b-awq"))
    plan = vp.plan(shape, 12288, dtype="float16", quantization="awq_marlin")
    found = vp.kv_tokens_for_bytes(plan["gpu_memory_utilization"] * 12032 * 2 ** 20 - 6.72 * GIB,
                                   plan["kv_bytes_per_token"])
    assert plan["max_model_len"] <= found
    assert plan["kv_cache_tokens"] == pytest.approx(found, rel=0.03)
    assert 200 <= vp.cuda_reserved_estimate_mib(12288) <= 300


@pytest.mark.parametrize("tunables, message", [
    ({"gpu_memory_utilization": 1.2}, "vllm_planner_tunables.gpu_memory_utilization: 1.2 must be a share of the card"),
    ({"max_utilization": 0}, "vllm_planner_tunables.max_utilization: 0 must be a share"),
    ({"min_utilization": 0.9, "max_utilization": 0.8}, "min_utilization 0.9 is above max_utilization 0.8"),
])
def test_utilisation_tunables_are_shares_of_the_card(tunables, message):
    """Not "the card is too small": the message names the tunable."""
    with pytest.raises(vp.PlanError, match=re.escape(message)):
        vp.plan(LLAMA8, 12288, **tunables)


def test_capture_sizes_follow_vllms_rule():
    """vLLM 0.26's list (config/vllm.py, _set_cudagraph_sizes): 1, 2, 4, multiples of
    8 below 256, then of 16, up to the cap and the token budget; the budget itself
    is captured where it is under the cap and off the stride."""
    assert vp.cudagraph_capture_sizes(64) == [1, 2, 4, 8, 16, 24, 32, 40, 48, 56, 64]
    assert len(vp.cudagraph_capture_sizes(192)) == 27  # max_num_seqs 96: the Qwen model of switch_run1
    assert len(vp.cudagraph_capture_sizes(80)) == 13   # max_num_seqs 40: the Llama model
    assert len(vp.cudagraph_capture_sizes(512)) == 51
    assert vp.cudagraph_capture_sizes(512, 300)[-2:] == [288, 300]
    assert vp.cudagraph_capture_sizes(64, 2048)[-1] == 64


@pytest.mark.parametrize("model, seqs, cap, kept_mib", [
    ("llama-3.1-8b-awq", 40, 80, 948), ("qwen2.5-7b-awq", 96, 192, 1176),   # switch_run1: vLLM's default sizes
    ("llama-3.1-8b-awq", 16, 64, 912), ("qwen2.5-7b-awq", 56, 64, 992),     # switch_run2: capped at 64
])
def test_the_sleep_residual_states_what_the_gpu_kept(model, seqs, cap, kept_mib):
    """What each server kept asleep on the H200 (nvidia-smi, per process), against
    the residual for the max_num_seqs and capture size it ran with: never below,
    and within the extra's margin above."""
    shape = mc.shape_from_hf_config(gen_models.hf_config(model))
    planned = vp.sleep_residual_bytes(shape, 1, max_num_seqs_cap=seqs, sleep_cudagraph_capture_max=cap) / 2 ** 20
    assert kept_mib <= planned <= kept_mib + vp.DEFAULT_TUNABLES["sleep_residual_extra_mib"] + 4
