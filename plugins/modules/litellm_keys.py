#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: homelab.gpu_stack contributors
# Apache License 2.0 (see LICENSE)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: litellm_keys
short_description: One LiteLLM virtual key per consumer, kept in line through LiteLLM's key API
description:
  - Each consumer gets a virtual key with the alias C(<alias_prefix><name>), limited to its
    I(models), with an optional budget and rate limit, made with LiteLLM's C(/key/generate).
  - LiteLLM keeps only a hash of a key, so the caller keeps the value (the litellm role, in a
    Secret per consumer) and hands it back in I(current). A held key LiteLLM still knows
    under the consumer's alias is kept (C(/key/info); its limits set with C(/key/update) when
    they differ); otherwise the keys under that alias are deleted and a new one is generated.
  - With I(prune), keys under I(alias_prefix) that no consumer declares are deleted (revoked).
  - Needs a LiteLLM with its database (C(DATABASE_URL)); the master key stays with the caller.
version_added: 0.2.0
author:
  - homelab.gpu_stack contributors (@homelab-gpu-stack)
requirements:
  - httpx or httpx2 (the openai client's HTTP library) on the host that runs the module
options:
  base_url:
    description: The gateway's URL (its root or its C(/v1) base URL).
    type: str
    required: true
  master_key:
    description: LiteLLM's master key.
    type: str
    required: true
  consumers:
    description: The consumers.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: Consumer name (the alias suffix).
        type: str
        required: true
      models:
        description: Model groups the key may call (empty - every model).
        type: list
        elements: str
        default: []
      max_budget:
        description: Spend limit in US dollars, as LiteLLM counts it.
        type: float
      rpm_limit:
        description: Requests per minute.
        type: int
  current:
    description: Consumer name -> the key the caller holds for it (from its Secret), where it holds one.
    type: dict
    default: {}
  alias_prefix:
    description: Prefix of the aliases of the keys this module manages.
    type: str
    default: gpu-stack/
  prune:
    description: Delete keys under I(alias_prefix) that no consumer declares.
    type: bool
    default: true
  request_timeout:
    description: Seconds one HTTP request may take.
    type: float
    default: 30
  ca_data:
    description: PEM of the CA to trust for an C(https) I(base_url) (not the controller's store).
    type: str
  connect_address:
    description: Open connections here whatever the URL's host resolves to (host kept for TLS).
    type: str
notes:
  - Run the task with C(no_log), which keeps I(current) and the returned keys out of every log.
  - Check mode reports what would be created, updated or revoked, and writes nothing.
"""

EXAMPLES = r"""
- name: Keys for Open WebUI and n8n
  homelab.gpu_stack.litellm_keys:
    base_url: https://llm.gpu-stack.home.arpa
    master_key: "{{ litellm_master_key }}"
    consumers:
      - {name: open-webui, models: [llama-3.1-8b-instruct, cpu]}
      - {name: n8n, models: [llama-3.1-8b-instruct], max_budget: 5, rpm_limit: 30}
  no_log: true
  register: keys
"""

RETURN = r"""
keys:
  description: Consumer name -> its key (keep the task under no_log).
  returned: always
  type: dict
created:
  description: Consumers that got a new key (or would, in check mode).
  returned: always
  type: list
updated:
  description: Consumers whose key's models, budget or rpm were changed.
  returned: always
  type: list
revoked:
  description: Consumers no longer declared whose keys were deleted.
  returned: always
  type: list
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.homelab.gpu_stack.plugins.module_utils.litellm_keys import KeyApiError, sync
from ansible_collections.homelab.gpu_stack.plugins.module_utils.openai_gate import (
    describe, http_library, http_transport, server_root)


def http_request(base_url, master_key, timeout, ca_data=None, connect_address=None):
    client = http_library().Client(transport=http_transport(ca_data=ca_data, connect_address=connect_address),
                                   timeout=timeout, headers={"Authorization": "Bearer " + master_key})
    root = server_root(base_url)

    def request(method, path, body=None, params=None):
        response = client.request(method, root + path, json=body, params=params)
        try:
            return response.status_code, response.json()
        except ValueError:
            return response.status_code, response.text[:300]
    return request


def main():
    module = AnsibleModule(argument_spec={
        "base_url": {"type": "str", "required": True},
        "master_key": {"type": "str", "required": True, "no_log": True},
        "consumers": {"type": "list", "elements": "dict", "required": True, "options": {
            "name": {"type": "str", "required": True},
            "models": {"type": "list", "elements": "str", "default": []},
            "max_budget": {"type": "float"},
            "rpm_limit": {"type": "int"},
        }},
        # Not no_log: Ansible would then mask these values in the returned
        # keys too, and the caller stores those. The task runs under no_log.
        "current": {"type": "dict", "default": {}, "no_log": False},
        "alias_prefix": {"type": "str", "default": "gpu-stack/"},
        "prune": {"type": "bool", "default": True},
        "request_timeout": {"type": "float", "default": 30},
        "ca_data": {"type": "str"},
        "connect_address": {"type": "str"},
    }, supports_check_mode=True)
    params = module.params
    request = http_request(params["base_url"], params["master_key"], params["request_timeout"],
                           params["ca_data"], params["connect_address"])
    try:
        result = sync(request, params["consumers"], params["current"], params["alias_prefix"], params["prune"],
                      module.check_mode)
    except KeyApiError as exc:
        module.fail_json(msg=str(exc))
    except Exception as exc:  # the HTTP library's errors: say which, never the key
        module.fail_json(msg="LiteLLM key API at %s: %s" % (server_root(params["base_url"]), describe(exc)))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
