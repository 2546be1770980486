#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: homelab.gpu_stack contributors
# Apache License 2.0 (see LICENSE)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: gpu_facts
short_description: Gather NVIDIA GPU facts with nvidia-smi
version_added: "0.1.0"
description:
  - Runs C(nvidia-smi --query-gpu=index,name,uuid,memory.total,memory.used,driver_version,compute_cap
    --format=csv,noheader,nounits) and returns one entry per GPU plus totals.
  - Sets the fact C(gpu_stack_gpus) (the per-GPU list) and C(gpu_stack_gpu_summary) (the totals).
  - A driver that nvidia-smi cannot reach, a machine where it finds no GPU, or a field it
    cannot read (C([N/A]), as with MIG instances or a lost GPU) fail with a message that says
    what to check, rather than returning partial facts.
  - Read-only, so it also runs in check mode.
author:
  - homelab.gpu_stack maintainers (@homelab)
options:
  nvidia_smi_path:
    description:
      - Path of the nvidia-smi executable.
      - When not set, C(nvidia-smi) is looked up in C(PATH) and the usual driver locations.
    type: path
  missing:
    description:
      - What to do when nvidia-smi is not installed.
      - C(fail) fails naming the places searched; use it on hosts that must have a GPU.
      - C(empty) returns C(gpus=[]) and C(count=0); use it to probe hosts that may have none.
      - Only a missing executable is covered; a present nvidia-smi that fails always fails the task.
    type: str
    choices: [fail, empty]
    default: fail
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.facts
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  platform:
    platforms: posix
  facts:
    support: full
notes:
  - C(compute_cap) needs NVIDIA driver 510 or newer; older drivers fail with a message saying so.
  - Memory figures are MiB as nvidia-smi reports them (C(nounits)).
"""

EXAMPLES = r"""
- name: Gather GPU facts on the GPU workers
  homelab.gpu_stack.gpu_facts:
  register: gpu

- name: Check the inventory's card against the one found
  ansible.builtin.assert:
    that:
      - gpu.inventory_gpu.vram_mib == gpu_stack_gpu.vram_mib
    fail_msg: >-
      gpu_stack_gpu.vram_mib says {{ gpu_stack_gpu.vram_mib }} MiB but nvidia-smi reports
      {{ gpu.inventory_gpu.vram_mib }} MiB ({{ gpu.inventory_gpu.model }})

- name: Probe a host that may have no GPU
  homelab.gpu_stack.gpu_facts:
    missing: empty

- name: Use a driver install outside PATH
  homelab.gpu_stack.gpu_facts:
    nvidia_smi_path: /usr/local/nvidia/bin/nvidia-smi
"""

RETURN = r"""
gpus:
  description: One entry per GPU, sorted by index.
  returned: always
  type: list
  elements: dict
  contains:
    index:
      description: nvidia-smi's GPU index.
      type: int
      sample: 0
    name:
      description: Product name.
      type: str
      sample: NVIDIA GeForce RTX 4090
    uuid:
      description: GPU UUID.
      type: str
      sample: GPU-44203f95-b3e4-c404-062b-6ae8deb0d88c
    memory_total_mib:
      description: Total memory in MiB.
      type: int
      sample: 24564
    memory_used_mib:
      description: Memory in use when gathered, in MiB.
      type: int
      sample: 1
    driver_version:
      description: NVIDIA driver version.
      type: str
      sample: "580.159.04"
    compute_capability:
      description: CUDA compute capability, major.minor.
      type: str
      sample: "8.9"
count:
  description: Number of GPUs.
  returned: always
  type: int
  sample: 2
memory_total_mib:
  description: Sum of C(memory_total_mib) over all GPUs.
  returned: always
  type: int
  sample: 49152
memory_used_mib:
  description: Sum of C(memory_used_mib) over all GPUs.
  returned: always
  type: int
  sample: 3
names:
  description: Distinct GPU product names.
  returned: always
  type: list
  elements: str
  sample: [NVIDIA GeForce RTX 3090]
driver_version:
  description: The driver version when all GPUs agree, else null.
  returned: always
  type: str
  sample: "580.159.04"
inventory_gpu:
  description:
    - The C(gpu_stack_gpu) inventory value that describes this host (model, vram_mib, count).
    - Null when the host has no GPU or mixed GPU models.
  returned: always
  type: dict
  sample: {model: NVIDIA GeForce RTX 3090, vram_mib: 24576, count: 2}
nvidia_smi:
  description: The nvidia-smi path used; null when it was not found and O(missing=empty).
  returned: always
  type: str
  sample: /usr/bin/nvidia-smi
ansible_facts:
  description: Facts set for later tasks.
  returned: always
  type: dict
  contains:
    gpu_stack_gpus:
      description: Same as RV(gpus).
      type: list
      elements: dict
    gpu_stack_gpu_summary:
      description: RV(count), RV(memory_total_mib), RV(memory_used_mib), RV(names),
        RV(driver_version) and RV(inventory_gpu).
      type: dict
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.homelab.gpu_stack.plugins.module_utils.gpu import (
    GpuQueryError,
    gather,
    summarize,
)

# Driver installs that do not put nvidia-smi in PATH: the NVIDIA .run installer
# and the GPU operator / container toolkit layouts.
EXTRA_PATHS = ["/usr/local/nvidia/bin", "/usr/local/bin", "/opt/nvidia/bin"]


def main():
    module = AnsibleModule(
        argument_spec=dict(
            nvidia_smi_path=dict(type="path"),
            missing=dict(type="str", choices=["fail", "empty"], default="fail"),
        ),
        supports_check_mode=True,
    )
    path = module.params["nvidia_smi_path"]
    if path:
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            path = None
    else:
        path = module.get_bin_path("nvidia-smi", opt_dirs=EXTRA_PATHS)

    if not path:
        where = module.params["nvidia_smi_path"] or "PATH and %s" % ", ".join(EXTRA_PATHS)
        if module.params["missing"] == "fail":
            module.fail_json(msg="nvidia-smi not found (looked in %s): install the NVIDIA driver "
                                 "utilities, set nvidia_smi_path, or use missing=empty on hosts "
                                 "that may have no GPU" % where)
        gpus, summary = [], summarize([])
    else:
        try:
            gpus, summary, _raw = gather(
                lambda argv: module.run_command(argv, environ_update={"LC_ALL": "C"}), path)
        except GpuQueryError as exc:
            module.fail_json(msg=str(exc), nvidia_smi=path)

    result = dict(changed=False, gpus=gpus, nvidia_smi=path,
                  ansible_facts=dict(gpu_stack_gpus=gpus, gpu_stack_gpu_summary=summary))
    result.update(summary)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
