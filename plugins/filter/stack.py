# -*- coding: utf-8 -*-
# Copyright: homelab.gpu_stack contributors
# Apache License 2.0 (see LICENSE)
"""The stack model filter: preflight's one compile of the inventory (module_utils/stack_model.py)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: stack_model
short_description: Compile the normalised inventory into the stack model every stage reads
description:
  - Resolves each model's shape from its own config.json (the node's cache, the Hugging Face
    Hub from the controller, the folder C(gpu_stack_model_configs), or a complete C(shape)
    in the spec, in that order), plans it once on its card and builds its vLLM arguments,
    mode, replicas, labels and Service; and the gateway's tiers and routes. No secret enters it.
  - Fails naming the model spec's path when no source gives a complete shape, or the card cannot hold the model.
positional: _input
options:
  _input:
    description: The normalised inventory (C(homelab.gpu_stack.inventory_check)).
    type: dict
    required: true
  node_configs:
    description: "C({model name: {config, weight_bytes}}) read on the nodes (C(homelab.gpu_stack.model_cache_configs))."
    type: dict
  config_folder:
    description: A folder of config.json files in the Hugging Face cache layout (C(gpu_stack_model_configs)).
    type: path
  hub:
    description: Ask the Hugging Face Hub for config.json (never with C(HF_HUB_OFFLINE=1) in the controller's environment).
    type: bool
    default: true
  hub_endpoint:
    description: The Hub's URL; C(HF_ENDPOINT) from the environment when not given.
    type: str
  hub_token:
    description: The Hugging Face token, for gated repositories.
    type: str
  tunables:
    description: Planner overrides (C(vllm_planner_tunables)).
    type: dict
  port:
    description: vLLM's port (C(vllm_port)).
    type: int
  namespace:
    description: The namespace the Services live in.
    type: str
  hosts:
    description: The cluster's inventory hosts (k3s servers, agents, GPU workers).
    type: list
    elements: str
  k3s_node_names:
    description: "C({host: k3s_node_name}) where the inventory sets one."
    type: dict
  node_name_overrides:
    description: "C({host: Kubernetes node name}) that win over both (C(vllm_node_names))."
    type: dict
"""

EXAMPLES = r"""
- name: Compile the stack model
  ansible.builtin.set_fact:
    preflight_stack_model: "{{ preflight_inventory | homelab.gpu_stack.stack_model(config_folder=gpu_stack_model_configs) }}"
"""

RETURN = r"""
_value:
  description: C(models) (spec, node, node_name, gpu, shape, shape_source and in words shape_from, plan, args, active, replicas,
    strategy, labels, selector, service, cache_gib, route), C(gateway) (tiers, gpu_tiers, routes, chains,
    key_env), C(mode), C(modes), C(mode_models) (the models that run in each mode), C(namespace), C(vllm_port),
    C(node_names), C(gpus), C(labels) (per component).
  type: dict
"""

import os

from ansible.errors import AnsibleFilterError
from ansible.module_utils.six.moves.urllib.error import HTTPError, URLError
from ansible.module_utils.urls import open_url

from ansible_collections.homelab.gpu_stack.plugins.module_utils import model_config, stack_model as sm
from ansible_collections.homelab.gpu_stack.plugins.module_utils.model_spec import SpecError

HUB_TIMEOUT_S = 5


def _fetch(url, headers):
    return open_url(url, headers=headers, timeout=HUB_TIMEOUT_S, follow_redirects="all").read()


def hub_lookup(endpoint=None, token=None, fetch=_fetch):
    """(repo, revision) -> config dict or None. A hub that cannot be reached is not asked
    again in the run, so an offline controller waits once, not once per model; an HTTP
    answer (a gated or missing repo) leaves it asked for the next model."""
    endpoint = endpoint or os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    state = {"online": True}

    def guarded(url, headers):
        try:
            return fetch(url, headers)
        except HTTPError:
            raise
        except (URLError, OSError):
            state["online"] = False
            raise

    def lookup(repo, revision):
        return model_config.hub_config(repo, revision, guarded, endpoint, token) if state["online"] else None
    return lookup


def stack_model(view, node_configs=None, config_folder=None, hub=True, hub_endpoint=None, hub_token=None,
                tunables=None, port=None, namespace=None, hosts=None, k3s_node_names=None, node_name_overrides=None,
                host_ram_mib=None, vllm_key=False):
    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    lookup = hub_lookup(hub_endpoint, hub_token or None) if hub and not offline else None
    port = sm.VLLM_PORT if port is None else port
    # The vllm role's argument spec checks it too, but the compile comes first.
    if isinstance(port, bool) or not str(port).isdigit() or not 0 < int(port) < 65536:
        raise AnsibleFilterError("vllm_port: %r must be a port number (1-65535); the vLLM Services, "
                                 "containers and the gateway's URLs use it" % (port,))
    try:
        return sm.compile_stack(view, node_configs=node_configs, hub=lookup, config_folder=config_folder or None,
                                tunables=tunables, port=int(port), namespace=namespace or "llm",
                                names=sm.node_names(hosts or [], k3s_node_names, node_name_overrides),
                                host_ram_mib=dict((h, int(m)) for h, m in (host_ram_mib or {}).items() if m),
                                vllm_key=bool(vllm_key))
    except SpecError as exc:
        raise AnsibleFilterError(str(exc))


class FilterModule(object):
    def filters(self):
        return {"stack_model": stack_model}
