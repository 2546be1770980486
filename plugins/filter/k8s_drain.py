# -*- coding: utf-8 -*-
# Copyright: homelab.gpu_stack contributors
# Apache License 2.0 (see LICENSE)
"""Which PodDisruptionBudgets stop a node's drain."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: blocking_pdbs
short_description: The PodDisruptionBudgets that forbid evicting a node's pods
description:
  - Given PodDisruptionBudgets and the pods on a node (as C(kubernetes.core.k8s_info) returns them),
    lists each budget that selects one of those pods and allows no disruption now
    (C(status.disruptionsAllowed) 0), as the eviction API would refuse them.
  - Each item has C(namespace), C(name), C(pods) (the node's pods it guards), C(current_healthy),
    C(desired_healthy) and C(expected_pods), for a message a user can act on.
positional: _input, pods
options:
  _input:
    description: PodDisruptionBudget objects.
    type: list
    elements: dict
    required: true
  pods:
    description: Pod objects (those on the node being drained).
    type: list
    elements: dict
    required: true
"""


def _matches(selector, labels):
    """Kubernetes label selector semantics (matchLabels and matchExpressions)."""
    selector = selector or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def blocking_pdbs(pdbs, pods):
    out = []
    for pdb in pdbs or []:
        meta, status = pdb.get("metadata") or {}, pdb.get("status") or {}
        selector = (pdb.get("spec") or {}).get("selector")
        # policy/v1: a null selector selects no pod, an empty one every pod of the namespace.
        if selector is None or int(status.get("disruptionsAllowed") or 0) > 0:
            continue
        guarded = [p["metadata"]["name"] for p in pods or []
                   if (p.get("metadata") or {}).get("namespace") == meta.get("namespace")
                   and not (p.get("metadata") or {}).get("deletionTimestamp")
                   and _matches(selector, (p.get("metadata") or {}).get("labels") or {})]
        if guarded:
            out.append({"namespace": meta.get("namespace"), "name": meta.get("name"), "pods": guarded,
                        "current_healthy": int(status.get("currentHealthy") or 0),
                        "desired_healthy": int(status.get("desiredHealthy") or 0),
                        "expected_pods": int(status.get("expectedPods") or 0)})
    return out


class FilterModule(object):
    def filters(self):
        return {"blocking_pdbs": blocking_pdbs}
