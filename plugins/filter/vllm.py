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
  - Runs the VRAM planner (plugins/module_utils/vram_planner.py) on one normalised model spec and its
    node's C(gpu_stack_gpu), outside the stack model (tests and tests/gpu); the roles read the plan
    preflight made once (C(homelab.gpu_stack.stack_model)).
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

from ansible.errors import AnsibleFilterError

from ansible_collections.homelab.gpu_stack.plugins.filter.host_checks import mount_of
from ansible_collections.homelab.gpu_stack.plugins.module_utils import stack_model
from ansible_collections.homelab.gpu_stack.plugins.module_utils.model_spec import SpecError


def vram_plan(model, gpu, config_shape=None, tunables=None):
    """The planner on one spec outside the stack model (tests, tests/gpu): its shape,
    with the fields of ``config_shape`` taking over; the roles read the stack model's plan."""
    if not isinstance(model, dict) or "name" not in model:
        raise AnsibleFilterError("vram_plan: expects one normalised model spec, got %r"
                                 % (type(model).__name__,))
    where = "gpu_stack_models on host %s" % (model.get("node") or "?")
    gpu = gpu or {}
    if not gpu.get("vram_mib"):
        raise AnsibleFilterError("gpu_stack_gpu.vram_mib on host %s: not set (%s)" % (model.get("node"), where))
    tp = model.get("tensor_parallel_size") or 1
    if tp > (gpu.get("count") or 1):
        raise AnsibleFilterError("%s: model %s: tensor_parallel_size %d GPUs asked, the node has %d"
                                 % (where, model["name"], tp, gpu.get("count") or 1))
    shape = dict(model.get("shape") or {}, **(config_shape or {}))
    try:
        return stack_model.plan_model(model, shape, gpu, tunables, where)
    except (SpecError, KeyError, TypeError) as exc:
        raise AnsibleFilterError(str(exc) if isinstance(exc, SpecError) else "%s: %s" % (where, exc))


def vllm_args(model, plan_result, port=stack_model.VLLM_PORT, host="0.0.0.0"):
    """vLLM's argument list (for `vllm serve`) from a normalised spec and its plan."""
    return stack_model.vllm_args(model, plan_result, port, host)


def cache_filesystem(mounts, path):
    """The mount (from ansible_facts.mounts) holding ``path``: the longest mount-point prefix.

    None when the facts show no such mount (a container whose root is not
    listed): then there is nothing to measure, and the caller says so.
    """
    return mount_of(mounts or [], path)


class FilterModule(object):
    def filters(self):
        return {
            "vram_plan": vram_plan,
            "vllm_args": vllm_args,
            "cache_filesystem": cache_filesystem,
        }
