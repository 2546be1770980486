# -*- coding: utf-8 -*-
# Copyright: homelab.gpu_stack contributors
# Apache License 2.0 (see LICENSE)
"""Filters that hand the normalised model and tier specs to roles and templates."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: model_specs
short_description: Normalised model specs of the GPU workers
description:
  - Collects C(gpu_stack_models) from every host given, validates each against
    the one model spec shape and fills its defaults (served name, node, cache).
  - Fails naming the variable path on a bad field, a duplicate name or served name.
positional: _input, hosts
options:
  _input:
    description: C(hostvars).
    type: dict
    required: true
  hosts:
    description: The host names whose models to collect (normally C(groups['gpu_workers'])).
    type: list
    elements: str
    required: true
"""

from ansible.errors import AnsibleFilterError
from ansible.utils.display import Display

from ansible_collections.homelab.gpu_stack.plugins.module_utils.inventory import check_inventory, unknown_variables
from ansible_collections.homelab.gpu_stack.plugins.module_utils.model_spec import (
    SpecError, collect_models, normalize_tiers, public, tier_chain)


def _wrap(func, *args):
    try:
        return func(*args)
    except SpecError as exc:
        raise AnsibleFilterError(str(exc))


def model_specs(hostvars, hosts):
    return [public(m) for m in _wrap(collect_models, hostvars, hosts)]


def tier_specs(tiers):
    """Tiers as a dict by name, each with its ``chain`` of tier names."""
    def build():
        normal = normalize_tiers(tiers)
        return dict((name, dict(public(t), chain=tier_chain(normal, name)))
                    for name, t in normal.items())
    return _wrap(build)


def inventory_check(hostvars, groups, modes, active_mode, tiers):
    """The whole inventory validated and normalised (models, gpus, tiers, routes)."""
    return _wrap(check_inventory, hostvars, groups, modes, active_mode, tiers)


def warn_unknown_variables(hostvars, hosts):
    """Warns (once per variable and host) about gpu_stack_*-like variables the
    collection does not read; returns the messages."""
    messages = unknown_variables(dict((host, list(hostvars[host].keys())) for host in hosts))
    for message in messages:
        Display().warning(message)
    return messages


class FilterModule(object):
    def filters(self):
        return {
            "model_specs": model_specs,
            "tier_specs": tier_specs,
            "inventory_check": inventory_check,
            "warn_unknown_variables": warn_unknown_variables,
        }
