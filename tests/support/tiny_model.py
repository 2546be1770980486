#!/usr/bin/env python3
# Copyright: homelab.gpu_stack contributors
# Apache License 2.0 (see LICENSE)
"""Generate a tiny random-weight chat model offline (no hub, ~5 s, ~1-3 MB).

Run it with the CPU vLLM venv's Python (it needs torch, transformers and
tokenizers; scripts/venv-vllm.sh prints that venv's path):

    VENV=$(scripts/venv-vllm.sh)
    $VENV/bin/python tests/support/tiny_model.py OUT_DIR \
        --layers 2 --hidden 128 --heads 4 --kv-heads 2 --dtype float32
    # optional: --head-dim 32 --arch llama|qwen2 --intermediate 256
    #           --max-pos 2048 --vocab 512 --seed 0

or import it (same venv): ``from tiny_model import make_tiny_model`` with
``tests/support`` on sys.path; ``make_tiny_model(out_dir, layers=2, ...)``
takes the same options as keyword arguments and returns the config dict.

What OUT_DIR gets: config.json + model.safetensors (Llama or Qwen2 weights
drawn from a fixed seed, in the requested dtype), generation_config.json, and a
byte-level BPE tokenizer (tokenizer.json + tokenizer_config.json) trained on a
small built-in text, with ChatML special tokens and a ChatML chat template, so
/v1/chat/completions works. The output is random text: the model is only for
exercising servers, gateways and memory arithmetic.

Printed on stdout (one line of JSON): the shape as the planner reads it
(model_config.shape_from_hf_config gives the same from config.json).
"""

from __future__ import absolute_import, division, print_function

import argparse
import json
import os
import sys

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# Enough varied text for a few hundred merges; the content does not matter.
_CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "A GPU serves the model; the gateway falls back to the CPU, then the cloud.",
    "Kubernetes schedules pods on nodes; vLLM keeps a paged KV cache in memory.",
    "Hello, how are you today? I am fine, thank you. What is two plus two? Four.",
    "system user assistant: answer briefly and politely, in plain English.",
    "0123456789 !\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~",
]


def _train_tokenizer(out_dir, vocab_size):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_CORPUS * 20, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=None, eos_token="<|im_end|>",
        pad_token="<|endoftext|>", unk_token=None)
    fast.chat_template = CHATML_TEMPLATE
    fast.model_max_length = 1 << 30
    fast.save_pretrained(out_dir)
    return fast


def make_tiny_model(out_dir, layers=2, hidden=128, heads=4, kv_heads=2, head_dim=None,
                    dtype="float32", arch="llama", intermediate=None, max_pos=2048,
                    vocab=512, seed=0):
    """Write the tiny model to ``out_dir``; return its config as a dict."""
    import torch
    import transformers

    if heads % kv_heads:
        raise ValueError("heads (%d) must be a multiple of kv_heads (%d)" % (heads, kv_heads))
    if arch == "qwen2" and head_dim and head_dim != hidden // heads:
        # vLLM's Qwen2 derives head_dim from hidden/heads and ignores the
        # config's; such a model would not be the one vLLM serves.
        raise ValueError("qwen2: head_dim must be hidden / heads (%d), got %d"
                         % (hidden // heads, head_dim))
    head_dim = head_dim or hidden // heads
    os.makedirs(out_dir, exist_ok=True)
    tokenizer = _train_tokenizer(out_dir, vocab)
    vocab_size = len(tokenizer)
    common = dict(
        vocab_size=vocab_size, hidden_size=hidden, intermediate_size=intermediate or 2 * hidden,
        num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
        head_dim=head_dim, max_position_embeddings=max_pos, rms_norm_eps=1e-6,
        tie_word_embeddings=False, dtype=dtype,
        bos_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
    )
    if arch == "llama":
        config = transformers.LlamaConfig(**common)
        cls = transformers.LlamaForCausalLM
    elif arch == "qwen2":
        config = transformers.Qwen2Config(**common)
        cls = transformers.Qwen2ForCausalLM
    else:
        raise ValueError("arch must be llama or qwen2, got %r" % arch)
    torch.manual_seed(seed)
    model = cls(config).to(getattr(torch, dtype))
    model.save_pretrained(out_dir)
    with open(os.path.join(out_dir, "config.json")) as handle:
        saved = json.load(handle)
    # vLLM takes head_dim from config.json; make sure it is there even where a
    # transformers version derives it instead of saving it.
    if saved.get("head_dim") != head_dim:
        saved["head_dim"] = head_dim
        with open(os.path.join(out_dir, "config.json"), "w") as handle:
            json.dump(saved, handle, indent=2, sort_keys=True)
    return saved


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("out_dir")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--kv-heads", type=int, default=2)
    parser.add_argument("--head-dim", type=int, default=None,
                        help="default: hidden / heads")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--arch", default="llama", choices=["llama", "qwen2"])
    parser.add_argument("--intermediate", type=int, default=None, help="default: 2 x hidden")
    parser.add_argument("--max-pos", type=int, default=2048)
    parser.add_argument("--vocab", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    config = make_tiny_model(
        args.out_dir, layers=args.layers, hidden=args.hidden, heads=args.heads,
        kv_heads=args.kv_heads, head_dim=args.head_dim, dtype=args.dtype, arch=args.arch,
        intermediate=args.intermediate, max_pos=args.max_pos, vocab=args.vocab, seed=args.seed)
    shape = {
        "num_layers": config["num_hidden_layers"],
        "num_attention_heads": config["num_attention_heads"],
        "num_kv_heads": config["num_key_value_heads"],
        "head_dim": config["head_dim"],
        "hidden_size": config["hidden_size"],
        "max_position_embeddings": config["max_position_embeddings"],
        "dtype": args.dtype,
    }
    json.dump(shape, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
