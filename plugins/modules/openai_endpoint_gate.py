#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: homelab.gpu_stack contributors
# Apache License 2.0 (see LICENSE)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: openai_endpoint_gate
short_description: Wait until an OpenAI-compatible endpoint really serves chat completions
description:
  - Waits until a vLLM server or a LiteLLM gateway is really serving, in three steps
    that share one deadline.
  - 1. The health path answers 2xx (vLLM C(/health), LiteLLM C(/health/liveliness)).
  - 2. C(/v1/models) lists every name in I(names).
  - 3. A real chat completion through the C(openai) client returns non-empty content
    for every name.
  - Each step is retried every I(poll_interval) seconds. On failure the message names
    the step and the last error seen (connection refused, HTTP 503, a name missing
    from the list, an empty answer, a refused key), never only that time ran out.
  - With I(expect_fallback) the chat step passes only when a fallback answered (LiteLLM's
    header C(x-litellm-attempted-fallbacks) at least 1). Asked for a model group whose own
    deployment cannot answer (the litellm role's C(<tier>-via-fallback) probes), it proves
    the gateway's fallback chain end to end, without LiteLLM's C(mock_testing_fallbacks)
    (which only C(dangerously_allow_mock_testing_request_params) would allow, for every key).
  - Read-only; never reports a change.
version_added: 0.1.0
author:
  - homelab.gpu_stack contributors (@homelab-gpu-stack)
requirements:
  - openai (Python package, on the host that runs the module; site.yml delegates it to the controller)
options:
  base_url:
    description: The OpenAI base URL, with its C(/v1) (for example C(http://tiny-chat.llm.svc:8000/v1)).
    type: str
    required: true
  api_key:
    description: Bearer key (the LiteLLM master key or a vLLM C(--api-key)); omit for none.
    type: str
  names:
    description: Model names (served names or LiteLLM model groups) that must be listed and answer.
    type: list
    elements: str
    required: true
  deadline:
    description: Seconds all steps together may take before the gate fails.
    type: float
    default: 300
  poll_interval:
    description: Seconds between attempts of a failing step (a probe is cheap; short keeps the gate close behind the server).
    type: float
    default: 0.25
  request_timeout:
    description: Seconds one HTTP request may take (capped by what is left of the deadline).
    type: float
    default: 30
  health_path:
    description:
      - Path from the server root (not under C(/v1)) that must answer 2xx, or a full URL.
      - C(/health) for vLLM, C(/health/liveliness) for LiteLLM. An empty string skips the step.
    type: str
    default: /health
  expect_fallback:
    description:
      - Require that a fallback deployment answered each chat (LiteLLM only).
    type: bool
    default: false
  prompt:
    description: The user message of the smoke chat completion.
    type: str
    default: Say hello.
  max_tokens:
    description: Token cap of the smoke completion.
    type: int
    default: 8
  ca_path:
    description:
      - PEM file of the CA to trust for an C(https) I(base_url), instead of the controller's
        trust store (the CA the collection made for its Ingresses).
    type: path
  ca_data:
    description: The same as I(ca_path), as PEM text (read from the Ingress's TLS Secret C(ca.crt)).
    type: str
  connect_address:
    description:
      - Connect to this address (IP or name) for I(base_url)'s host, keeping the host name for the
        C(Host) header, SNI and the certificate check, as C(curl --resolve) does.
      - Lets the gate reach an Ingress host that no DNS of the controller knows yet.
    type: str
  probe_in_check_mode:
    description:
      - In check mode nothing was deployed, so by default the endpoint is not probed and
        the module returns C(passed=null). Set C(true) to probe anyway (the gate only reads).
    type: bool
    default: false
attributes:
  check_mode:
    description: Can run in check mode; by default it then does not probe (see I(probe_in_check_mode)).
    support: full
  diff_mode:
    description: Reports no diff; the gate changes nothing.
    support: none
notes:
  - The first chat completion of a fresh vLLM can take longer than later ones; size I(request_timeout) for it.
seealso:
  - name: LiteLLM fallbacks
    description: router_settings.fallbacks.
    link: https://docs.litellm.ai/docs/proxy/reliability
"""

EXAMPLES = r"""
- name: Gate on one vLLM server after its rollout
  homelab.gpu_stack.openai_endpoint_gate:
    base_url: "http://tiny-chat.llm.svc:8000/v1"
    names: [tiny-chat]
    deadline: 600
  delegate_to: localhost

- name: Prove the fallback chain through a probe group only the cpu tier can answer
  homelab.gpu_stack.openai_endpoint_gate:
    base_url: "https://llm.home.arpa/v1"
    api_key: "{{ litellm_master_key }}"
    names: [cpu-via-fallback]
    health_path: /health/liveliness
    expect_fallback: true
    deadline: 120
  delegate_to: localhost
  no_log: false
  register: gateway_gate

- name: Gate on the gateway's Ingress by name before any DNS knows it, trusting only the collection's CA
  homelab.gpu_stack.openai_endpoint_gate:
    base_url: "https://llm.gpu-stack.home.arpa/v1"
    api_key: "{{ litellm_master_key }}"
    names: [tiny-chat]
    health_path: /health/liveliness
    connect_address: 192.168.1.10
    ca_path: ~/.local/share/homelab-gpu-stack/tls/ca.crt
  delegate_to: localhost

- name: Show which backend answered the fallback
  ansible.builtin.debug:
    msg: "{{ gateway_gate.chat['cpu-via-fallback'].headers['x-litellm-model-api-base'] }}"
"""

RETURN = r"""
passed:
  description: Whether every step passed; null in check mode when the endpoint was not probed.
  returned: always
  type: bool
  sample: true
base_url:
  description: The base URL probed.
  returned: always
  type: str
  sample: http://127.0.0.1:8000/v1
steps:
  description: Per step (health, models, chat) whether it passed, its attempts and its latency in seconds.
  returned: always
  type: dict
  sample:
    health: {passed: true, attempts: 14, latency_s: 27.1}
    models: {passed: true, attempts: 1, latency_s: 0.004}
    chat: {passed: true, attempts: 1, latency_s: 0.09}
models:
  description: The model ids C(/v1/models) listed.
  returned: when the models step passed
  type: list
  elements: str
  sample: [tiny-chat]
chat:
  description:
    - Per name, the answer's content, the model that answered, the request latency and the
      LiteLLM headers naming the backend (C(x-litellm-model-api-base), C(x-litellm-attempted-fallbacks)).
  returned: when the chat step passed
  type: dict
  sample:
    tiny-chat:
      content: hello there
      model: tiny-chat
      latency_s: 0.08
      headers: {x-litellm-attempted-fallbacks: "1", x-litellm-model-api-base: "http://cpu:8080/v1"}
attempts:
  description: Attempts made over all steps.
  returned: always
  type: int
  sample: 16
elapsed_s:
  description: Seconds from the first attempt to the end of the gate.
  returned: always
  type: float
  sample: 27.2
last_error:
  description: The last error any step saw (null if none); on failure it is in C(msg) too.
  returned: always
  type: str
  sample: "health: ConnectError: [Errno 111] Connection refused"
"""

import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.homelab.gpu_stack.plugins.module_utils.openai_gate import (
    Gate, GateError, client_get, http_client, openai_client_factory)

try:
    import openai  # noqa: F401 pylint: disable=unused-import
    HAS_OPENAI = True
    OPENAI_IMPORT_ERROR = None
except ImportError:
    HAS_OPENAI = False
    OPENAI_IMPORT_ERROR = traceback.format_exc()


def main():
    argument_spec = {
        "base_url": {"type": "str", "required": True},
        "api_key": {"type": "str", "no_log": True},
        "names": {"type": "list", "elements": "str", "required": True},
        "deadline": {"type": "float", "default": 300},
        "poll_interval": {"type": "float", "default": 0.25},
        "request_timeout": {"type": "float", "default": 30},
        "health_path": {"type": "str", "default": "/health"},
        "expect_fallback": {"type": "bool", "default": False},
        "prompt": {"type": "str", "default": "Say hello."},
        "max_tokens": {"type": "int", "default": 8, "no_log": False},
        "probe_in_check_mode": {"type": "bool", "default": False},
        "ca_path": {"type": "path"},
        "ca_data": {"type": "str"},
        "connect_address": {"type": "str"},
    }
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           mutually_exclusive=[("ca_path", "ca_data")])
    params = module.params
    if not HAS_OPENAI:
        module.fail_json(msg=missing_required_lib("openai"), exception=OPENAI_IMPORT_ERROR)
    if module.check_mode and not params["probe_in_check_mode"]:
        module.exit_json(changed=False, passed=None, base_url=params["base_url"], steps={},
                         attempts=0, elapsed_s=0.0, last_error=None,
                         msg="check mode: endpoint not probed")
    try:
        client = http_client(params["ca_path"], params["ca_data"], params["connect_address"])
    except (IOError, OSError, ValueError) as exc:
        module.fail_json(msg="ca_path/ca_data: cannot load the CA: %s" % exc)
    try:
        gate = Gate(params["base_url"], params["names"], api_key=params["api_key"],
                    deadline=params["deadline"], poll_interval=params["poll_interval"],
                    health_path=params["health_path"], expect_fallback=params["expect_fallback"],
                    request_timeout=params["request_timeout"], prompt=params["prompt"],
                    max_tokens=params["max_tokens"], http_get=client_get(client),
                    client_factory=openai_client_factory(client))
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    try:
        result = gate.run()
    except GateError as exc:
        module.fail_json(msg=str(exc), changed=False, **exc.result)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
