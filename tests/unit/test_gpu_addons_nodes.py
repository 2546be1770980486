"""roles/gpu_addons/tasks/nodes.yml against the Kubernetes API double: the GPU
nodes labelled and tainted beside the taints they had, a re-run that changes
nothing, and a GPU node the cluster does not know refused by name."""

import json
import os
import re
import subprocess
import sys

import pytest
from test_kube_api_double import ROOT, Double

PLAYBOOK = """\
- name: The GPU nodes
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Nodes as the kubelets registered them
      kubernetes.core.k8s:
        kubeconfig: "{{ gpu_addons_kubeconfig }}"
        definition: "{{ item }}"
      loop: "{{ registered }}"
    - name: The role's node tasks
      ansible.builtin.include_role:
        name: homelab.gpu_stack.gpu_addons
        tasks_from: nodes
"""
LABELS = {"nvidia.com/gpu.present": "true", "gpu-stack.homelab/gpu-worker": "true"}
TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
OTHER_TAINT = {"key": "dedicated", "value": "games", "effect": "PreferNoSchedule"}


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    double = Double(tmp_path_factory.mktemp("nodes-api"))
    double.start()
    yield double
    double.stop()


def node(name, labels=None, taints=None):
    out = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": dict(labels or {})}}
    if taints:
        out["spec"] = {"taints": taints}
    return out


def run(api, tmp_path, gpu_nodes, registered):
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    extra = {"gpu_addons_kubeconfig": str(api.kubeconfig), "registered": registered,
             # What objects.yml builds from the stack model.
             "gpu_addons_node_patches": [node(n, LABELS, [TAINT]) for n in gpu_nodes],
             "ansible_python_interpreter": sys.executable}
    proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), str(tmp_path / "play.yml"),
                           "-e", json.dumps(extra)], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
                          env=dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1"))
    return proc.returncode, proc.stdout + proc.stderr


def live(api, name):
    read = [sys.executable, "-c", "import sys,json;from kubernetes import client,config;"
            "c=client.CoreV1Api(config.new_client_from_config(sys.argv[1]));"
            "print(json.dumps(c.api_client.sanitize_for_serialization(c.read_node(sys.argv[2]))))",
            str(api.kubeconfig), name]
    return json.loads(subprocess.run(read, capture_output=True, text=True, check=True, timeout=60).stdout)


def changed(out):
    return int(re.search(r"localhost\s+: ok=\d+\s+changed=(\d+)", out).group(1))


def test_gpu_nodes_patched_once_beside_their_own_taints(api, tmp_path):
    registered = [node("gpu-a", {"kubernetes.io/hostname": "gpu-a"}, [OTHER_TAINT]), node("gpu-b"), node("cpu-c")]
    rc, out = run(api, tmp_path, ["gpu-a", "gpu-b"], registered)
    assert rc == 0, out[-4000:]
    for name in ("gpu-a", "gpu-b"):
        got = live(api, name)
        assert LABELS.items() <= got["metadata"]["labels"].items()
        assert TAINT in got["spec"]["taints"]
    assert live(api, "gpu-a")["metadata"]["labels"]["kubernetes.io/hostname"] == "gpu-a"
    assert OTHER_TAINT in live(api, "gpu-a")["spec"]["taints"]
    assert TAINT not in (live(api, "cpu-c").get("spec") or {}).get("taints", [])
    rc, out = run(api, tmp_path, ["gpu-a", "gpu-b"], [])
    assert rc == 0, out[-4000:]
    assert changed(out) == 0, "a second run changed something:\n" + out[-3000:]
    assert live(api, "gpu-a")["spec"]["taints"].count(TAINT) == 1


def test_a_gpu_node_the_cluster_lacks_is_named(api, tmp_path):
    rc, out = run(api, tmp_path, ["gpu-a", "gpu-z", "gpu-y"], [node("gpu-a")])
    assert rc != 0
    assert "gpu_addons_gpu_nodes: gpu-z, gpu-y not in the cluster" in out
