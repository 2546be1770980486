#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: homelab.gpu_stack contributors
# Apache License 2.0 (see LICENSE)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: k8s_render
short_description: Write Kubernetes objects to a folder, one file per object
version_added: "0.1.0"
description:
  - Writes each object of O(objects) as YAML (keys sorted) to
    C(<dest>/<kind lowercase>-<metadata.name>.yaml), the render mode of the internal
    role k8s_objects (GitOps folders, render tests).
  - One call for the whole list, so rendering 50 models costs one module run, not one per file.
  - A file is rewritten only when its content differs (idempotent); check mode and diff mode
    report what would change without writing.
  - Fails, before writing anything, on an object without apiVersion, kind or metadata.name,
    and on two objects that would share a file name.
author:
  - homelab.gpu_stack maintainers (@homelab)
options:
  objects:
    description: Complete Kubernetes objects.
    type: list
    elements: dict
    required: true
  dest:
    description: Folder to write to (created when missing).
    type: path
    required: true
  mode:
    description: File mode of the written files (use C(0600) for Secrets).
    type: str
    default: "0644"
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
  platform:
    platforms: posix
"""

EXAMPLES = r"""
- name: Render the objects
  homelab.gpu_stack.k8s_render:
    objects: "{{ vllm_objects | rejectattr('kind', 'equalto', 'Secret') | list }}"
    dest: ./rendered
"""

RETURN = r"""
files:
  description: Every file of the list, in order.
  type: list
  elements: str
  returned: always
changed_files:
  description: The files written (or that would be, in check mode).
  type: list
  elements: str
  returned: always
"""

import os

from ansible.module_utils.basic import AnsibleModule

try:
    import yaml
    HAS_YAML = True
except ImportError:
    HAS_YAML = False


def file_name(obj, index):
    if not isinstance(obj, dict) or not obj.get("apiVersion") or not obj.get("kind") \
            or not (obj.get("metadata") or {}).get("name"):
        raise ValueError("objects[%d]: an object needs apiVersion, kind and metadata.name" % index)
    return "%s-%s.yaml" % (obj["kind"].lower(), obj["metadata"]["name"])


def main():
    module = AnsibleModule(
        argument_spec=dict(
            objects=dict(type="list", elements="dict", required=True),
            dest=dict(type="path", required=True),
            mode=dict(type="str", default="0644"),
        ),
        supports_check_mode=True,
    )
    if not HAS_YAML:
        module.fail_json(msg="k8s_render needs PyYAML on the host that runs it")
    dest, mode = module.params["dest"], int(module.params["mode"], 8)
    names, seen = [], {}
    try:
        for index, obj in enumerate(module.params["objects"]):
            name = file_name(obj, index)
            if name in seen:
                raise ValueError("objects[%d] and objects[%d] would both be written to %s"
                                 % (seen[name], index, name))
            seen[name] = index
            names.append(name)
    except ValueError as exc:
        module.fail_json(msg=str(exc))

    changed, diffs = [], []
    for name, obj in zip(names, module.params["objects"]):
        path = os.path.join(dest, name)
        text = yaml.safe_dump(obj, default_flow_style=False, sort_keys=True, indent=2)
        before = None
        if os.path.exists(path):
            with open(path) as handle:
                before = handle.read()
        mode_ok = before is not None and (os.stat(path).st_mode & 0o7777) == mode
        if before == text and mode_ok:
            continue
        changed.append(path)
        if module._diff:
            diffs.append({"before_header": path, "after_header": path,
                          "before": before or "", "after": text})
        if module.check_mode:
            continue
        if not os.path.isdir(dest):
            os.makedirs(dest)
        tmp = path + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(tmp, mode)
        os.rename(tmp, path)
    result = dict(changed=bool(changed), files=[os.path.join(dest, n) for n in names],
                  changed_files=changed)
    if module._diff:
        result["diff"] = diffs
    module.exit_json(**result)


if __name__ == "__main__":
    main()
