# -*- coding: utf-8 -*-
# Copyright: homelab.gpu_stack contributors
# Apache License 2.0 (see LICENSE)
"""The one definition of the model spec and the gateway tier shapes.

Every consumer (preflight, the VRAM planner, the vLLM role, the gateway) gets
its models from ``normalize_models`` and its tiers from ``normalize_tiers``;
nothing else parses the raw inventory. ``MODEL_OPTIONS`` / ``TIER_OPTIONS``
are Ansible argument-spec dicts; ``roles/preflight/meta/argument_specs.yml``
carries the same options (tests/unit/test_argument_specs_sync.py keeps the two
in step).

Errors name the inventory variable path and what is wrong, so a user can fix
the inventory without reading Python.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import re

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

# \Z, not $: Python's $ also matches before a final newline ("chat\n").
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\Z")
# A DNS-1123 subdomain (Ingress hosts): lowercase labels joined by dots, no
# trailing dot, at most 253 characters.
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*\Z")
HF_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*\Z")
# What clients send as "model": printable, no spaces (vLLM's --served-model-name).
SERVED_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,127}\Z")

QUANTIZATIONS = ["awq", "awq_marlin", "gptq", "gptq_marlin", "fp8", "bitsandbytes",
                 "compressed-tensors", "gguf"]
DTYPES = ["auto", "bfloat16", "float16", "float32"]
# Activation dtypes each quantization runs with in the pinned vLLM
# (get_supported_act_dtypes(); tests/unit/test_vllm_args_parser.py compares).
# vLLM refuses any other --dtype at start; methods missing here are not
# checked (the vllm role refuses them by vllm_supported_quantizations).
QUANT_ACT_DTYPES = {
    "awq": ["float16", "bfloat16"],
    "awq_marlin": ["float16", "bfloat16"],
    "gptq": ["float16", "bfloat16"],
    "gptq_marlin": ["float16", "bfloat16"],
    "fp8": ["bfloat16", "float16"],
    "compressed-tensors": ["float32", "float16", "bfloat16"],
}
# KV-cache dtypes (extra_args kv-cache-dtype) the planner can size; each is
# one of the pinned vLLM's CacheDType (tests/unit/test_vllm_args_parser.py).
KV_CACHE_DTYPES = ["auto", "float16", "bfloat16", "fp8", "fp8_e4m3", "fp8_e5m2"]
# Strings YAML users write for booleans: vLLM's parser takes none of them.
BOOL_WORDS = ("true", "false", "yes", "no", "on", "off")
CACHE_KINDS = ["hostPath", "pvc"]
TIER_KINDS = ["gpu", "cpu", "cloud"]
TIER_PROVIDERS = {
    "gpu": ["hosted_vllm"],
    "cpu": ["ollama_chat", "openai_compatible"],
    "cloud": ["openai"],
}

SHAPE_OPTIONS = {
    "num_layers": {"type": "int"},
    "num_attention_heads": {"type": "int"},
    "num_kv_heads": {"type": "int"},
    "head_dim": {"type": "int"},
    "hidden_size": {"type": "int"},
    "params_b": {"type": "float"},
    "max_position_embeddings": {"type": "int"},
    "intermediate_size": {"type": "int"},
    "vocab_size": {"type": "int"},
    "tie_word_embeddings": {"type": "bool"},
}

CACHE_OPTIONS = {
    "kind": {"type": "str", "default": "hostPath", "choices": CACHE_KINDS},
    "path": {"type": "str", "default": "/var/lib/gpu-stack/models"},
    "size_gib": {"type": "float"},
    "storage_class": {"type": "str"},
}

MODEL_OPTIONS = {
    "name": {"type": "str", "required": True},
    "source": {"type": "str", "required": True},
    "revision": {"type": "str", "default": "main"},
    "served_name": {"type": "str"},
    "quantization": {"type": "str", "choices": QUANTIZATIONS},
    "dtype": {"type": "str", "default": "auto", "choices": DTYPES},
    "tokenizer": {"type": "str"},
    "context_length": {"type": "raw", "default": "auto"},
    "tensor_parallel_size": {"type": "int", "default": 1},
    "node": {"type": "str"},
    "cache": {"type": "dict", "default": {}, "options": CACHE_OPTIONS},
    "extra_args": {"type": "dict", "default": {}},
    "modes": {"type": "list", "elements": "str", "default": []},
    "tier": {"type": "str", "default": "gpu"},
    "shape": {"type": "dict", "options": SHAPE_OPTIONS},
    "switch": {"type": "str", "default": "scale", "choices": ["scale", "sleep"]},
    "sleep_level": {"type": "int", "choices": [1, 2]},
}
# extra_args the collection sets itself for switch: sleep (docs/gpu-modes.md).
SLEEP_FLAGS = ("enable-sleep-mode", "kv-cache-memory-bytes")

# A cpu tier the collection deploys in the cluster (roles/cpu_tier) instead
# of one the inventory points at with api_base.
CPU_SERVERS = ["llama_cpp", "ollama"]
CPU_SERVER_PROVIDER = {"llama_cpp": "openai_compatible", "ollama": "ollama_chat"}
CPU_SERVER_PORT = {"llama_cpp": 8080, "ollama": 11434}
DEPLOY_OPTIONS = {
    "host": {"type": "str", "required": True},
    "server": {"type": "str", "default": "llama_cpp", "choices": CPU_SERVERS},
    "model_file": {"type": "str"},
    "cache_path": {"type": "str", "default": "/var/lib/gpu-stack/cpu-models"},
    "size_gib": {"type": "float", "required": True},
    "context_length": {"type": "int", "default": 2048},
    "threads": {"type": "int", "default": 0},
}

TIER_OPTIONS = {
    "name": {"type": "str", "required": True},
    "kind": {"type": "str", "required": True, "choices": TIER_KINDS},
    "provider": {"type": "str"},
    "api_base": {"type": "str"},
    "model": {"type": "str"},
    "api_key": {"type": "str", "no_log": True},
    "fallback": {"type": "str"},
    "timeout_s": {"type": "float", "default": 3.0},
    "deploy": {"type": "dict", "options": DEPLOY_OPTIONS},
}

GPU_OPTIONS = {
    "model": {"type": "str", "required": True},
    "vram_mib": {"type": "int", "required": True},
    "count": {"type": "int", "default": 1},
}


class SpecError(ValueError):
    """Raised with a message that names the offending variable."""


def kind_of(value):
    """What a YAML user wrote, in YAML's words (never a Python class name)."""
    if isinstance(value, bool):
        return "true/false"
    if value is None:
        return "nothing (null)"
    for types, words in ((str, "a string"), ((int, float), "a number"), (dict, "a mapping"),
                         ((list, tuple), "a list")):
        if isinstance(value, types):
            return words
    return "a value of another kind"


