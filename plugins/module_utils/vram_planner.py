# -*- coding: utf-8 -*-
# Copyright: homelab.gpu_stack contributors
# Apache License 2.0 (see LICENSE)
"""Size vLLM to the card: the VRAM planner.

``plan(shape, vram_mib, ...)`` is a pure function. It models vLLM's own memory
accounting (vllm/v1/worker/gpu_worker.py ``determine_available_memory``)::

    requested   = gpu_memory_utilization x total VRAM
    KV cache    = requested - weights - peak activation - non-torch memory
    KV tokens   = floor(KV cache / (block_size x bytes per token)) x block_size
    bytes/token = 2 (K and V) x layers x KV heads per GPU x head_dim x KV dtype bytes

and, outside ``requested`` (vLLM does not count them there, so the planner
keeps them out of the utilisation instead): the process's CUDA context and
the CUDA-graph pool. It then chooses:

- ``gpu_memory_utilization``: the largest share of the card that leaves the
  CUDA context, CUDA graphs and a headroom free (capped by ``max_utilization``);
- ``max_model_len``: the spec's ``context_length``, or else the model's
  maximum clipped to ``auto_context_margin`` of what the KV cache can hold for
  ``min_full_context_seqs`` sequences at full length (vLLM refuses to start
  when it exceeds the cache it finds), rounded down to ``context_multiple``;
- ``max_num_seqs``: enough sequences to fill the KV cache at a realistic
  request length (``typical_seq_tokens``), between ``min_num_seqs`` and
  ``max_num_seqs_cap``, a multiple of ``seq_multiple``;
- ``max_num_batched_tokens``: vLLM's own default for the card class (it sets
  the activation peak, so the planner fixes it instead of leaving it implicit).

Arguments:

shape
    dict with ``num_layers``, ``num_attention_heads``, ``num_kv_heads``,
    ``head_dim``, ``hidden_size`` and either ``params_b`` or ``weight_bytes``;
    optional ``max_position_embeddings``, ``intermediate_size``, ``vocab_size``,
    ``tie_word_embeddings``, ``torch_dtype`` (the checkpoint's dtype, used when
    ``dtype`` is ``auto``), ``name``. ``model_config.shape_from_hf_config`` /
    ``shape_from_model_dir`` build it from a model's ``config.json``.
vram_mib
    the memory of ONE GPU as nvidia-smi reports it (``memory.total``, MiB, what
    gpu_facts reads). The driver keeps part of it that CUDA, and so vLLM's
    ``gpu_memory_utilization``, never sees (``cuda_reserved_mib``).
dtype, quantization, context_length, tensor_parallel_size
    as in the model spec (plugins/module_utils/model_spec.py).
tunables
    keyword overrides of ``DEFAULT_TUNABLES`` (documented there).

Returns a dict of plain numbers (see ``plan``); raises ``PlanError`` naming the
model and the figures when the model cannot be served on the card.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import math

MIB = 1 << 20
GIB = 1 << 30

DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "half": 2, "float": 4,
               "fp8": 1, "fp8_e4m3": 1, "fp8_e5m2": 1}

# Bytes per parameter of the quantised linear layers (embeddings and lm_head
# stay in the activation dtype). 4-bit group-128 methods carry an fp16 scale
# (and a 4-bit zero point) per 128 weights: 0.5 + 2.5/128 bytes.
QUANT_LINEAR_BYTES = {
    # AWQ: fitted with QUANT_LOAD_EXTRA_MIB to what vLLM 0.26 loaded for
    # Llama-3.1-8B, Qwen2.5-7B and Qwen2.5-14B AWQ (5.49, 5.40, 9.53 GiB, the
    # same on the H100 in runs 1 and 3 and the H200 in run 5): within 32 MiB
    # of each. 0.55 alone put the 14B 141 MiB high and its KV cache 4% low.
    "awq": 0.528, "awq_marlin": 0.528,
    # Not measured: 0.52 bytes per quantised parameter and the margin AWQ had
    # over it before the fit.
    "gptq": 0.55, "gptq_marlin": 0.55,
    "compressed-tensors": 0.55, "bitsandbytes": 0.54, "gguf": 0.61, "fp8": 1.0,
}
# What a quantised model loads beyond its parameters, once per model (Marlin's
# repacking; the fit above).
QUANT_LOAD_EXTRA_MIB = {"awq": 137, "awq_marlin": 137}

DEFAULT_TUNABLES = {
    # --- what sits outside vLLM's requested share of the card -------------
    # Memory the driver reserves out of nvidia-smi's memory.total: vLLM takes
    # gpu_memory_utilization of what CUDA reports (cudaMemGetInfo), not of
    # memory.total. None: estimated by card size (cuda_reserved_estimate_mib).
    "cuda_reserved_mib": None,
    # The serving process's CUDA context (created before vLLM's baseline
    # snapshot, so never part of `requested`).
    "cuda_context_mib": 512,
    # CUDA-graph pool: measured 0.39 GiB for a 24-layer model (vLLM 0.26, H100);
    # grows with layer count (one piecewise graph per layer per capture size).
    "cudagraph_base_mib": 128,
    "cudagraph_per_layer_mib": 12,
    # Fragmentation, sampler spikes, a monitoring agent.
    "headroom_mib": 256,
    "max_utilization": 0.95,
    "min_utilization": 0.50,
    # Force a utilisation instead of choosing one (e.g. to mirror a benchmark).
    "gpu_memory_utilization": None,
    # vLLM >= 0.27 may subtract its CUDA-graph estimate from the KV budget
    # (VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS); 0.26 does not.
    "cudagraph_in_kv_budget": False,
    "enforce_eager": False,
    # --- what vLLM counts inside `requested` -------------------------------
    # non-torch memory (cuBLAS workspaces, attention-backend buffers): 0.22 GiB
    # measured on one H100; NCCL adds per GPU when tensor_parallel_size > 1.
    "non_torch_mib": 230,
    "non_torch_tp_mib": 600,
    # Peak activation of vLLM's profile run, the larger of two cases.
    # Warm (compile cache hit): max(forward pass over max_num_batched_tokens,
    # logits of max_num_seqs rows) + a constant.
    "activation_base_mib": 64,
    "forward_hidden_factor": 4,
    "forward_intermediate_factor": 3,
    # First start (torch.compile uncached, unless enforce_eager): the peak
    # measured on the H100 (vLLM 0.26, 0.5B-14B shapes, docs/benchmarks.md) was
    # one copy of the vocab x hidden embedding matrix plus ~2 values per hidden
    # unit per batched token, within 0.01 GiB on all five shapes. A pod starts
    # with an empty cache, and it is the first start that must not fail.
    "cold_compile_embedding_copies": 1,
    "cold_compile_hidden_factor": 2,
    "sampler_bytes_per_logit": None,  # None: the activation dtype's bytes
    # A quantised checkpoint takes more memory once vLLM has loaded and
    # repacked it (Marlin) than its files: +2.6-4.0% on the H100 (AWQ Llama-8B,
    # Qwen-7B/14B, vLLM 0.26).
    "quantized_load_factor": 1.03,
    "max_num_batched_tokens": None,   # None: vLLM's default for the card class
    # Tied embeddings (one matrix for input and output) load above their file
    # size: +1.1% (Qwen2.5-0.5B, 0.92 vs 0.93 GiB) and +0.7% (Qwen2.5-3B, 5.75
    # vs 5.79 GiB) on the H100 (vLLM 0.26, docs/benchmarks.md run 3).
    "tied_load_factor": 1.008,
    # --- KV cache ----------------------------------------------------------
    "kv_cache_dtype": "auto",
    "block_size": 16,
    # --- choices -----------------------------------------------------------
    "typical_seq_tokens": 512,
    "min_num_seqs": 16,
    "max_num_seqs_cap": 256,
    "seq_multiple": 8,
    "min_full_context_seqs": 1,
    "context_multiple": 256,
    # An automatic max_model_len stays this far under the predicted KV
    # capacity: vLLM refuses to start when max_model_len exceeds the cache it
    # finds, so a small overestimate must not cost the start.
    "auto_context_margin": 0.95,
    "min_context": 256,
    # --- sleep mode (switch: sleep, issue 14) -------------------------------
    # What a model asleep keeps on its card (the weights and KV cache go): its
    # CUDA context and non-torch buffers, its CUDA graphs (one piecewise graph
    # per captured size per layer and one between layers, one full graph per
    # decode size up to max_num_seqs) and buffers of max_num_seqs x the
    # vocabulary. Fitted on the H200 (vLLM 0.26.0) to the graph pools vLLM
    # reported (0.11 / 0.14 GiB) and what the two sleeping servers kept in
    # switch_run2 (Llama-3.1-8B AWQ 912 MiB, Qwen2.5-7B AWQ 992 MiB), it gives
    # switch_run1's 948 / 1176 MiB within 27 MiB; the extra holds the fit's
    # 40 MiB and a margin.
    "sleep_residual_extra_mib": 64,
    "sleep_graph_piece_mib": 0.21,
    "sleep_full_graph_mib": 8,
    "sleep_bytes_per_seq_logit": 8,
    # A sleep model captures batch sizes up to this (--max-cudagraph-capture-size)
    # and serves as many sequences at once: vLLM's default, twice max_num_seqs
    # up to 512, captured 27 sizes for the Qwen model of switch_run1, which
    # kept 1.15 GiB asleep.
    "sleep_cudagraph_capture_max": 64,
    # Host memory a level-1 sleep takes per byte of weights on the card: the
    # engine's RSS grew 6.3 GiB (Llama-3.1-8B AWQ, 5.5 GiB of weights) and
    # 10.4 GiB (Qwen2.5-7B AWQ, 5.4 GiB) on the H200 (vLLM 0.26.0, 2026-12-01).
    "sleep_host_factor": 2.0,
    # A level-2 wake reloads the weights from disk (collective_rpc
    # reload_weights), and the awake server then holds this much more per byte
    # of weights than after a level-1 wake: +1.52 GiB (Qwen2.5-7B AWQ, 5.37
    # GiB of weights) and +1.02 GiB (Llama-3.1-8B AWQ, 5.53 GiB) on the H200
    # (vLLM 0.26.0, tests/gpu/results/switch_run1.json), held while awake.
    "sleep_reload_factor": 0.29,
}

SHAPE_REQUIRED = ("num_layers", "num_attention_heads", "num_kv_heads", "head_dim", "hidden_size",
                  "intermediate_size", "vocab_size")


class PlanError(ValueError):
    """The model cannot be served as asked; the message carries the figures."""


class NoFit(PlanError):
    """The card leaves too little memory (``plan`` then tries enforce_eager)."""

    def __init__(self, message, cudagraph_bytes):
        PlanError.__init__(self, message)
        self.cudagraph_bytes = cudagraph_bytes


def _gib(value):
    return round(value / GIB, 2)


def _act_dtype(shape, dtype, quantization):
    if dtype and dtype != "auto":
        return dtype
    torch_dtype = shape.get("torch_dtype")
    if torch_dtype in DTYPE_BYTES and torch_dtype != "float32":
        return torch_dtype
    if torch_dtype == "float32" and not quantization:
        # vLLM's `auto` serves float32 checkpoints in bfloat16/float16.
        return "bfloat16"
    return "float16" if quantization else "bfloat16"


def _embedding_params(shape):
    vocab = shape["vocab_size"]
    tied = shape.get("tie_word_embeddings", False)
    return vocab * shape["hidden_size"] * (1 if tied else 2)


def estimate_params(shape):
    """Parameter count from the shape (exact for Llama/Qwen2-style dense models)."""
    hidden, hd = shape["hidden_size"], shape["head_dim"]
    inter = shape["intermediate_size"]
    attn = hidden * hd * (2 * shape["num_attention_heads"] + 2 * shape["num_kv_heads"])
    mlp = 3 * hidden * inter
    return shape["num_layers"] * (attn + mlp + 2 * hidden) + _embedding_params(shape) + hidden


def weight_bytes(shape, dtype="auto", quantization=None, tunables=None):
    """Bytes of weights on the whole model (all GPUs together)."""
    tun = dict(DEFAULT_TUNABLES, **(tunables or {}))
    tied = tun["tied_load_factor"] if shape.get("tie_word_embeddings") and not quantization else 1
    if shape.get("weight_bytes"):
        stored = DTYPE_BYTES.get(shape.get("torch_dtype"))
        served = DTYPE_BYTES[_act_dtype(shape, dtype, quantization)]
        if stored and not quantization and stored != served:
            # A float32 checkpoint served in bfloat16 takes half its file size.
            return int(shape["weight_bytes"] * served / stored * tied)
        if quantization:
            return int(shape["weight_bytes"] * tun["quantized_load_factor"])
        return int(shape["weight_bytes"] * tied)
    if shape.get("params_b"):
        params = float(shape["params_b"]) * 1e9
    else:
        params = estimate_params(shape)
    act_bytes = DTYPE_BYTES[_act_dtype(shape, dtype, quantization)]
    if not quantization:
        return int(params * act_bytes * tied)
    embed = min(_embedding_params(shape), params)
    return int((params - embed) * QUANT_LINEAR_BYTES[quantization] + embed * act_bytes
               + QUANT_LOAD_EXTRA_MIB.get(quantization, 0) * MIB)


def kv_heads_per_gpu(shape, tensor_parallel_size=1):
    """KV heads on ONE GPU: split over the tensor-parallel ranks, and with fewer heads
    than ranks replicated so that each rank holds one. vLLM's own rule
    (ModelConfig.get_num_kv_heads and the models' attention: max(1, heads // tp));
    benchmarks/planner_tp_vs_vllm.py checks it against vLLM 0.32's code."""
    return max(1, shape["num_kv_heads"] // int(tensor_parallel_size or 1))


def weight_bytes_per_gpu(shape, dtype="auto", quantization=None, tensor_parallel_size=1, tunables=None):
    """Bytes of weights on ONE GPU: the model split over the tensor-parallel ranks,
    plus the K and V projections vLLM replicates when the model has fewer KV heads
    than ranks (QKVParallelLinear keeps one whole head per rank). vLLM 0.32's own
    model built per rank on the meta device (benchmarks/planner_tp_vs_vllm.py):
    Qwen2.5-3B (2 KV heads) at tensor_parallel_size 4 holds 25.31% of the model on
    each rank, not 25%; Qwen3-14B at 4 and Qwen2.5-32B-AWQ at 2 (8 KV heads) hold
    25.002% and 50.003% (the replicated norms)."""
    tp = int(tensor_parallel_size or 1)
    per_gpu = weight_bytes(shape, dtype, quantization, tunables) / tp
    kv_heads = shape["num_kv_heads"]
    if tp > kv_heads:
        per_param = (QUANT_LINEAR_BYTES[quantization] if quantization
                     else DTYPE_BYTES[_act_dtype(shape, dtype, quantization)])
        kv_proj = shape["num_layers"] * 2 * shape["hidden_size"] * shape["head_dim"] * kv_heads * per_param
        per_gpu += kv_proj * (kv_heads_per_gpu(shape, tp) / kv_heads - 1.0 / tp)
    return int(math.ceil(per_gpu))


def kv_bytes_per_token(shape, dtype="auto", quantization=None, tensor_parallel_size=1,
                       kv_cache_dtype="auto"):
    """KV-cache bytes one token takes on ONE GPU: 2 x layers x KV heads per GPU x head_dim x bytes
    (the page_size_bytes of vLLM's FullAttentionSpec per token, summed over the layers)."""
    if kv_cache_dtype and kv_cache_dtype != "auto":
        kv_bytes = DTYPE_BYTES[kv_cache_dtype]
    else:
        kv_bytes = DTYPE_BYTES[_act_dtype(shape, dtype, quantization)]
    kv_heads = kv_heads_per_gpu(shape, tensor_parallel_size)
    return 2 * shape["num_layers"] * kv_heads * shape["head_dim"] * kv_bytes


def kv_tokens_for_bytes(kv_cache_bytes, bytes_per_token, block_size=16):
    """Tokens vLLM makes of a KV budget: whole blocks only (kv_cache_utils
    get_kv_cache_config_from_groups: num_blocks = available // bytes per block)."""
    blocks = int(kv_cache_bytes // (bytes_per_token * block_size))
    return blocks * block_size


def cuda_reserved_estimate_mib(vram_mib):
    """nvidia-smi memory.total minus the total CUDA reports, by card size.

    Seen: 480 MiB on an H100 80GB (tests/gpu: 81559 vs 81079 MiB); under Linux,
    from PyTorch's "total capacity" in public OOM reports, 225 MiB (RTX 3080
    10 GB), 256 (RTX 3060 12 GB), 320-360 (RTX 3090/4090 24 GB), 340 (RTX 5090
    32 GB), 570 (RTX 6000 Ada 48 GB). 160 MiB + 0.8%, at most 640, is within
    -45..+20 MiB of the home cards and above the H100's figure.
    """
    return min(640, int(160 + 0.008 * vram_mib))


def default_max_num_batched_tokens(vram_mib):
    """vLLM's own default for the API server (engine/arg_utils.py)."""
    vram = vram_mib * MIB
    if vram >= 160 * GIB:
        return 16384
    if vram >= 70 * GIB:
        return 8192
    return 2048


def activation_bytes(shape, max_num_batched_tokens, max_num_seqs, act_dtype,
                     tensor_parallel_size=1, tunables=None):
    """vLLM's profile-run peak: the warm case (forward over the token budget, or the
    sampler's logits) or the first start's (see DEFAULT_TUNABLES), whichever is larger."""
    tun = dict(DEFAULT_TUNABLES, **(tunables or {}))
    act = DTYPE_BYTES[act_dtype]
    hidden = shape["hidden_size"]
    inter = shape["intermediate_size"]
    forward = max_num_batched_tokens * act * (
        tun["forward_hidden_factor"] * hidden
        + tun["forward_intermediate_factor"] * inter / tensor_parallel_size)
    vocab = shape["vocab_size"]
    per_logit = tun["sampler_bytes_per_logit"] or act
    sampler = min(max_num_seqs, max_num_batched_tokens) * vocab * per_logit
    warm = max(forward, sampler) + tun["activation_base_mib"] * MIB
    if tun["enforce_eager"]:
        return int(warm)
    cold = act * (tun["cold_compile_embedding_copies"] * vocab * hidden / tensor_parallel_size
                  + tun["cold_compile_hidden_factor"] * hidden * max_num_batched_tokens)
    return int(max(warm, cold))


def _non_torch_bytes(tensor_parallel_size, tun):
    return int((tun["non_torch_mib"] + (tun["non_torch_tp_mib"] if int(tensor_parallel_size or 1) > 1 else 0)) * MIB)


def _cudagraph_bytes(shape, tun):
    return 0 if tun["enforce_eager"] else int(
        (tun["cudagraph_base_mib"] + tun["cudagraph_per_layer_mib"] * shape["num_layers"]) * MIB)


def _tunables(tunables):
    return dict(DEFAULT_TUNABLES, **dict((k, v) for k, v in tunables.items() if k in DEFAULT_TUNABLES))


def cudagraph_capture_sizes(max_size, max_num_batched_tokens=None):
    """The batch sizes vLLM captures CUDA graphs for, up to ``max_size`` (its rule:
    1, 2, 4, multiples of 8 below 256, then of 16), none above the token budget."""
    top = min(int(max_size), int(max_num_batched_tokens or max_size))
    sizes = [s for s in [1, 2, 4] + list(range(8, 256, 8)) + list(range(256, 513, 16)) if s <= top]
    if max_num_batched_tokens and int(max_num_batched_tokens) <= top and int(max_num_batched_tokens) not in sizes:
        sizes.append(int(max_num_batched_tokens))
    return sizes


def sleep_residual_bytes(shape, tensor_parallel_size=1, **tunables):
    """What the model keeps on each of its GPUs while asleep (any level): the CUDA
    context, the non-torch buffers, the CUDA graphs of the sizes captured up to
    sleep_cudagraph_capture_max and the per-sequence vocabulary buffers. An
    upper bound: it counts max_num_seqs at its cap (a sleep model's is at most
    the capture size), and vLLM captures fewer full graphs below it."""
    tun = _tunables(sleep_tunables(**tunables))
    seqs = int(tun["max_num_seqs_cap"])
    graphs_mib = 0
    if not tun["enforce_eager"]:
        sizes = cudagraph_capture_sizes(tun["sleep_cudagraph_capture_max"], tun["max_num_batched_tokens"])
        graphs_mib = (len(sizes) * (shape["num_layers"] + 1) * tun["sleep_graph_piece_mib"]
                      + len([s for s in sizes if s <= seqs]) * tun["sleep_full_graph_mib"])
    return (int((tun["cuda_context_mib"] + tun["sleep_residual_extra_mib"] + graphs_mib) * MIB)
            + int(seqs * shape["vocab_size"] * tun["sleep_bytes_per_seq_logit"])
            + _non_torch_bytes(tensor_parallel_size, tun))


def sleep_tunables(**tunables):
    """A sleep model's tunables: it serves at most as many sequences as the largest
    batch it captures a graph for (every decode batch has its graph, and
    sleep_residual_bytes counts on the cap)."""
    tun = _tunables(tunables)
    return dict(tunables, max_num_seqs_cap=min(int(tun["max_num_seqs_cap"]), int(tun["sleep_cudagraph_capture_max"])))


def sleep_cudagraph_capture_max(**tunables):
    """The largest batch size a sleep model captures a CUDA graph for."""
    return int(_tunables(tunables)["sleep_cudagraph_capture_max"])


def sleep_host_bytes(shape, dtype="auto", quantization=None, **tunables):
    """Host memory a level-1 sleep parks the model's weights in (sleep_host_factor, measured)."""
    tun = _tunables(tunables)
    return int(tun["sleep_host_factor"] * weight_bytes(shape, dtype, quantization, tun))


def sleep_reload_bytes(shape, dtype="auto", quantization=None, tensor_parallel_size=1, **tunables):
    """What a level-2 wake's reload holds on each GPU beyond the weights, while awake
    (sleep_reload_factor of the GPU's weights, measured)."""
    tun = _tunables(tunables)
    return int(tun["sleep_reload_factor"] * weight_bytes_per_gpu(shape, dtype, quantization, tensor_parallel_size, tun))


def _round_down(value, multiple):
    return int(value // multiple * multiple)


def plan(shape, vram_mib, dtype="auto", quantization=None, context_length="auto",
         tensor_parallel_size=1, **tunables):
    """``_plan``, and where a model fits only without CUDA graphs, a refusal that says so.

    The CUDA-graph pool and the first start's compile peak are what
    ``enforce_eager`` gives up: a card a few hundred MiB short is told the
    figures it would get instead of only "does not fit".
    """
    try:
        return _plan(shape, vram_mib, dtype, quantization, context_length, tensor_parallel_size, **tunables)
    except NoFit as exc:
        if tunables.get("enforce_eager"):
            raise
        try:
            eager = _plan(shape, vram_mib, dtype, quantization, context_length, tensor_parallel_size,
                          **dict(tunables, enforce_eager=True))
        except PlanError:
            raise PlanError(str(exc))
        raise PlanError("%s; without CUDA graphs it fits: set extra_args enforce-eager: true (gives up "
                        "%.2f GiB of CUDA graphs and the first start's compile peak) for a KV cache of "
                        "%.2f GiB, %d tokens, max_model_len %d, gpu_memory_utilization %.2f (slower decoding)"
                        % (exc, exc.cudagraph_bytes / GIB, eager["kv_cache_gib"], eager["kv_cache_tokens"],
                           eager["max_model_len"], eager["gpu_memory_utilization"]))


def _plan(shape, vram_mib, dtype="auto", quantization=None, context_length="auto",
          tensor_parallel_size=1, **tunables):
    """Choose vLLM's memory arguments for ``shape`` on a card of ``vram_mib``.

    Returns a dict:
      gpu_memory_utilization, max_model_len, max_num_seqs, max_num_batched_tokens
                            the arguments to pass
      weight_bytes, weight_gib   weights on one GPU
      kv_bytes_per_token        KV bytes per token on one GPU
      kv_cache_bytes, kv_cache_gib, kv_cache_tokens
                                the KV budget vLLM should report
      activation_bytes, non_torch_bytes, cudagraph_bytes, requested_bytes,
      vram_bytes (what CUDA sees), cuda_reserved_mib, model_max_len, dtype,
      kv_cache_dtype, enforce_eager,
      tensor_parallel_size      the figures behind them
    Raises PlanError (names the model and the figures) when it cannot fit.
    """
    unknown = set(tunables) - set(DEFAULT_TUNABLES) - {"name"}
    if unknown:
        raise PlanError("vllm_planner_tunables: unknown %s (known: %s)"
                        % (", ".join(sorted(unknown)), ", ".join(sorted(DEFAULT_TUNABLES))))
    name = tunables.pop("name", None) or shape.get("name") or "model"
    tun = dict(DEFAULT_TUNABLES, **tunables)
    # Shares of the card: above 1 would read as "the card is too small" below.
    for key in ("gpu_memory_utilization", "max_utilization", "min_utilization"):
        value = tun[key]
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not 0 < value <= 1):
            raise PlanError("vllm_planner_tunables.%s: %s must be a share of the card, above 0 and at most 1"
                            % (key, value))
    if tun["min_utilization"] > tun["max_utilization"]:
        raise PlanError("vllm_planner_tunables: min_utilization %s is above max_utilization %s"
                        % (tun["min_utilization"], tun["max_utilization"]))
    missing = [key for key in SHAPE_REQUIRED if not shape.get(key)]
    if missing:
        raise PlanError("model %s: the shape lacks %s (give them in the model spec's shape, "
                        "or let the planner read the model's config.json)"
                        % (name, ", ".join(missing)))
    if not vram_mib or vram_mib <= 0:
        raise PlanError("model %s: the card's vram_mib must be positive, got %r" % (name, vram_mib))
    tp = int(tensor_parallel_size or 1)
    act_dtype = _act_dtype(shape, dtype, quantization)
    kv_dtype = tun["kv_cache_dtype"] if tun["kv_cache_dtype"] != "auto" else act_dtype
    block = tun["block_size"]
    reserved = tun["cuda_reserved_mib"]
    if reserved is None:
        reserved = cuda_reserved_estimate_mib(vram_mib)
    # From here on, the card as CUDA (and vLLM) sees it.
    cuda_mib = vram_mib - reserved
    vram = int(cuda_mib * MIB)

    weights = weight_bytes_per_gpu(shape, dtype, quantization, tp, tun)
    bpt = kv_bytes_per_token(shape, dtype, quantization, tp, tun["kv_cache_dtype"])
    batched = tun["max_num_batched_tokens"] or default_max_num_batched_tokens(cuda_mib)
    non_torch = _non_torch_bytes(tp, tun)
    cudagraph = _cudagraph_bytes(shape, tun)

    if tun["gpu_memory_utilization"]:
        util = float(tun["gpu_memory_utilization"])
    else:
        outside = tun["cuda_context_mib"] + tun["headroom_mib"]
        if not tun["cudagraph_in_kv_budget"]:
            outside += cudagraph / MIB
        util = math.floor((cuda_mib - outside) / cuda_mib * 100) / 100
        util = min(util, tun["max_utilization"])
    if not tun["gpu_memory_utilization"] and util < tun["min_utilization"] or util > 1:
        raise NoFit("model %s: a %d MiB card leaves gpu_memory_utilization %.2f after the "
                    "CUDA context and graphs; the card is too small to plan for"
                    % (name, vram_mib, util), cudagraph)
    requested = int(util * vram)

    # max_num_seqs sets the sampler's share of the activation peak and the KV
    # budget sets max_num_seqs: iterate from the cap down until they agree.
    seqs = tun["max_num_seqs_cap"]
    for _round in range(8):
        activation = activation_bytes(shape, batched, seqs, act_dtype, tp, tun)
        kv_cache = requested - weights - activation - non_torch
        if tun["cudagraph_in_kv_budget"]:
            kv_cache -= cudagraph
        if kv_cache <= 0:
            break
        tokens = kv_tokens_for_bytes(kv_cache, bpt, block)
        want = tokens // tun["typical_seq_tokens"]
        want = max(tun["min_num_seqs"], min(tun["max_num_seqs_cap"], want))
        want = max(tun["seq_multiple"], _round_down(want, tun["seq_multiple"]))
        if want == seqs:
            break
        seqs = want
    if kv_cache <= 0:
        raise NoFit(
            "model %s does not fit: weights %.2f GiB + activations %.2f GiB + non-torch %.2f GiB "
            "= %.2f GiB per GPU, but %d MiB (what CUDA sees of the card's %d MiB) x "
            "gpu_memory_utilization %.2f = %.2f GiB "
            "(tensor_parallel_size %d, dtype %s, quantization %s); use a quantized variant, "
            "a bigger card or more GPUs"
            % (name, weights / GIB, activation / GIB, non_torch / GIB,
               (weights + activation + non_torch) / GIB, cuda_mib, vram_mib, util, requested / GIB,
               tp, act_dtype, quantization or "none"), cudagraph)

    model_max = shape.get("max_position_embeddings")
    tokens = kv_tokens_for_bytes(kv_cache, bpt, block)
    fits = tokens // tun["min_full_context_seqs"]
    if context_length not in (None, "auto"):
        context = int(context_length)
        if model_max and context > model_max:
            raise PlanError("model %s: context_length %d is above the model's maximum %d "
                            "(max_position_embeddings)" % (name, context, model_max))
        if context > fits:
            raise NoFit("model %s: context_length %d needs %.2f GiB of KV cache, the card "
                        "leaves %.2f GiB (%d tokens at %d bytes/token); lower "
                        "context_length or use 'auto'"
                        % (name, context, context * bpt / GIB, kv_cache / GIB, tokens, bpt), cudagraph)
    else:
        room = int(fits * tun["auto_context_margin"])
        context = min(model_max or room, room)
        if context >= tun["context_multiple"]:
            context = _round_down(context, tun["context_multiple"])
        if context < tun["min_context"]:
            raise NoFit("model %s does not fit usefully: the KV cache holds %d tokens "
                        "(%.2f GiB at %d bytes/token), below min_context %d"
                        % (name, tokens, kv_cache / GIB, bpt, tun["min_context"]), cudagraph)

    return {
        "name": name,
        "gpu_memory_utilization": util,
        "max_model_len": int(context),
        "max_num_seqs": int(seqs),
        "max_num_batched_tokens": int(batched),
        "weight_bytes": int(weights),
        "weight_gib": _gib(weights),
        "kv_bytes_per_token": int(bpt),
        "kv_cache_bytes": int(kv_cache),
        "kv_cache_gib": _gib(kv_cache),
        "kv_cache_tokens": int(tokens),
        "activation_bytes": int(activation),
        "non_torch_bytes": int(non_torch),
        "cudagraph_bytes": int(cudagraph),
        "requested_bytes": int(requested),
        "vram_bytes": int(vram),
        "cuda_reserved_mib": int(reserved),
        "model_max_len": int(model_max) if model_max else None,
        "dtype": act_dtype,
        "kv_cache_dtype": kv_dtype,
        "enforce_eager": bool(tun["enforce_eager"]),
        "tensor_parallel_size": tp,
    }
