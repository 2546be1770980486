# -*- coding: utf-8 -*-
# Copyright: homelab.gpu_stack contributors
# Apache License 2.0 (see LICENSE)
"""A model's shape from its own ``config.json``: the one parser, and where to find it.

The planner never guesses a shape (a 128256-token untied vocabulary assumed
for a Qwen model over-predicted its KV cache by 8-11% on the GPU, and vLLM
refused to start). ``resolve_shape`` takes, in order:

1. ``node``: the config.json read from the model's cache on its node (after
   a prefetch, or a local-path source's folder), by ``find_cached_config``;
2. ``hub``: the Hugging Face Hub, asked from the controller for config.json
   alone (``hub_config``; the HTTP call is injected, tests never reach a hub);
3. ``folder``: a local folder of configs the user points at for offline
   planning (``gpu_stack_model_configs``), laid out as a Hugging Face cache
   (``models--org--name/snapshots/<revision>/config.json``); a local-path
   source's config as ``<folder>/<the source folder's name>/config.json``;
4. ``spec``: the model spec's own ``shape``, when it is complete.

Pure functions: file and network access come in as arguments.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os

# Every field the planner reads; a shape lacking one is refused, never filled in.
COMPLETE_FIELDS = ("num_layers", "num_attention_heads", "num_kv_heads", "head_dim", "hidden_size",
                   "intermediate_size", "vocab_size", "tie_word_embeddings", "max_position_embeddings")
# Architectures whose vLLM implementation derives head_dim from hidden/heads
# and ignores config.json's head_dim (found by tests/e2e/test_planner_vs_vllm.py).
HEAD_DIM_FROM_HIDDEN = ("qwen2",)
# tie_word_embeddings when config.json leaves it out: the default of the
# architecture's transformers config class (PretrainedConfig's is True).
TIED_BY_DEFAULT = {"gemma": True, "gemma2": True, "gemma3": True, "gemma3_text": True,
                   "llama": False, "mistral": False, "qwen2": False, "qwen3": False, "phi3": False,
                   "phi": False, "qwen2_moe": False, "qwen3_moe": False}
HOW_TO_GIVE = ("cache the model on its node (model_cache_prefetch, or a local-path source holding "
               "config.json), let the controller reach the Hugging Face Hub, point gpu_stack_model_configs "
               "at a folder holding its config.json (Hugging Face cache layout), or give every field in "
               "the spec's shape")


def shape_from_hf_config(config, weight_bytes_total=None):
    """The planner's shape from a Hugging Face ``config.json`` dict (multimodal: its text_config)."""
    text = config.get("text_config") or config
    heads = text["num_attention_heads"]
    hidden = text["hidden_size"]
    head_dim = text.get("head_dim") or hidden // heads
    model_type = text.get("model_type") or config.get("model_type")
    if model_type in HEAD_DIM_FROM_HIDDEN:
        head_dim = hidden // heads
    tied = config.get("tie_word_embeddings", text.get("tie_word_embeddings"))
    if tied is None:
        tied = TIED_BY_DEFAULT.get(model_type)
    shape = {
        "num_layers": text["num_hidden_layers"],
        "num_attention_heads": heads,
        "num_kv_heads": text.get("num_key_value_heads") or heads,
        "head_dim": head_dim,
        "hidden_size": hidden,
        "intermediate_size": text.get("intermediate_size"),
        "vocab_size": text.get("vocab_size"),
        "max_position_embeddings": text.get("max_position_embeddings"),
        "tie_word_embeddings": None if tied is None else bool(tied),
        "torch_dtype": text.get("torch_dtype") or text.get("dtype") or config.get("torch_dtype")
        or config.get("dtype"),
    }
    if weight_bytes_total:
        shape["weight_bytes"] = int(weight_bytes_total)
    return dict((k, v) for k, v in shape.items() if v is not None)


