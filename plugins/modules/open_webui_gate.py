#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: homelab.gpu_stack contributors
# Apache License 2.0 (see LICENSE)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: open_webui_gate
short_description: Gate on Open WebUI answering a chat through the gateway
description:
  - Signs in to Open WebUI as its admin, checks the models it lists include I(names) (it reads
    them from the gateway with its own gateway key), and asks the first of them for a chat,
    as the household's browser would. Retries until I(deadline); a refused sign-in fails at once.
  - Reads only. In check mode nothing was deployed, so it does not probe and returns C(passed=null).
version_added: 0.2.0
author:
  - homelab.gpu_stack contributors (@homelab-gpu-stack)
requirements:
  - httpx or httpx2 (the openai client's HTTP library) on the host that runs the module
options:
  url:
    description: Open WebUI's address, e.g. C(https://chat.gpu-stack.home.arpa).
    type: str
    required: true
  email:
    description: The admin account's e-mail.
    type: str
    required: true
  password:
    description: The admin account's password.
    type: str
    required: true
  names:
    description: Model names Open WebUI must list; the first is asked for a chat.
    type: list
    elements: str
    required: true
  deadline:
    description: Seconds to keep trying.
    type: float
    default: 300
  request_timeout:
    description: Seconds one request may take (a CPU tier's answer included).
    type: float
    default: 120
  ca_data:
    description: PEM of the only CA to trust (the collection's own); the controller's store is not used then.
    type: str
  connect_address:
    description: Open connections to this address, keeping the URL's name for TLS and the Host header.
    type: str
notes:
  - The gateway key Open WebUI uses is never read here; only the admin's password is sent, to Open WebUI.
attributes:
  check_mode:
    description: Can run in check mode; it then does not probe.
    support: full
  diff_mode:
    description: Reports no diff; the gate changes nothing.
    support: none
"""

EXAMPLES = r"""
- name: Gate on the chat page answering
  homelab.gpu_stack.open_webui_gate:
    url: https://chat.gpu-stack.home.arpa
    email: admin@gpu-stack.home.arpa
    password: "{{ open_webui_admin_password }}"
    names: [llama-3.1-8b]
    ca_data: "{{ lookup('ansible.builtin.file', '~/.local/share/homelab-gpu-stack/tls/ca.crt') }}"
  no_log: true
"""

RETURN = r"""
passed:
  description: Whether a chat was answered (null in check mode).
  returned: always
  type: bool
models:
  description: The model names Open WebUI listed.
  returned: when passed
  type: list
  elements: str
model:
  description: The model asked.
  returned: when passed
  type: str
answer:
  description: The chat's answer.
  returned: when passed
  type: str
attempts:
  description: Attempts made.
  returned: always
  type: int
elapsed_s:
  description: Seconds the gate took.
  returned: always
  type: float
"""

import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.homelab.gpu_stack.plugins.module_utils.open_webui_gate import run_gate
from ansible_collections.homelab.gpu_stack.plugins.module_utils.openai_gate import http_library, http_transport


def http_request(url, timeout, ca_data=None, connect_address=None):
    client = http_library().Client(transport=http_transport(ca_data=ca_data, connect_address=connect_address),
                                   timeout=timeout)
    root = url.rstrip("/")

    def request(method, path, body=None, token=None):
        headers = {"Authorization": "Bearer " + token} if token else {}
        response = client.request(method, root + path, json=body, headers=headers)
        try:
            return response.status_code, response.json()
        except ValueError:
            return response.status_code, None
    return request


def main():
    module = AnsibleModule(argument_spec={
        "url": {"type": "str", "required": True},
        "email": {"type": "str", "required": True},
        "password": {"type": "str", "required": True, "no_log": True},
        "names": {"type": "list", "elements": "str", "required": True},
        "deadline": {"type": "float", "default": 300},
        "request_timeout": {"type": "float", "default": 120},
        "ca_data": {"type": "str"},
        "connect_address": {"type": "str"},
    }, supports_check_mode=True)
    params = module.params
    if not params["names"]:
        module.fail_json(msg="names: give at least one model name for Open WebUI to list and answer with")
    if module.check_mode:
        module.exit_json(changed=False, passed=None, attempts=0, elapsed_s=0.0, msg="check mode: Open WebUI not probed")
    request = http_request(params["url"], params["request_timeout"], params["ca_data"], params["connect_address"])
    result = run_gate(request, params["email"], params["password"], params["names"], params["deadline"],
                      time.monotonic, time.sleep)
    if not result["passed"]:
        module.fail_json(changed=False, **result)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
