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
  - Runs on the controller (an action plugin; the render folder is the controller's), in one
    call for the whole list, so rendering 50 models costs one task, not one per file.
  - A file is rewritten only when its content or mode differs (idempotent); check mode and
    diff mode report what would change without writing.
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
  header:
    description:
      - A comment put at the top of every file, one C(#) line per line, formatted with the
        object's metadata (C({name}) is the object's name). Empty for none.
    type: str
    default: ""
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
attributes:
  action:
    support: full
  async:
    support: none
  bypass_host_loop:
    support: none
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