def weights_in_dir(path):
    """Bytes of the safetensors weights in a model folder (the index's total), or None."""
    index = os.path.join(path, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as handle:
            return json.load(handle).get("metadata", {}).get("total_size")
    files = [f for f in os.listdir(path) if f.endswith(".safetensors")]
    return sum(os.path.getsize(os.path.join(path, f)) for f in files) if files else None


def shape_from_model_dir(path):
    """Read ``config.json`` (and the safetensors sizes, when present) of a model folder."""
    with open(os.path.join(path, "config.json")) as handle:
        config = json.load(handle)
    return shape_from_hf_config(config, weights_in_dir(path))


def missing_fields(shape):
    return [key for key in COMPLETE_FIELDS if (shape or {}).get(key) is None]


def snapshot_dir(hub_root, repo, revision):
    """The snapshot folder of ``repo`` at ``revision`` in a Hugging Face cache (``hub_root``
    holds ``models--org--name``): a commit sha names its folder, a branch or tag its ``refs`` file."""
    repo_dir = os.path.join(hub_root, "models--" + repo.replace("/", "--"))
    ref = os.path.join(repo_dir, "refs", revision)
    if os.path.isfile(ref):
        with open(ref) as handle:
            revision = handle.read().strip()
    return os.path.join(repo_dir, "snapshots", revision)


def find_cached_config(source, revision, hub_root=None):
    """(config dict, folder) of a model: a local-path source's folder, else its snapshot
    under ``hub_root``; (None, where it looked) when there is no config.json."""
    folder = source if source.startswith("/") else (snapshot_dir(hub_root, source, revision) if hub_root else None)
    if not folder:
        return None, None
    path = os.path.join(folder, "config.json")
    if not os.path.isfile(path):
        return None, path
    with open(path) as handle:
        return json.load(handle), folder


def folder_config(folder, source, revision):
    """config.json of a model in the user's folder of configs (``gpu_stack_model_configs``):
    a repo in the Hugging Face cache layout, a local-path source as ``<folder>/<its folder's name>``."""
    if not folder:
        return None
    if source.startswith("/"):
        return find_cached_config(os.path.join(folder, os.path.basename(source.rstrip("/"))), revision)[0]
    return find_cached_config(source, revision, folder)[0]


def hub_config(repo, revision, fetch, endpoint="https://huggingface.co", token=None):
    """config.json of ``repo`` at ``revision`` from the Hub (never weights).

    ``fetch(url, headers)`` returns the body (bytes or str) or raises; the
    caller owns the network. Returns the dict, or None when it is unreachable.
    """
    url = "%s/%s/resolve/%s/config.json" % (endpoint.rstrip("/"), repo, revision)
    headers = {"Authorization": "Bearer %s" % token} if token else {}
    try:
        body = fetch(url, headers)
        return json.loads(body)
    except Exception:  # noqa: BLE001 - offline, 401/404 or a bad body: the next source is asked
        return None


def resolve_shape(model, node_config=None, hub=None, folder=None):
    """(shape, source) for one normalised model spec, taking the sources in order.

    ``node_config``: {config, weight_bytes} read on the node (or None); ``hub``: a
    callable (repo, revision) -> config dict or None, or None when offline;
    ``folder``: a Hugging Face cache layout of configs on the controller.
    Returns (None, [(source, missing fields or why), ...]) when no source gives
    a complete shape, for the caller's refusal.
    """
    tried = []
    node_config = node_config or {}
    candidates = [("node", lambda: node_config.get("config"),
                   "no config.json there, or not read in this run (render.yml reads no node)")]
    if not model["source"].startswith("/"):
        candidates.append(("hub", lambda: hub(model["source"], model["revision"]) if hub else None,
                           "none (offline, gpu_stack_model_hub false, HF_HUB_OFFLINE or not found)"))
    candidates.append(("folder", lambda: folder_config(folder, model["source"], model["revision"]),
                       "%s has none for %s" % (folder, model["source"]) if folder else "not set"))
    for name, get, why_not in candidates:
        config = get()
        if config is None:
            tried.append((name, why_not))
            continue
        try:
            shape = shape_from_hf_config(config, node_config.get("weight_bytes") if name == "node" else None)
        except (KeyError, TypeError, AttributeError):
            tried.append((name, "its config.json is not a transformer model config"))
            continue
        missing = missing_fields(shape)
        if not missing:
            return shape, name
        tried.append((name, "config.json lacks " + ", ".join(missing)))
    spec_shape = model.get("shape")
    if spec_shape:
        missing = missing_fields(spec_shape)
        if not missing:
            return dict((k, v) for k, v in spec_shape.items() if v is not None), "spec"
        tried.append(("spec", "shape lacks " + ", ".join(missing)))
    return None, tried
