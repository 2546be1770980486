#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: homelab.gpu_stack contributors
# Apache License 2.0 (see LICENSE)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: k8s_gpu_capacity
short_description: Wait until every GPU node offers its GPUs to the scheduler
description:
  - Reads each node's C(status.allocatable) through the Kubernetes API and waits
    until the GPU resource (C(nvidia.com/gpu)) is at least the expected count on
    every node given, and the node is Ready.
  - Expected count per node is I(nodes[].gpus) times I(per_gpu) (time-slicing replicas).
  - Fails after I(timeout) seconds naming each node that falls short and what it reports
    (resource missing, a smaller count, not Ready, node unknown).
  - Read-only. In check mode the nodes are read once and the result reported without
    waiting or failing, since in a check run the device plugin is not installed yet.
version_added: 0.1.0
author:
  - homelab.gpu_stack maintainers (@homelab)
extends_documentation_fragment:
  - homelab.gpu_stack.k8s_auth
  - ansible.builtin.action_common_attributes
options:
  nodes:
    description:
      - The GPU nodes, each C({name, gpus}) or a node name (one GPU).
    type: list
    elements: raw
    required: true
  per_gpu:
    description:
      - Devices advertised per physical GPU (the device plugin's time-slicing replicas; 1 when off).
    type: int
    default: 1
  resource:
    description: Extended resource name of the GPUs.
    type: str
    default: nvidia.com/gpu
  timeout:
    description: Seconds to wait in all; C(0) reads once.
    type: int
    default: 300
  poll:
    description: Seconds between reads.
    type: int
    default: 5
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  platform:
    platforms: posix
notes:
  - Only the allocatable figure counts, since the scheduler places pods by it; capacity is reported beside it.
"""

EXAMPLES = r"""
- name: Gate on the GPUs of the workers
  homelab.gpu_stack.k8s_gpu_capacity:
    kubeconfig: ~/.kube/gpu-stack.yaml
    nodes:
      - name: nuc
        gpus: 1
    timeout: 300

- name: Time-slicing, 4 pods per GPU
  homelab.gpu_stack.k8s_gpu_capacity:
    nodes: "{{ groups['gpu_workers'] }}"
    per_gpu: 4
"""

RETURN = r"""
nodes:
  description: Per node, what it reports.
  returned: always
  type: list
  elements: dict
  sample:
    - name: nuc
      expected: 1
      found: true
      allocatable: 1
      capacity: 1
      ready: true
      unschedulable: false
      problem: null
total_allocatable:
  description: Sum of the allocatable GPU resource over the nodes given.
  returned: always
  type: int
  sample: 2
satisfied:
  description: Whether every node offers at least its expected count.
  returned: always
  type: bool
attempts:
  description: Number of reads made.
  returned: always
  type: int
elapsed:
  description: Seconds spent waiting.
  returned: always
  type: float
"""

from ansible_collections.homelab.gpu_stack.plugins.module_utils.k8s_gpu import (
    CapacityError,
    make_api_client,
    node_reader,
    normalize_nodes,
    wait_for_capacity,
)
from ansible_collections.homelab.gpu_stack.plugins.module_utils.k8s_module import k8s_module


def main():
    argument_spec = {
        "nodes": {"type": "list", "elements": "raw", "required": True},
        "per_gpu": {"type": "int", "default": 1},
        "resource": {"type": "str", "default": "nvidia.com/gpu"},
        "timeout": {"type": "int", "default": 300},
        "poll": {"type": "int", "default": 5},
    }
    module = k8s_module(argument_spec)

    params = module.params
    try:
        nodes = normalize_nodes(params["nodes"], params["per_gpu"])
        read = node_reader(make_api_client(params))
        timeout = 0 if module.check_mode else params["timeout"]
        ok, reports, problems, attempts, elapsed = wait_for_capacity(
            read, nodes, resource=params["resource"], timeout=timeout, poll=params["poll"])
    except CapacityError as exc:
        module.fail_json(msg=str(exc))

    result = {
        "changed": False,
        "nodes": reports,
        "satisfied": ok,
        "total_allocatable": sum(r["allocatable"] or 0 for r in reports),
        "attempts": attempts,
        "elapsed": elapsed,
    }
    if ok:
        module.exit_json(**result)
    if module.check_mode:
        module.warn("check mode: not waiting; " + "; ".join(problems))
        module.exit_json(**result)
    module.fail_json(msg="GPU capacity not reached after %ss: %s" % (params["timeout"], "; ".join(problems)),
                     **result)


if __name__ == "__main__":
    main()
