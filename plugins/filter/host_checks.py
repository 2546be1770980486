# -*- coding: utf-8 -*-
# Copyright: homelab.gpu_stack contributors
# Apache License 2.0 (see LICENSE)
"""Pure helpers behind the preflight host checks."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: disk_needs
short_description: Free space needed per mount for k3s state and model caches
description:
  - For one host, groups the hostPath model caches it holds by the mount that
    contains each cache folder, adds the baseline for k3s state on the mount of
    C(/var/lib), and compares with what the mount has free.
positional: _input, models, host, min_free_gib
options:
  _input:
    description: C(ansible_facts.mounts).
    type: list
    elements: dict
    required: true
  models:
    description: The stack model's models (C(preflight_stack_model.models)), each with its C(spec) and C(cache_gib).
    type: list
    elements: dict
    required: true
  host:
    description: The host whose caches count.
    type: str
    required: true
  min_free_gib:
    description: Baseline free space for k3s state under C(/var/lib).
    type: float
    required: true
"""

GIB = 1024.0 ** 3


def mount_of(mounts, path):
    """The mount entry holding ``path`` (longest prefix), or None."""
    best = None
    for entry in mounts:
        mount = entry.get("mount", "")
        if "size_available" not in entry:
            continue
        prefix = mount.rstrip("/") + "/"
        if (path == mount or path.startswith(prefix) or mount == "/") and \
                (best is None or len(mount) > len(best["mount"])):
            best = entry
    return best


def disk_needs(mounts, models, host, min_free_gib):
    needs = {}
    base = mount_of(mounts, "/var/lib")
    if base is not None:
        needs[base["mount"]] = {"entry": base, "need": float(min_free_gib), "why": ["k3s state"]}
    for model in models:
        cache = model["spec"].get("cache") or {}
        if model.get("node") != host or cache.get("kind") != "hostPath":
            continue
        entry = mount_of(mounts, cache["path"])
        if entry is None:
            continue
        slot = needs.setdefault(entry["mount"], {"entry": entry, "need": 0.0, "why": []})
        # The stack model's one size rule (the model_cache role's check reads it too).
        slot["need"] += float(model["cache_gib"])
        slot["why"].append("%s cache %s" % (model["name"], cache["path"]))
    out = []
    for mount, slot in sorted(needs.items()):
        free = slot["entry"].get("size_available", 0) / GIB
        out.append({"mount": mount, "free_gib": round(free, 1), "need_gib": round(slot["need"], 1),
                    "ok": free >= slot["need"], "for": slot["why"]})
    return out


def disk_shortfall(need, host):
    """The message for one mount of disk_needs that lacks room."""
    return ("%s: %s GiB free on %s, %s GiB needed for %s (preflight_min_free_gib, "
            "gpu_stack_models[].cache.size_gib)"
            % (host, need["free_gib"], need["mount"], need["need_gib"], " + ".join(need["for"])))


class FilterModule(object):
    def filters(self):
        return {"disk_needs": disk_needs, "disk_shortfall": disk_shortfall}
