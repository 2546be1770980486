# -*- coding: utf-8 -*-
# Copyright: homelab.gpu_stack contributors
# Apache License 2.0 (see LICENSE)
"""Which vLLM Deployments run in a GPU mode.

A mode names a set of models (each model's ``modes``; a model with no modes
runs in every mode, as preflight's capacity check counts it). Switching mode
scales each model's Deployment to 1 or 0; nothing else changes, so the
gateway keeps its config and falls back to the next tier for models at 0.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy

DOCUMENTATION = r"""
name: mode_replicas
short_description: Replicas per model in a GPU mode
description:
  - Returns a mapping of model name to replicas, 1 when the model's C(modes) include I(mode) or are empty, else 0.
  - Fails naming C(gpu_stack_gpu_mode) when I(mode) is not one of I(modes).
positional: _input, mode, modes
options:
  _input:
    description: Normalised model specs (the C(spec) of each model of the stack model).
    type: list
    elements: dict
    required: true
  mode:
    description: The GPU mode to switch to.
    type: str
    required: true
  modes:
    description: All modes of the inventory (C(gpu_stack_gpu_modes)); checked when given.
    type: list
    elements: str
"""

EXAMPLES = r"""
- name: Replicas per model in mode gaming
  ansible.builtin.debug:
    msg: "{{ hostvars['localhost'].preflight_stack_model.models | map(attribute='spec') | homelab.gpu_stack.mode_replicas('gaming', gpu_stack_gpu_modes) }}"
"""

RETURN = r"""
_value:
  description: Model name to replicas (0 or 1).
  type: dict
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.homelab.gpu_stack.plugins.module_utils.stack_model import INSTANCE_LABEL, runs_in_mode, selector

VLLM_SELECTOR = selector("vllm")


def _check(models, mode, modes):
    if not isinstance(mode, str) or not mode:
        raise AnsibleFilterError("gpu_stack_gpu_mode: must be a mode name, got %r" % (mode,))
    if modes is not None and mode not in modes:
        raise AnsibleFilterError("gpu_stack_gpu_mode: %r is not one of gpu_stack_gpu_modes (%s)"
                                 % (mode, ", ".join(modes)))
    if not isinstance(models, list):
        raise AnsibleFilterError("mode_replicas: expects the list of model specs, got %s"
                                 % type(models).__name__)
    for index, model in enumerate(models):
        if not isinstance(model, dict) or not model.get("name"):
            raise AnsibleFilterError("mode_replicas: model %d has no name" % index)
        if not isinstance(model.get("modes") or [], list):
            raise AnsibleFilterError("model %s: modes must be a list" % model["name"])


def mode_replicas(models, mode, modes=None):
    """{model name: replicas} for ``mode``."""
    _check(models, mode, modes)
    return dict((m["name"], 1 if runs_in_mode(m, mode) else 0) for m in models)


def mode_models(models, mode, modes=None):
    """Names of the models that run in ``mode``, in inventory order."""
    replicas = mode_replicas(models, mode, modes)
    return [m["name"] for m in models if replicas[m["name"]]]


def _is_vllm_deployment(obj):
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return obj.get("kind") == "Deployment" and all(labels.get(k) == v for k, v in VLLM_SELECTOR.items())


def _model_of(deployment):
    return ((deployment.get("metadata") or {}).get("labels") or {}).get(INSTANCE_LABEL)


def mode_scale_plan(deployments, models, mode, modes=None):
    """[{name, namespace, model, replicas, current}] for the vLLM Deployments given.

    ``deployments`` are Deployment objects (rendered, or k8s_info resources);
    each is matched to its model by the ``app.kubernetes.io/instance`` label.
    Fails naming a model with no Deployment or a Deployment of no known model.
    """
    replicas = mode_replicas(models, mode, modes)
    plan, seen = [], set()
    for obj in deployments:
        if not _is_vllm_deployment(obj):
            continue
        model = _model_of(obj)
        if model not in replicas:
            raise AnsibleFilterError("Deployment %s: label %s=%r names no model of the inventory (%s)"
                                     % (obj["metadata"].get("name"), INSTANCE_LABEL, model,
                                        ", ".join(sorted(replicas))))
        seen.add(model)
        plan.append({"name": obj["metadata"]["name"], "namespace": obj["metadata"].get("namespace"),
                     "model": model, "replicas": replicas[model],
                     "current": (obj.get("spec") or {}).get("replicas", 1)})
    missing = [name for name in replicas if name not in seen]
    if missing:
        raise AnsibleFilterError("gpu_stack_models: no vLLM Deployment found for %s (labels %s plus %s=<model>)"
                                 % (", ".join(missing), VLLM_SELECTOR, INSTANCE_LABEL))
    return plan


def mode_switch(objects, models, mode, modes=None):
    """Rendered objects with each vLLM Deployment's replicas set for ``mode`` (copies)."""
    plan = dict((p["name"], p["replicas"]) for p in mode_scale_plan(objects, models, mode, modes))
    out = []
    for obj in objects:
        if _is_vllm_deployment(obj):
            obj = copy.deepcopy(obj)
            obj.setdefault("spec", {})["replicas"] = plan[obj["metadata"]["name"]]
        out.append(obj)
    return out


def gpu_mode_entry(model, chains):
    """What the gpu-mode command needs of a stack model's model (its ConfigMap row): what
    gpu_switch reads, where it runs, and the tiers that answer while it is away."""
    return {"name": model["name"], "node": model["node"], "node_name": model["node_name"],
            "spec": {"served_name": model["spec"]["served_name"], "modes": model["spec"].get("modes") or []},
            "switch": model.get("switch") or "scale", "sleep_level": model.get("sleep_level"),
            "plan": {"sleep_residual_bytes": model["plan"].get("sleep_residual_bytes") or 0},
            "service": {"name": model["service"]["name"]}, "fallback": list(chains.get(model["name"]) or [])}


class FilterModule(object):
    def filters(self):
        return {
            "gpu_mode_entry": gpu_mode_entry,
            "mode_replicas": mode_replicas,
            "mode_models": mode_models,
            "mode_scale_plan": mode_scale_plan,
            "mode_switch": mode_switch,
        }
