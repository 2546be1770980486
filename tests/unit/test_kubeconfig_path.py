# Copyright: homelab.gpu_stack contributors
# Apache License 2.0 (see LICENSE)
"""The k3s stage and every cluster stage agree on one kubeconfig.

The k3s roles fetch the admin kubeconfig to k3s_kubeconfig_local_path; the
add-ons, vLLM and gateway roles (and gpu_mode.yml) read gpu_stack_kubeconfig.
Nothing set the latter once, so stage 4 talked to ~/.kube/config. This runs
the entry point site.yml and gpu_mode.yml use, then each role's defaults.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

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
    play = tmp_path / "play.yml"
    play.write_text(PLAYBOOK)
    out = tmp_path / "out.json"
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), HOME=str(tmp_path), ANSIBLE_NOCOLOR="1")
    cmd = [str(Path(sys.executable).with_name("ansible-playbook")), "-i", "inventories/local", str(play),
           "-e", "out=%s" % out, "-e", "ansible_python_interpreter=%s" % sys.executable]
    for item in extra:
        cmd += ["-e", item]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
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
