# Copyright: homelab.gpu_stack contributors
# Apache License 2.0 (see LICENSE)
"""The render folder's rule: one file per object, <kind lowercase>-<name>.yaml,
rewritten only when its text or mode differs. Pure: the action k8s_render
(controller side, hence plugin_utils) reads and writes the files."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

import yaml


def file_names(objects):
    """The file of each object, in order; ValueError on an incomplete object or two that share a file."""
    names, seen = [], {}
    for index, obj in enumerate(objects):
        if not isinstance(obj, dict) or not obj.get("apiVersion") or not obj.get("kind") \
                or not (obj.get("metadata") or {}).get("name"):
            raise ValueError("objects[%d]: an object needs apiVersion, kind and metadata.name" % index)
        name = "%s-%s.yaml" % (obj["kind"].lower(), obj["metadata"]["name"])
        if name in seen:
            raise ValueError("objects[%d] and objects[%d] would both be written to %s" % (seen[name], index, name))
        seen[name] = index
        names.append(name)
    return names


def dump(obj, header=""):
    """The file's text: an optional comment header, then the object as YAML, keys sorted."""
    comment = "".join("# %s\n" % line if line else "#\n" for line in header.splitlines())
    return comment + yaml.safe_dump(obj, default_flow_style=False, sort_keys=True, indent=2)


def plan(objects, dest, mode, read, header=""):
    """(every file's path, [(path, text, text before or None)] of those to write).

    read(path) -> (text, mode) or None; header is formatted with the object's metadata."""
    paths, todo = [], []
    for name, obj in zip(file_names(objects), objects):
        path = os.path.join(dest, name)
        text = dump(obj, header.format(**obj["metadata"]) if header else "")
        found = read(path)
        paths.append(path)
        if found != (text, mode):
            todo.append((path, text, found[0] if found else None))
    return paths, todo
