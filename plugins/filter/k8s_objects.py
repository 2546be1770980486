# -*- coding: utf-8 -*-
# Copyright: homelab.gpu_stack contributors
# Apache License 2.0 (see LICENSE)
"""The k8s_objects role's completeness rule, the one k8s_render applies (plugin_utils/k8s_render.py)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: k8s_objects_problem
short_description: Why a list of Kubernetes objects cannot be applied or rendered, or an empty string
description:
  - The first object without apiVersion, kind or metadata.name, or the first two that share
    a kind and name (they would overwrite each other, in the cluster or in the render folder).
  - The same rule k8s_render applies before it writes a file.
positional: _input
options:
  _input:
    description: Kubernetes objects.
    type: list
    elements: raw
    required: true
"""

from ansible_collections.homelab.gpu_stack.plugins.plugin_utils.k8s_render import file_names


def k8s_objects_problem(objects):
    try:
        file_names(objects or [])
    except ValueError as exc:
        return str(exc)
    return ""


class FilterModule(object):
    def filters(self):
        return {"k8s_objects_problem": k8s_objects_problem}
