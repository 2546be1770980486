# -*- coding: utf-8 -*-
# Copyright: homelab.gpu_stack contributors
# Apache License 2.0 (see LICENSE)
"""Filters that size vLLM to the card and build its command line."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: vram_plan
short_description: Plan vLLM's memory arguments for one model on its card
description:
  - Runs the VRAM planner (plugins/module_utils/vram_planner.py) on a normalised
    model spec (from C(homelab.gpu_stack.model_specs)) and its node's C(gpu_stack_gpu).
  - Returns C(gpu_memory_utilization), C(max_model_len), C(max_num_seqs),
    C(max_num_batched_tokens), weight memory and the KV-cache budget.
  - Fails naming the model and the figures when the model cannot fit.
  - The companion filter C(vllm_args) builds vLLM's argument list from the spec and the plan.
positional: _input, gpu
options:
  _input:
    description: One normalised model spec.
    type: dict
    required: true
  gpu:
    description: The node's card, C({model, vram_mib, count}).
    type: dict
    required: true
  config_shape:
    description: A shape read from the cached C(config.json); its fields win over the spec's.
    type: dict
  tunables:
    description: Overrides of the planner's C(DEFAULT_TUNABLES).
    type: dict
"""

EXAMPLES = r"""
- name: Plan and build the arguments
  ansible.builtin.set_fact:
    plan: "{{ model | homelab.gpu_stack.vram_plan(hostvars[model.node].gpu_stack_gpu) }}"
    args: "{{ model | homelab.gpu_stack.vllm_args(plan) }}"
"""

RETURN = r"""
_value:
  description: The plan (vram_plan) or the argument list (vllm_args).
  type: raw
"""

import json

from ansible.errors import AnsibleFilterError

from ansible_collections.homelab.gpu_stack.plugins.filter.host_checks import mount_of

from ansible_collections.homelab.gpu_stack.plugins.module_utils.vram_planner import (
    GIB, PlanError, merge_shape, plan, weight_bytes)

# extra_args that change the memory plan: handed to the planner as tunables
# so the plan and the flags agree.
EXTRA_TO_TUNABLE = {
    "kv-cache-dtype": "kv_cache_dtype",
    "enforce-eager": "enforce_eager",
    "max-num-batched-tokens": "max_num_batched_tokens",
    "block-size": "block_size",
    "gpu-memory-utilization": "gpu_memory_utilization",
}
# Flags the plan sets; an extra_args entry of the same name replaces ours.
PLANNED_FLAGS = ("gpu-memory-utilization", "max-model-len", "max-num-seqs",
                 "max-num-batched-tokens")


def vram_plan(model, gpu, config_shape=None, tunables=None):
    if not isinstance(model, dict) or "name" not in model:
        raise AnsibleFilterError("vram_plan: expects one normalised model spec, got %r"
                                 % (type(model).__name__,))
    where = "model %s on host %s" % (model["name"], model.get("node") or "?")
    gpu = gpu or {}
    if not gpu.get("vram_mib"):
        raise AnsibleFilterError("gpu_stack_gpu.vram_mib on host %s: not set (%s)" % (model.get("node"), where))
    tp = model.get("tensor_parallel_size") or 1
    if tp > (gpu.get("count") or 1):
        raise AnsibleFilterError("gpu_stack_models: %s: tensor_parallel_size %d GPUs asked, the node has %d"
                                 % (where, tp, gpu.get("count") or 1))
    tun = dict(tunables or {})
    for flag, key in EXTRA_TO_TUNABLE.items():
        value = (model.get("extra_args") or {}).get(flag)
        if value is not None:
            tun[key] = value
    shape = merge_shape(model.get("shape"), config_shape)
    try:
        return plan(shape, gpu["vram_mib"], dtype=model.get("dtype") or "auto",
                    quantization=model.get("quantization"),
                    context_length=model.get("context_length", "auto"),
                    tensor_parallel_size=tp, name=model["name"], **tun)
    except (PlanError, KeyError, TypeError) as exc:
        message = str(exc)
        # The planner's messages start with "model <name>"; say where it is listed.
        if message.startswith("model %s" % model["name"]):
            message = where + message[len("model %s" % model["name"]):]
        else:
            message = "%s: %s" % (where, message)
        raise AnsibleFilterError("gpu_stack_models: " + message)


