"""roles/gpu_addons/tasks/nodes.yml against the Kubernetes API double: the GPU
nodes labelled and tainted beside the taints they had, a re-run that changes
nothing, and a GPU node the cluster does not know refused by name."""

import json
import re
import subprocess
import sys

from playbook import run_playbook

PLAYBOOK = """\
- name: The GPU nodes
  hosts: localhost
  connection: local
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


def node(name, labels=None, taints=None):
    out = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": dict(labels or {})}}
    if taints:
        out["spec"] = {"taints": taints}
    return out


def run(api, tmp_path, gpu_nodes, registered):
    """(exit status, output): each test says which it expects."""
    extra = {"gpu_addons_kubeconfig": str(api.kubeconfig), "registered": registered,
             # What objects.yml builds from the stack model.
             "gpu_addons_node_patches": [node(n, LABELS, [TAINT]) for n in gpu_nodes]}
    proc = run_playbook(tmp_path, PLAYBOOK, "localhost,", [json.dumps(extra)], expect_ok=False)
    return proc.returncode, proc.stdout + proc.stderr


def live(api, name):
    read = [sys.executable, "-c", "import sys,json;from kubernetes import client,config;"
            "c=client.CoreV1Api(config.new_client_from_config(sys.argv[1]));"
            "print(json.dumps(c.api_client.sanitize_for_serialization(c.read_node(sys.argv[2]))))",
            str(api.kubeconfig), name]
    return json.loads(subprocess.run(read, capture_output=True, text=True, check=True, timeout=60).stdout)


def changed(out):
    return int(re.search(r"localhost\s+: ok=\d+\s+changed=(\d+)", out).group(1))


def test_gpu_nodes_patched_once_beside_their_own_taints(kube_api, tmp_path):
    api = kube_api
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


def test_a_gpu_node_the_cluster_lacks_is_named(kube_api, tmp_path):
    rc, out = run(kube_api, tmp_path, ["gpu-a", "gpu-z", "gpu-y"], [node("gpu-a")])
    assert rc != 0
    assert "gpu_addons_gpu_nodes: gpu-z, gpu-y not in the cluster" in out
