# Copyright: homelab.gpu_stack contributors
# Apache License 2.0 (see LICENSE)
"""The k3s stage and every cluster stage agree on one kubeconfig.

The k3s roles fetch the admin kubeconfig to k3s_kubeconfig_local_path; the
add-ons, vLLM and gateway roles (and gpu_mode.yml) read gpu_stack_kubeconfig.
Nothing set the latter once, so stage 4 talked to ~/.kube/config. This runs
the entry point site.yml and gpu_mode.yml use, then each role's defaults.
"""

import json
from pathlib import Path

import pytest
from playbook import run_playbook

ROOT = Path(__file__).resolve().parents[2]

PLAYBOOK = """
- hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - ansible.builtin.include_role:
        name: homelab.gpu_stack.k3s
        tasks_from: kubeconfig_path
    - ansible.builtin.copy:
        dest: "{{ out }}"
        mode: "0600"
        content: "{{ {'gpu_stack_kubeconfig': gpu_stack_kubeconfig} | to_json }}"
"""


def _run(tmp_path, extra):
    out = tmp_path / "out.json"
    run_playbook(tmp_path, PLAYBOOK, "inventories/local", ["out=%s" % out] + extra, env={"HOME": str(tmp_path)})
    return json.loads(out.read_text())["gpu_stack_kubeconfig"]


def _role_default(role, name):
    import yaml
    return yaml.safe_load((ROOT / "roles" / role / "defaults" / "main.yml").read_text())[name]


def test_the_cluster_stages_read_where_the_k3s_stage_writes(tmp_path):
    assert _run(tmp_path, []) == str(tmp_path / ".kube" / "gpu_stack.yaml")


def test_an_inventory_kubeconfig_moves_it_for_every_stage(tmp_path):
    assert _run(tmp_path, ["gpu_stack_kubeconfig=/srv/kube/lab.yaml"]) == "/srv/kube/lab.yaml"


@pytest.mark.parametrize("role,name", [("gpu_addons", "gpu_addons_kubeconfig"), ("vllm", "vllm_kubeconfig"),
                                       ("litellm", "litellm_kubeconfig")])
def test_each_cluster_role_reads_gpu_stack_kubeconfig(role, name):
    assert "gpu_stack_kubeconfig" in _role_default(role, name)
