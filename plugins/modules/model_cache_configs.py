#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: homelab.gpu_stack contributors
# Apache License 2.0 (see LICENSE)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: model_cache_configs
short_description: Read each model's config.json from its cache on the node
version_added: "0.1.0"
description:
  - For each model given, reads C(config.json) where vLLM will find it on this node, and the size of its
    safetensors weights when they are there, in a local-path source's own folder, else in the Hugging Face
    cache under C(<cache_path>/hf/hub) (C(models--org--name/snapshots/<revision>), a branch or tag
    resolved through its C(refs) file), where C(model_cache_prefetch) and the pods put it.
  - Reads only; a model with no config.json there is left out of the result (preflight then asks the
    next source of its shape).
author:
  - homelab.gpu_stack maintainers (@homelab)
options:
  models:
    description:
      - Normalised model specs served on this node (C(name), C(source), C(revision), C(cache.path) are read).
    type: list
    elements: dict
    required: true
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  platform:
    platforms: posix
"""

EXAMPLES = r"""
- name: Read the cached configs
  homelab.gpu_stack.model_cache_configs:
    models:
      - {name: qwen-7b, source: Qwen/Qwen2.5-7B-Instruct-AWQ, revision: main, cache: {path: /var/lib/gpu-stack/models}}
  register: configs
"""

RETURN = r"""
configs:
  description: "C({model name: {config, weight_bytes, path}}) for each model whose config.json was found."
  returned: always
  type: dict
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.homelab.gpu_stack.plugins.module_utils.model_config import find_cached_config, weights_in_dir


def main():
    module = AnsibleModule(argument_spec={"models": {"type": "list", "elements": "dict", "required": True}},
                           supports_check_mode=True)
    configs = {}
    for model in module.params["models"]:
        cache_path = (model.get("cache") or {}).get("path")
        # HF_HOME of the pods is <cache>/hf (roles/vllm), so the hub cache is <cache>/hf/hub.
        hub_root = os.path.join(cache_path, "hf", "hub") if cache_path else None
        try:
            config, folder = find_cached_config(model["source"], model.get("revision") or "main", hub_root)
            if config is not None:
                configs[model["name"]] = {"config": config, "weight_bytes": weights_in_dir(folder), "path": folder}
        except (OSError, ValueError) as exc:
            module.fail_json(msg="model %s: config.json in its cache on this node cannot be read: %s"
                             % (model["name"], exc))
    module.exit_json(changed=False, configs=configs)


if __name__ == "__main__":
    main()