def vram_plans(models, gpus, tunables=None):
    """{model name: plan} for every model on its node's card (one call for all models)."""
    out = {}
    for model in models or []:
        gpu = (gpus or {}).get(model.get("node"))
        if not isinstance(gpu, dict):
            raise AnsibleFilterError("gpu_stack_models: model %s on host %s: the node has no gpu_stack_gpu "
                                     "({model, vram_mib, count})" % (model.get("name"), model.get("node")))
        out[model["name"]] = vram_plan(model, gpu, tunables=tunables)
    return out


def model_weight_gib(model):
    """Weights of the whole model in GiB (the spec's shape): the download a cache must hold."""
    shape = model.get("shape") or {}
    try:
        return round(weight_bytes(shape, model.get("dtype") or "auto", model.get("quantization")) / GIB, 2)
    except (KeyError, TypeError, ValueError):
        return 0.0


def model_cache_gib(model):
    """What a model's cache must hold: cache.size_gib, else the weights from its shape."""
    size = (model.get("cache") or {}).get("size_gib")
    return float(size) if size else model_weight_gib(model)


def cache_filesystem(mounts, path):
    """The mount (from ansible_facts.mounts) holding ``path``: the longest mount-point prefix.

    None when the facts show no such mount (a container whose root is not
    listed): then there is nothing to measure, and the caller says so.
    """
    return mount_of(mounts or [], path)


def _flag(name, value):
    if value is True:
        return ["--%s" % name]
    # vLLM's boolean flags are BooleanOptionalAction: false must say so, since
    # leaving the flag out keeps vLLM's default (enable-prefix-caching is on).
    if value is False:
        return ["--no-%s" % name]
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return ["--%s" % name] + [str(v) for v in value]
    if isinstance(value, dict):
        return ["--%s" % name, json.dumps(value, sort_keys=True)]
    return ["--%s" % name, str(value)]


def vllm_args(model, plan_result, port=8000, host="0.0.0.0"):
    """vLLM's argument list (for `vllm serve`) from a normalised spec and its plan."""
    extra = dict(model.get("extra_args") or {})
    # The model goes first, positional: `vllm serve --model` is deprecated.
    args = [model["source"], "--served-model-name", model["served_name"],
            "--host", host, "--port", str(port)]
    if not model["source"].startswith("/"):
        args += ["--revision", model.get("revision") or "main"]
    if model.get("tokenizer"):
        args += ["--tokenizer", model["tokenizer"]]
    args += ["--dtype", model.get("dtype") or "auto"]
    if model.get("quantization"):
        args += ["--quantization", model["quantization"]]
    args += ["--tensor-parallel-size", str(model.get("tensor_parallel_size") or 1)]
    planned = {
        "gpu-memory-utilization": "%.2f" % plan_result["gpu_memory_utilization"],
        "max-model-len": plan_result["max_model_len"],
        "max-num-seqs": plan_result["max_num_seqs"],
        "max-num-batched-tokens": plan_result["max_num_batched_tokens"],
    }
    for flag in PLANNED_FLAGS:
        if flag not in extra:
            args += _flag(flag, planned[flag])
    if plan_result.get("enforce_eager") and "enforce-eager" not in extra:
        args += ["--enforce-eager"]
    for name in sorted(extra):
        args += _flag(name, extra[name])
    return args


class FilterModule(object):
    def filters(self):
        return {
            "vram_plan": vram_plan,
            "vram_plans": vram_plans,
            "vllm_args": vllm_args,
            "model_weight_gib": model_weight_gib,
            "model_cache_gib": model_cache_gib,
            "cache_filesystem": cache_filesystem,
        }
