"""roles/litellm/tasks/keys.yml against the Kubernetes API double: one Secret per
consumer, a re-run that changes nothing, a consumer taken off the list losing
its Secret, and no key in the output.

This is the sandbox's path (no LiteLLM database, gpu_stack_sandbox: the
Secrets hold the master key); with the database the same tasks store what
homelab.gpu_stack.litellm_keys returns (its logic: test_litellm_keys.py).
"""

import base64
import json
import os
import re
import subprocess
import sys

from test_kube_api_double import ROOT

from ansible_collections.homelab.gpu_stack.plugins.module_utils import stack_model

MASTER = "sk-keys-test-master-" + "0a1b2c3d4e5f"
PLAYBOOK = """\
- name: The gateway's consumer Secrets
  hosts: localhost
  gather_facts: false
  tasks:
    - name: The namespace
      kubernetes.core.k8s:
        kubeconfig: "{{ litellm_kubeconfig }}"
        definition: {apiVersion: v1, kind: Namespace, metadata: {name: llm}}
    - name: The consumers' keys
      ansible.builtin.include_role:
        name: homelab.gpu_stack.litellm
        tasks_from: keys
"""


def run(api, tmp_path, consumers):
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    extra = {"litellm_kubeconfig": str(api.kubeconfig), "litellm_master_key": MASTER, "gpu_stack_sandbox": True,
             # What the role's preflight sets from the stack model.
             "_litellm_consumers": [{"name": n} for n in consumers], "_litellm_labels": stack_model.labels("litellm"),
             "ansible_python_interpreter": sys.executable}
    proc = subprocess.run([str(os.path.join(os.path.dirname(sys.executable), "ansible-playbook")), str(tmp_path / "play.yml"),
                           "-e", json.dumps(extra)], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
                          env=dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1"))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert MASTER not in out
    return int(re.search(r"localhost\s+: ok=\d+\s+changed=(\d+)", out).group(1))


def secrets(api):
    kubectl = [sys.executable, "-c", "import sys,json;from kubernetes import client,config;"
               "c=client.CoreV1Api(config.new_client_from_config(sys.argv[1]));"
               "print(json.dumps({s.metadata.name: s.data for s in c.list_namespaced_secret('llm').items}))", str(api.kubeconfig)]
    found = json.loads(subprocess.run(kubectl, capture_output=True, text=True, check=True, timeout=60).stdout)
    return dict((n, d) for n, d in found.items() if n.startswith("gateway-key-"))


def test_one_secret_per_consumer_idempotent_and_revoked(kube_api, tmp_path):
    api = kube_api
    assert run(api, tmp_path, ["open-webui", "n8n"]) > 0
    got = secrets(api)
    assert sorted(got) == ["gateway-key-n8n", "gateway-key-open-webui"]
    assert base64.b64decode(got["gateway-key-n8n"]["api_key"]).decode() == MASTER
    assert base64.b64decode(got["gateway-key-n8n"]["base_url"]).decode() == "http://litellm.llm.svc:4000/v1"
    assert run(api, tmp_path, ["open-webui", "n8n"]) == 0, "a second run changed something"
    assert run(api, tmp_path, ["open-webui"]) > 0
    assert sorted(secrets(api)) == ["gateway-key-open-webui"]
