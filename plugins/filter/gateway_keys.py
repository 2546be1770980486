# -*- coding: utf-8 -*-
# Copyright: homelab.gpu_stack contributors
# Apache License 2.0 (see LICENSE)
"""The gateway's consumers (gpu_stack_gateway_keys), validated and normalised."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: gateway_keys
short_description: The gateway's consumers, validated, with their models filled in
description:
  - Each consumer of C(gpu_stack_gateway_keys) (and C(open-webui) when the UI is on) - a
    C(name) (a DNS label, it names the Secret C(gateway-key-<name>)), C(models) (model
    groups the key may call; default every served model and every cpu/cloud tier),
    optional C(max_budget) (US dollars) and C(rpm_limit).
  - Fails naming C(gpu_stack_gateway_keys[i].<field>) on a bad field, a duplicate name or an
    unknown model group.
positional: _input, groups
options:
  _input:
    description: The consumers.
    type: list
    elements: dict
    required: true
  groups:
    description: The model groups a key may name (served names and tier names).
    type: list
    elements: str
    required: true
"""

import re

from ansible.errors import AnsibleFilterError

NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?\Z")
FIELDS = ("name", "models", "max_budget", "rpm_limit")


def gateway_keys(consumers, groups):
    out, seen = [], {}
    for index, consumer in enumerate(consumers or []):
        where = "gpu_stack_gateway_keys[%d]" % index
        if not isinstance(consumer, dict):
            raise AnsibleFilterError("%s: must be a mapping with name and models" % where)
        unknown = sorted(set(consumer) - set(FIELDS))
        if unknown:
            raise AnsibleFilterError("%s: unknown field %s (fields: %s)" % (where, ", ".join(unknown), ", ".join(FIELDS)))
        name = consumer.get("name")
        if not isinstance(name, str) or not NAME.match(name):
            raise AnsibleFilterError("%s.name: %r must be a lowercase DNS label of at most 40 characters "
                                     "(it names the Secret gateway-key-<name>)" % (where, name))
        if name in seen:
            raise AnsibleFilterError("%s.name: '%s' is already used by gpu_stack_gateway_keys[%d]"
                                     % (where, name, seen[name]))
        seen[name] = index
        models = consumer.get("models")
        if models is None:
            models = list(groups)
        if not isinstance(models, list) or not models or not all(isinstance(m, str) for m in models):
            raise AnsibleFilterError("%s.models: must be a non-empty list of model groups (groups: %s)"
                                     % (where, ", ".join(groups)))
        missing = [m for m in models if m not in groups]
        if missing:
            raise AnsibleFilterError("%s.models: %s is not a model group of the gateway (groups: %s)"
                                     % (where, ", ".join(missing), ", ".join(groups)))
        entry = {"name": name, "models": models, "max_budget": None, "rpm_limit": None}
        budget = consumer.get("max_budget")
        if budget is not None:
            if isinstance(budget, bool) or not isinstance(budget, (int, float)) or budget < 0:
                raise AnsibleFilterError("%s.max_budget: %r must be a number of US dollars, 0 or more"
                                         % (where, budget))
            entry["max_budget"] = float(budget)
        rpm = consumer.get("rpm_limit")
        if rpm is not None:
            if isinstance(rpm, bool) or not isinstance(rpm, int) or rpm < 1:
                raise AnsibleFilterError("%s.rpm_limit: %r must be a whole number of requests per minute, 1 or more"
                                         % (where, rpm))
            entry["rpm_limit"] = rpm
        out.append(entry)
    return out


class FilterModule(object):
    def filters(self):
        return {"gateway_keys": gateway_keys}
