#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: homelab.gpu_stack contributors
# Apache License 2.0 (see LICENSE)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: gpu_mode_switch
short_description: Switch the vLLM models to a GPU mode (sleep/wake or scale), gateway first
description:
  - Runs the collection's one switch path (C(module_utils/gpu_switch.py)) against the cluster. Each
    model leaves or arrives by its stack-model C(switch) (C(scale) - its Deployment to 0 or 1 replicas;
    C(sleep) - vLLM's sleep mode, its pod kept).
  - Order - the gateway stops routing to a leaving sleep model (its pod's readiness gate goes False
    and its Service drops it) before it sleeps; everything leaves before anything arrives; an arriving
    model is woken or started, answers a chat, and only then is routed to again.
  - C(phase=away) and C(phase=back) split the switch around a read of the card on the node
    (gpu_mode.yml reads it with gpu_facts); C(away) returns what each card may still hold.
  - vLLM's sleep endpoints are reached through the API server's pod proxy, never an Ingress.
version_added: "0.1.0"
options:
  mode:
    description: The GPU mode to switch to.
    type: str
    required: true
  models:
    description: The stack model's C(models) list (preflight_stack_model.models).
    type: list
    elements: dict
    required: true
  namespace:
    description: Namespace of the vLLM Deployments.
    type: str
    default: llm
  awake_condition:
    description: The readiness gate of the sleep models' pods (the stack model's C(awake_condition)).
    type: str
    default: gpu-stack.homelab/awake
  vllm_port:
    description: The vLLM container port.
    type: int
    default: 8000
  chat_through_proxy:
    description:
      - Prove an arrival with a chat through the pod proxy. Set false where vLLM wants an API key
        (C(vllm_api_key)); the arrival is then proven by C(/health) and the gateway's gate after it.
    type: bool
    default: true
  phase:
    description: Which part of the switch to run.
    type: str
    choices: [away, back, all]
    default: all
  wait_s:
    description: How long one step (a pod gone, a pod ready, a Service updated) may take.
    type: float
    default: 900
  card_idle_mib:
    description: What an idle card shows in use (a desktop's display server), added to the plan's
      residuals in C(card_allowed).
    type: int
    default: 1024
  kubeconfig:
    description: Path to a kubeconfig (else C(K8S_AUTH_KUBECONFIG), else C(~/.kube/config)).
    type: path
  context:
    description: Kubeconfig context.
    type: str
  host:
    description: API server URL (instead of a kubeconfig).
    type: str
  api_key:
    description: Bearer token for C(host).
    type: str
  validate_certs:
    description: Verify the API server's certificate.
    type: bool
    aliases: [verify_ssl]
  ca_cert:
    description: CA bundle for the API server.
    type: path
    aliases: [ssl_ca_cert]
notes:
  - Check mode reads the models' states and returns the steps without changing anything.
author:
  - homelab.gpu_stack maintainers (@homelab)
"""

EXAMPLES = r"""
- name: Put the leaving models away
  homelab.gpu_stack.gpu_mode_switch:
    mode: r1
    models: "{{ hostvars['localhost'].preflight_stack_model.models }}"
    phase: away
  register: away

- name: Bring the mode's models back
  homelab.gpu_stack.gpu_mode_switch:
    mode: r1
    models: "{{ hostvars['localhost'].preflight_stack_model.models }}"
    phase: back
"""

RETURN = r"""
steps:
  description: One entry per model - name, node, switch, level, arrive, before (awake, asleep or stopped).
  returned: always
  type: list
  elements: dict
events:
  description: What happened, in order - [seconds since the start, model or node, what].
  returned: always
  type: list
  elements: list
fallbacks:
  description: Models whose wake failed and that were started cold instead.
  returned: always
  type: list
  elements: str
card_allowed:
  description: Bytes each node's card may still hold once the models left (null where a model stays awake).
  returned: always
  type: dict
seconds:
  description: How long the switch took.
  returned: always
  type: float
said:
  description: Messages for the person switching (a wake that fell back to a cold start).
  returned: always
  type: list
  elements: str
"""

from ansible_collections.homelab.gpu_stack.plugins.module_utils import gpu_switch
from ansible_collections.homelab.gpu_stack.plugins.module_utils.gpu_switch_k8s import (
    ClientTransport,
    KubeError,
    KubeSwitchIO,
)
from ansible_collections.homelab.gpu_stack.plugins.module_utils.k8s_gpu import CapacityError, make_api_client
from ansible_collections.homelab.gpu_stack.plugins.module_utils.k8s_module import k8s_module

PHASES = {"away": ("away",), "back": ("back",), "all": gpu_switch.PHASES}


def main():
    argument_spec = {
        "mode": {"type": "str", "required": True},
        "models": {"type": "list", "elements": "dict", "required": True},
        "namespace": {"type": "str", "default": "llm"},
        "awake_condition": {"type": "str", "default": "gpu-stack.homelab/awake"},
        "vllm_port": {"type": "int", "default": 8000},
        "chat_through_proxy": {"type": "bool", "default": True},
        "phase": {"type": "str", "choices": list(PHASES), "default": "all"},
        "wait_s": {"type": "float", "default": 900.0},
        "card_idle_mib": {"type": "int", "default": 1024},
    }
    module = k8s_module(argument_spec)
    p = module.params
    slack = p["card_idle_mib"] * 2 ** 20
    try:
        io = KubeSwitchIO(ClientTransport(make_api_client(p)), p["namespace"], p["awake_condition"],
                          p["vllm_port"], p["chat_through_proxy"], wait_s=p["wait_s"])
        if module.check_mode:
            steps = gpu_switch.plan_switch(p["models"], p["mode"])
            for step in steps:
                step["before"] = io.state(step)
            changed = any((s["before"] == gpu_switch.AWAKE) != s["arrive"] for s in steps)
            module.exit_json(changed=changed, steps=steps, events=[], fallbacks=[],
                             card_allowed=gpu_switch.card_allowed(steps, slack), seconds=0.0, said=[])
        report = gpu_switch.switch(p["models"], p["mode"], io, deadline_s=max(p["wait_s"] * 4, 900.0),
                                   phases=PHASES[p["phase"]], slack_bytes=slack)
    except (gpu_switch.SwitchError, KubeError, CapacityError) as exc:
        module.fail_json(msg="GPU mode %s: %s" % (p["mode"], exc))
    module.exit_json(changed=report["changed"], steps=report["steps"], events=report["events"],
                     fallbacks=report["fallbacks"], card_allowed=report["card_allowed"],
                     seconds=report["seconds"], said=io.said)


if __name__ == "__main__":
    main()
