# -*- coding: utf-8 -*-
# Copyright: homelab.gpu_stack contributors
# Apache License 2.0 (see LICENSE)
"""The memory a deployed cpu tier's pod asks for: one rule for the role's
preflight (does the host have it?) and its Deployment (the request)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import math

DOCUMENTATION = r"""
name: cpu_tier_memory_mib
short_description: Memory request of a deployed cpu tier, in MiB
description:
  - The model's C(deploy.size_gib) plus I(overhead_gib) (the context and the server), rounded up to a MiB.
positional: _input, overhead_gib
options:
  _input:
    description: One tier as C(homelab.gpu_stack.tier_specs) returns it, with C(deploy).
    type: dict
    required: true
  overhead_gib:
    description: GiB on top of the model (C(cpu_tier_memory_overhead_gib)).
    type: float
    required: true
"""

EXAMPLES = r"""
request_mib: "{{ tier | homelab.gpu_stack.cpu_tier_memory_mib(0.5) }}"
"""

RETURN = r"""
_value:
  description: MiB.
  type: int
"""


def cpu_tier_memory_mib(tier, overhead_gib):
    return int(math.ceil((float(tier["deploy"]["size_gib"]) + float(overhead_gib)) * 1024))


class FilterModule(object):
    def filters(self):
        return {"cpu_tier_memory_mib": cpu_tier_memory_mib}