def _plain(value):
    """Plain dicts and lists: deep-copying Ansible's lazy containers (what a
    filter receives) copies their whole templating context, ~70 ms a model."""
    if isinstance(value, dict):
        return dict((k, _plain(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _validate(options, value, where):
    if not isinstance(value, dict):
        raise SpecError("%s: must be a mapping, got %s" % (where, kind_of(value)))
    # The validator fills nested defaults into the spec dicts it is given.
    result = ArgumentSpecValidator(copy.deepcopy(options)).validate(_plain(value))
    if result.error_messages:
        raise SpecError("%s: %s" % (where, "; ".join(sorted(result.error_messages))))
    return result.validated_parameters


# Folders a model cache must not be in or be (a pod mounts the cache read-write,
# and the caches stage gives it to the pod's user): the system's own.
SYSTEM_DIRS = ["/", "/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/root",
               "/run", "/sbin", "/sys", "/usr", "/var/lib/rancher", "/var/lib/kubelet", "/var/lib/dpkg",
               "/var/lib/apt", "/var/lib/containerd"]
# ... and these only as themselves (their subfolders are where caches go).
SYSTEM_PARENTS = ["/var", "/var/lib", "/home", "/opt", "/srv", "/mnt", "/media", "/tmp"]


def check_cache_path(path, where, host):
    """A cache folder: absolute, normalised, outside the system's folders (docs/architecture.md)."""
    if not isinstance(path, str) or not path.startswith("/"):
        raise SpecError("%s: %r must be an absolute path on host %s" % (where, path, host))
    parts = path.split("/")
    if path != "/" and (path.endswith("/") or "//" in path or "." in parts or ".." in parts):
        raise SpecError("%s: %r must be written normalised (no '.', '..', '//' or trailing '/')" % (where, path))
    bad = path if path in SYSTEM_PARENTS else next(
        (d for d in SYSTEM_DIRS if path == d or (d != "/" and path.startswith(d + "/"))), None)
    if bad:
        raise SpecError("%s: %r is %s system folder %s on host %s; a model cache gets its own folder "
                        "(such as /var/lib/gpu-stack/models)" % (where, path, "the" if bad == path else "inside the", bad, host))


def normalize_gpu(value, host):
    where = "gpu_stack_gpu on host %s" % host
    gpu = _validate(GPU_OPTIONS, value, where)
    if gpu["vram_mib"] <= 0:
        raise SpecError("%s.vram_mib: must be positive, got %d" % (where, gpu["vram_mib"]))
    if gpu["count"] < 1:
        raise SpecError("%s.count: must be at least 1, got %d" % (where, gpu["count"]))
    return gpu


def normalize_model(value, host, index):
    """Validate one raw model spec listed on ``host``; fill the defaults."""
    where = "gpu_stack_models[%d] on host %s" % (index, host)
    model = _validate(MODEL_OPTIONS, value, where)
    name = model["name"]
    if not DNS_LABEL.match(name) or len(name) > 50:
        raise SpecError("%s.name: %r must be a lowercase DNS label of at most 50 characters "
                        "(letters, digits, '-'), it names Kubernetes objects" % (where, name))
    source = model["source"]
    if not (source.startswith("/") or HF_REPO.match(source)):
        raise SpecError("%s.source: %r is neither a Hugging Face repo id (org/name) "
                        "nor an absolute local path" % (where, source))
    ctx = model["context_length"]
    if ctx != "auto":
        if isinstance(ctx, bool) or not isinstance(ctx, int) or ctx < 1:
            raise SpecError("%s.context_length: must be a positive integer or 'auto', got %s"
                            % (where, kind_of(ctx) if isinstance(ctx, bool) else repr(ctx)))
    if model["tensor_parallel_size"] < 1:
        raise SpecError("%s.tensor_parallel_size: must be at least 1, got %d"
                        % (where, model["tensor_parallel_size"]))
    if model["node"] is None:
        model["node"] = host
    elif model["node"] != host:
        raise SpecError("%s.node: %r differs from the host that lists the model; list it "
                        "under the host that serves it" % (where, model["node"]))
    if model["cache"]["size_gib"] is not None and model["cache"]["size_gib"] <= 0:
        raise SpecError("%s.cache.size_gib: must be positive (GiB the cache needs), got %s"
                        % (where, model["cache"]["size_gib"]))
    if model["cache"]["kind"] == "hostPath":
        check_cache_path(model["cache"]["path"], where + ".cache.path", host)
    if model["served_name"] is None:
        model["served_name"] = name
    elif not SERVED_NAME.match(model["served_name"]):
        raise SpecError("%s.served_name: %r must be 1-128 characters, a letter or digit first, then "
                        "letters, digits or . _ : / @ + - (no spaces): clients send it as the model"
                        % (where, model["served_name"]))
    for key, value in model["extra_args"].items():
        if key.startswith("-"):
            raise SpecError("%s.extra_args: write flag names without dashes (%r)" % (where, key))
        if isinstance(value, str) and value.strip().lower() in BOOL_WORDS:
            raise SpecError("%s.extra_args.%s: %r is a string; write true or false unquoted "
                            "(vLLM takes --%s or --no-%s, not a value)" % (where, key, value, key, key))
    for flag in SLEEP_FLAGS:
        if flag in model["extra_args"]:
            raise SpecError("%s.extra_args.%s: set by the collection; write switch: sleep to switch this model "
                            "with vLLM's sleep mode (its KV cache is then pinned to the plan)" % (where, flag))
    if model["sleep_level"] is not None and model["switch"] != "sleep":
        raise SpecError("%s.sleep_level: %d is only used with switch: sleep (switch is %s)"
                        % (where, model["sleep_level"], model["switch"]))
    check_vllm_rules(model, where)
    model["extra_args"] = dict(sorted(model["extra_args"].items()))
    model["_where"] = where
    return model


def check_vllm_rules(model, where):
    """What vLLM refuses at pod start for a model, refused here instead."""
    quant, dtype = model["quantization"], model["dtype"]
    if quant in QUANT_ACT_DTYPES and dtype != "auto" and dtype not in QUANT_ACT_DTYPES[quant]:
        raise SpecError("%s.dtype: %s with quantization %s; vLLM runs %s only with %s (or auto)"
                        % (where, dtype, quant, quant, ", ".join(QUANT_ACT_DTYPES[quant])))
    kv_dtype = model["extra_args"].get("kv-cache-dtype", "auto")
    if kv_dtype not in KV_CACHE_DTYPES:
        raise SpecError("%s.extra_args.kv-cache-dtype: %r is not one the planner can size (%s)"
                        % (where, kv_dtype, ", ".join(KV_CACHE_DTYPES)))
    tp, shape = model["tensor_parallel_size"], model["shape"] or {}
    heads, kv_heads = shape.get("num_attention_heads"), shape.get("num_kv_heads")
    if heads and heads % tp:
        raise SpecError("%s.tensor_parallel_size: %d does not divide the model's %d attention heads "
                        "(shape.num_attention_heads); vLLM refuses it" % (where, tp, heads))
    # vLLM splits KV heads across GPUs, or replicates them when there are fewer.
    if kv_heads and (kv_heads % tp if kv_heads >= tp else tp % kv_heads):
        raise SpecError("%s.tensor_parallel_size: %d and the model's %d KV heads (shape.num_kv_heads): "
                        "one must divide the other; vLLM refuses it" % (where, tp, kv_heads))


def collect_models(hostvars, hosts):
    """All models of ``hosts`` (the gpu_workers), normalised, in inventory order.

    Raises SpecError on a bad field, a duplicate name or served name.
    """
    models = []
    seen_name, seen_served = {}, {}
    for host in hosts:
        raw = (hostvars.get(host) or {}).get("gpu_stack_models") or []
        if not isinstance(raw, list):
            raise SpecError("gpu_stack_models on host %s: must be a list, got %s"
                            % (host, kind_of(raw)))
        for index, item in enumerate(raw):
            model = normalize_model(item, host, index)
            if model["name"] in seen_name:
                raise SpecError("%s.name: %r is already used by %s"
                                % (model["_where"], model["name"], seen_name[model["name"]]))
            if model["served_name"] in seen_served:
                raise SpecError("%s.served_name: %r is already served by %s"
                                % (model["_where"], model["served_name"],
                                   seen_served[model["served_name"]]))
            seen_name[model["name"]] = model["_where"]
            seen_served[model["served_name"]] = model["_where"]
            models.append(model)
    return models


def normalize_tiers(value):
    """Validate the gateway tiers; return them in chain order from the gpu tier.

    Each tier names the tier it falls back to; the chain must be acyclic and
    every name it mentions must exist.
    """
    if not isinstance(value, list) or not value:
        raise SpecError("gpu_stack_tiers: must be a non-empty list of tiers")
    tiers = {}
    for index, item in enumerate(value):
        where = "gpu_stack_tiers[%d]" % index
        tier = _validate(TIER_OPTIONS, item, where)
        if tier["name"] in tiers:
            raise SpecError("%s.name: %r is defined twice" % (where, tier["name"]))
        if not DNS_LABEL.match(tier["name"]) or len(tier["name"]) > 50:
            raise SpecError("%s.name: %r must be a lowercase DNS label of at most 50 characters (letters, "
                            "digits, '-'): it names the tier's model group, key variable and deployed objects"
                            % (where, tier["name"]))
        if tier["api_base"] and not re.match(r"https?://[^/\s]+", tier["api_base"]):
            raise SpecError("%s.api_base: %r must be an http:// or https:// URL" % (where, tier["api_base"]))
        providers = TIER_PROVIDERS[tier["kind"]]
        if tier["provider"] is None:
            tier["provider"] = CPU_SERVER_PROVIDER[tier["deploy"]["server"]] if tier["deploy"] else providers[0]
        elif tier["provider"] not in providers:
            raise SpecError("%s.provider: %r is not valid for a %s tier (one of %s)"
                            % (where, tier["provider"], tier["kind"], ", ".join(providers)))
        if tier["kind"] != "gpu" and not tier["model"]:
            raise SpecError("%s.model: a %s tier needs the backend model name"
                            % (where, tier["kind"]))
        if tier["kind"] == "cloud" and not tier["api_key"]:
            raise SpecError("%s.api_key: the cloud tier %r has no API key (put it in the vault)"
                            % (where, tier["name"]))
        if tier["deploy"] is not None:
            _normalize_deploy(tier, where)
        elif tier["kind"] == "cpu" and not tier["api_base"]:
            raise SpecError("%s.api_base: the cpu tier %r needs the URL of its server, or deploy: to have "
                            "the collection run one in the cluster" % (where, tier["name"]))
        if tier["timeout_s"] <= 0:
            raise SpecError("%s.timeout_s: must be positive, got %s" % (where, tier["timeout_s"]))
        tier["_where"] = where
        tiers[tier["name"]] = tier
    for tier in tiers.values():
        if tier["fallback"] is not None and tier["fallback"] not in tiers:
            raise SpecError("%s.fallback: names tier %r, which does not exist (tiers: %s)"
                            % (tier["_where"], tier["fallback"], ", ".join(tiers)))
    return tiers


def _normalize_deploy(tier, where):
    """A deployed cpu tier: its server, file and sizes checked; its Service named (``service``, ``port``)."""
    deploy = tier["deploy"]
    if tier["kind"] != "cpu":
        raise SpecError("%s.deploy: only a cpu tier is deployed by the collection, %r is a %s tier"
                        % (where, tier["name"], tier["kind"]))
    if tier["api_base"]:
        raise SpecError("%s.api_base: the deployed tier %r is reached at its own Service; leave api_base out"
                        % (where, tier["name"]))
    provider = CPU_SERVER_PROVIDER[deploy["server"]]
    if tier["provider"] != provider:
        raise SpecError("%s.provider: a %s tier is reached as %r, not %r; leave provider out"
                        % (where, deploy["server"], provider, tier["provider"]))
    if deploy["server"] == "llama_cpp":
        name = deploy["model_file"] or ""
        if not name.endswith(".gguf") or "/" in name or name.startswith("."):
            raise SpecError("%s.deploy.model_file: %r must be the name of a .gguf file in deploy.cache_path "
                            "(llama.cpp serves GGUF)" % (where, deploy["model_file"]))
    elif deploy["model_file"]:
        raise SpecError("%s.deploy.model_file: Ollama pulls model %r itself; leave model_file out"
                        % (where, tier["model"]))
    check_cache_path(deploy["cache_path"], where + ".deploy.cache_path", deploy["host"])
    if deploy["size_gib"] <= 0:
        raise SpecError("%s.deploy.size_gib: must be positive (the model's size on disk and in RAM), got %s"
                        % (where, deploy["size_gib"]))
    if deploy["context_length"] < 1 or deploy["threads"] < 0:
        raise SpecError("%s.deploy: context_length must be at least 1 and threads 0 (all) or more, got %s and %s"
                        % (where, deploy["context_length"], deploy["threads"]))
    tier["service"] = "%s-tier" % tier["name"]
    tier["port"] = CPU_SERVER_PORT[deploy["server"]]


def tier_chain(tiers, start):
    """The tier names visited from ``start`` following ``fallback``; rejects cycles."""
    chain = []
    name = start
    while name is not None:
        if name in chain:
            raise SpecError("gpu_stack_tiers: the fallback chain %s -> %s is a cycle"
                            % (" -> ".join(chain), name))
        chain.append(name)
        name = tiers[name]["fallback"]
    return chain


def route_models(models, tiers):
    """Each model's fallback chain of tier names; every model must reach a tier."""
    routes = {}
    for model in models:
        if model["tier"] not in tiers:
            raise SpecError("%s.tier: %r is not a tier (tiers: %s)"
                            % (model["_where"], model["tier"], ", ".join(tiers)))
        if tiers[model["tier"]]["kind"] != "gpu":
            raise SpecError("%s.tier: %r is a %s tier; models served by vLLM enter at a gpu tier"
                            % (model["_where"], model["tier"], tiers[model["tier"]]["kind"]))
        routes[model["name"]] = tier_chain(tiers, model["tier"])
    return routes


def public(spec):
    """A copy without the private bookkeeping keys (for templates and output)."""
    return dict((k, v) for k, v in spec.items() if not k.startswith("_"))
