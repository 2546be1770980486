"""Write random-weight models with the real shapes of models homelab users serve.

Runs on the GPU machine (torch, safetensors and tokenizers are there); nothing is
downloaded. Weights are random, so throughput and memory are real and text is not.
Each model gets the real config.json of its namesake (architecture, layer sizes,
vocabulary, RoPE), safetensors shards with the checkpoint's key names, and an
offline byte-level BPE tokenizer padded to the namesake's special-token ids.
AWQ variants are 4-bit (group 128, zero point) in AutoAWQ's GEMM layout, the
format vLLM serves with awq_marlin.

Usage: python3 gen_models.py OUTDIR [NAME ...]     (default: every model in MODELS)
       python3 gen_models.py --list                (print MODELS as JSON)
"""
import json
import os
import sys
import time

# Real configs (hidden sizes, heads, vocab, RoPE) of the namesakes on the Hub.
QWEN_SPECIALS = {"<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645}
LLAMA_SPECIALS = {"<|begin_of_text|>": 128000, "<|end_of_text|>": 128001,
                  "<|start_header_id|>": 128006, "<|end_header_id|>": 128007, "<|eot_id|>": 128009}


def qwen2(hidden, inter, layers, heads, kv, vocab, tied, max_pos=32768):
    return {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": hidden,
            "intermediate_size": inter, "num_hidden_layers": layers, "num_attention_heads": heads,
            "num_key_value_heads": kv, "vocab_size": vocab, "hidden_act": "silu",
            "max_position_embeddings": max_pos, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
            "tie_word_embeddings": tied, "use_cache": True, "use_sliding_window": False,
            "sliding_window": None, "max_window_layers": layers, "attention_dropout": 0.0,
            "bos_token_id": 151643, "eos_token_id": 151645}


def llama31(hidden, inter, layers, heads, kv, vocab=128256):
    return {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": hidden,
            "intermediate_size": inter, "num_hidden_layers": layers, "num_attention_heads": heads,
            "num_key_value_heads": kv, "head_dim": hidden // heads, "vocab_size": vocab,
            "hidden_act": "silu", "max_position_embeddings": 131072, "rms_norm_eps": 1e-5,
            "rope_theta": 500000.0, "attention_bias": False, "mlp_bias": False,
            "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                             "original_max_position_embeddings": 8192, "rope_type": "llama3"},
            "tie_word_embeddings": False, "use_cache": True, "attention_dropout": 0.0,
            "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009]}


AWQ = {"quant_method": "awq", "bits": 4, "group_size": 128, "zero_point": True, "version": "gemm"}

# name -> (config, dtype, quantization config or None, namesake)
MODELS = {
    "qwen2.5-0.5b": (qwen2(896, 4864, 24, 14, 2, 151936, True), "bfloat16", None,
                     "Qwen/Qwen2.5-0.5B-Instruct"),
    "qwen2.5-3b": (qwen2(2048, 11008, 36, 16, 2, 151936, True), "bfloat16", None,
                   "Qwen/Qwen2.5-3B-Instruct"),
    "llama-3.1-8b": (llama31(4096, 14336, 32, 32, 8), "bfloat16", None,
                     "meta-llama/Llama-3.1-8B-Instruct"),
    "llama-3.1-8b-awq": (llama31(4096, 14336, 32, 32, 8), "float16", AWQ,
                         "hugging-quants/Meta-Llama-3.1-8B-Instruct-AWQ-INT4"),
    "qwen2.5-7b-awq": (qwen2(3584, 18944, 28, 28, 4, 152064, False, 131072), "float16", AWQ,
                       "Qwen/Qwen2.5-7B-Instruct-AWQ"),
    "qwen2.5-14b-awq": (qwen2(5120, 13824, 48, 40, 8, 152064, False), "float16", AWQ,
                        "Qwen/Qwen2.5-14B-Instruct-AWQ"),
    # Multi-head attention (KV heads = heads): 8x the KV bytes per token of a
    # GQA model its size (issue 12's role-path run, tests/gpu/role_path.py).
    "qwen1.5-1.8b": (qwen2(2048, 5504, 24, 16, 16, 151936, False), "bfloat16", None,
                     "Qwen/Qwen1.5-1.8B-Chat"),
}


def planner_shape(name):
    """The model spec's `shape` (plugins/module_utils/model_spec.py SHAPE_OPTIONS) of a model here."""
    cfg, _dtype, _q, _src = MODELS[name]
    h, heads = cfg["hidden_size"], cfg["num_attention_heads"]
    return {"num_layers": cfg["num_hidden_layers"], "num_attention_heads": heads,
            "num_kv_heads": cfg["num_key_value_heads"], "head_dim": cfg.get("head_dim", h // heads),
            "hidden_size": h, "params_b": round(param_count(cfg) / 1e9, 3),
            "max_position_embeddings": cfg["max_position_embeddings"]}


def linear_shapes(cfg):
    """(key, out_features, in_features, has_bias) for the linears of one layer."""
    h, i = cfg["hidden_size"], cfg["intermediate_size"]
    hd = cfg.get("head_dim", h // cfg["num_attention_heads"])
    q, kv = cfg["num_attention_heads"] * hd, cfg["num_key_value_heads"] * hd
    bias = cfg["model_type"] == "qwen2"
    return [("self_attn.q_proj", q, h, bias), ("self_attn.k_proj", kv, h, bias),
            ("self_attn.v_proj", kv, h, bias), ("self_attn.o_proj", h, q, False),
            ("mlp.gate_proj", i, h, False), ("mlp.up_proj", i, h, False), ("mlp.down_proj", h, i, False)]


def param_count(cfg):
    h, v = cfg["hidden_size"], cfg["vocab_size"]
    per_layer = sum(o * i + (o if b else 0) for _k, o, i, b in linear_shapes(cfg)) + 2 * h
    emb = v * h * (1 if cfg["tie_word_embeddings"] else 2)
    return per_layer * cfg["num_hidden_layers"] + emb + h


def checkpoint_bytes(name):
    """Bytes write_model stores for a model (the index's total_size), without writing it."""
    cfg, dtype, quant, _src = MODELS[name]
    act = 4 if dtype == "float32" else 2
    h, v = cfg["hidden_size"], cfg["vocab_size"]
    per_layer = 2 * h * act
    for _key, o, i, bias in linear_shapes(cfg):
        if quant:
            gs = quant["group_size"]
            per_layer += i * (o // 8) * 4 + (i // gs) * (o // 8) * 4 + (i // gs) * o * act
        else:
            per_layer += o * i * act
        per_layer += o * act if bias else 0
    emb = v * h * act * (1 if cfg["tie_word_embeddings"] else 2)
    return per_layer * cfg["num_hidden_layers"] + emb + h * act


def hf_config(name):
    """config.json as write_model writes it."""
    cfg, dtype, quant, _src = MODELS[name]
    cfg = dict(cfg, torch_dtype=dtype)
    if quant:
        cfg["quantization_config"] = quant
    return cfg


def write_model(out, name, dev):
    import torch
    from safetensors.torch import save_file

    _cfg, dtype, quant, namesake = MODELS[name]
    cfg = hf_config(name)
    os.makedirs(out, exist_ok=True)
    tdtype = getattr(torch, dtype)
    g = torch.Generator(device=dev).manual_seed(0)

    def rnd(*shape, std=0.02):
        return (torch.randn(*shape, generator=g, device=dev, dtype=torch.float32) * std).to(tdtype).cpu()

    def ones(n):
        return torch.ones(n, dtype=tdtype)

    def packed(*shape):
        return torch.randint(-2 ** 31, 2 ** 31 - 1, shape, generator=g, device=dev, dtype=torch.int32).cpu()

    h, v, layers = cfg["hidden_size"], cfg["vocab_size"], cfg["num_hidden_layers"]
    shards, cur, cur_bytes, weight_map = [], {}, 0, {}

    def add(key, t):
        nonlocal cur, cur_bytes
        cur[key] = t
        cur_bytes += t.numel() * t.element_size()
        if cur_bytes > 4 * 2 ** 30:
            flush()

    def flush():
        nonlocal cur, cur_bytes
        if cur:
            shards.append(cur)
            fname = "model-%05d.safetensors" % len(shards)
            save_file(cur, os.path.join(out, fname), metadata={"format": "pt"})
            weight_map.update(dict.fromkeys(cur, fname))
            cur, cur_bytes = {}, 0

    add("model.embed_tokens.weight", rnd(v, h))
    gs = quant["group_size"] if quant else None
    for layer in range(layers):
        p = "model.layers.%d." % layer
        for key, o, i, bias in linear_shapes(cfg):
            if quant:
                # AutoAWQ GEMM layout: 8 nibbles per int32 along the output dim.
                add(p + key + ".qweight", packed(i, o // 8))
                add(p + key + ".qzeros", packed(i // gs, o // 8))
                add(p + key + ".scales", (torch.rand(i // gs, o, generator=g, device=dev) * 0.004 + 0.001)
                    .to(tdtype).cpu())
            else:
                add(p + key + ".weight", rnd(o, i))
            if bias:
                add(p + key + ".bias", rnd(o))
        add(p + "input_layernorm.weight", ones(h))
        add(p + "post_attention_layernorm.weight", ones(h))
    add("model.norm.weight", ones(h))
    if not cfg["tie_word_embeddings"]:
        add("lm_head.weight", rnd(v, h))
    flush()
    total = sum(t.numel() * t.element_size() for s in shards for t in s.values())
    with open(os.path.join(out, "model.safetensors.index.json"), "w") as fh:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, fh)
    with open(os.path.join(out, "config.json"), "w") as fh:
        json.dump(cfg, fh, indent=1)
    write_tokenizer(out, cfg)
    return total, namesake


def write_tokenizer(out, cfg):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from tokenizers.pre_tokenizers import ByteLevel

    qwen = cfg["model_type"] == "qwen2"
    specials = QWEN_SPECIALS if qwen else LLAMA_SPECIALS
    first_special = min(specials.values())
    vocab = {ch: i for i, ch in enumerate(sorted(ByteLevel.alphabet()))}
    letters = "abcdefghijklmnopqrstuvwxyz"
    k = 0
    while len(vocab) < first_special:
        s, n = "", k + 1
        while n:
            n, r = divmod(n - 1, 26)
            s = letters[r] + s
        vocab["\u0120" + s] = len(vocab)
        k += 1
    top = max(specials.values())
    by_id = {i: t for t, i in specials.items()}
    for i in range(first_special, top + 1):
        vocab[by_id.get(i, "<|reserved_%d|>" % i)] = i
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], fuse_unk=False, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(list(specials))
    tok.save(os.path.join(out, "tokenizer.json"))
    if qwen:
        start, end, eos, bos = "<|im_start|>' + message['role'] + '\\n'", "<|im_end|>\\n", "<|im_end|>", None
        gen = "<|im_start|>assistant\\n"
    else:
        start = "<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'"
        end, eos, bos = "<|eot_id|>", "<|eot_id|>", "<|begin_of_text|>"
        gen = "<|start_header_id|>assistant<|end_header_id|>\\n\\n"
    template = ("{%- for message in messages %}{{- '" + start + " }}{{- message['content'] }}"
                "{{- '" + end + "' }}{%- endfor %}{%- if add_generation_prompt %}{{- '" + gen
                + "' }}{%- endif %}")
    with open(os.path.join(out, "tokenizer_config.json"), "w") as fh:
        json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": cfg["max_position_embeddings"],
                   "eos_token": eos, "bos_token": bos, "pad_token": "<|endoftext|>" if qwen else "<|end_of_text|>",
                   "unk_token": None, "clean_up_tokenization_spaces": False, "add_bos_token": False,
                   "add_eos_token": False, "chat_template": template}, fh, indent=1)
    with open(os.path.join(out, "generation_config.json"), "w") as fh:
        json.dump({"bos_token_id": cfg["bos_token_id"], "eos_token_id": cfg["eos_token_id"],
                   "do_sample": True, "temperature": 0.7, "top_p": 0.8}, fh)


if __name__ == "__main__":
    if sys.argv[1:] == ["--list"]:
        print(json.dumps({n: {"shape": planner_shape(n), "dtype": m[1],
                              "quantization": "awq_marlin" if m[2] else None, "namesake": m[3],
                              "params": param_count(m[0])} for n, m in MODELS.items()}, indent=1))
        sys.exit(0)
    import torch

    outdir = sys.argv[1]
    names = sys.argv[2:] or list(MODELS)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    for name in names:
        t0 = time.time()
        size, namesake = write_model(os.path.join(outdir, name), name, dev)
        took = time.time() - t0
        print("gen_models: %s (%s shape): %.2f GiB in %.1fs on %s"
              % (name, namesake, size / 2 ** 30, took, dev), flush=True)
