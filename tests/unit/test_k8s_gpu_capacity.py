# Copyright: homelab.gpu_stack contributors
# Apache License 2.0 (see LICENSE)
"""k8s_gpu_capacity: the real kubernetes client against recorded Node bodies.

The API server is the replay double in tests/unit/fixtures/k8s (no real one
can run here); everything from kubeconfig loading on is the real code.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "unit", "fixtures", "k8s"))

from api_replay_double import ApiReplayDouble  # noqa: E402
from ansible_collections.homelab.gpu_stack.plugins.module_utils import k8s_gpu  # noqa: E402


class FakeClock:
    """Time that moves only when the code under test sleeps."""

    def __init__(self):
        self.now = 0.0
        self.sleeps = []

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


def run(double, tmp_path, nodes, per_gpu=1, timeout=30, poll=5, clock=None):
    clock = clock or FakeClock()
    kubeconfig = double.kubeconfig(tmp_path / "kubeconfig")
    read = k8s_gpu.node_reader(k8s_gpu.make_api_client({"kubeconfig": kubeconfig, "context": "replay"}))
    return k8s_gpu.wait_for_capacity(read, k8s_gpu.normalize_nodes(nodes, per_gpu), timeout=timeout,
                                     poll=poll, sleep=clock.sleep, clock=clock.clock)


def test_ready_gpu_node_passes_with_its_figures(tmp_path):
    with ApiReplayDouble({"nuc": ["node-k3s-gpu-ready.json"]}) as double:
        ok, reports, problems, attempts, _elapsed = run(double, tmp_path, [{"name": "nuc", "gpus": 1}])
    assert ok and problems == [] and attempts == 1
    assert reports == [{"name": "nuc", "expected": 1, "found": True, "allocatable": 1, "capacity": 1,
                        "ready": True, "unschedulable": False, "problem": None}]
    # the token from the kubeconfig reached the API: the real client did the call
    assert double.requests[0] == ("/api/v1/nodes/nuc", "Bearer replay-token")


def test_waits_until_the_device_plugin_registers(tmp_path):
    script = {"nuc": ["node-k3s-gpu-no-plugin.json", "node-k3s-gpu-no-plugin.json", "node-k3s-gpu-ready.json"]}
    clock = FakeClock()
    with ApiReplayDouble(script) as double:
        ok, reports, _problems, attempts, elapsed = run(double, tmp_path, ["nuc"], timeout=60, poll=5, clock=clock)
    assert ok and attempts == 3
    assert clock.sleeps == [5, 5] and elapsed == 10
    assert reports[0]["allocatable"] == 1


def test_times_out_naming_the_node_without_the_resource(tmp_path):
    clock = FakeClock()
    with ApiReplayDouble({"nuc": ["node-k3s-gpu-no-plugin.json"]}) as double:
        ok, reports, problems, attempts, elapsed = run(double, tmp_path, ["nuc"], timeout=12, poll=5,
                                                       clock=clock)
    assert not ok
    assert attempts == 4 and elapsed == 12  # 0, 5, 10, 12: the last sleep is cut to the deadline
    assert clock.sleeps == [5, 5, 2]
    assert reports[0]["allocatable"] is None
    assert problems == [problems[0]]
    assert "node nuc reports no nvidia.com/gpu in status.allocatable" in problems[0]


def test_unhealthy_gpu_reports_allocatable_and_capacity(tmp_path):
    with ApiReplayDouble({"nuc": ["node-k3s-gpu-unhealthy.json"]}) as double:
        ok, reports, problems, _attempts, _elapsed = run(double, tmp_path, ["nuc"], timeout=0)
    assert not ok
    assert (reports[0]["allocatable"], reports[0]["capacity"]) == (0, 1)
    assert problems == ["node nuc reports allocatable nvidia.com/gpu=0 (capacity 1), expected at least 1"]


def test_time_slicing_multiplies_the_expected_count(tmp_path):
    with ApiReplayDouble({"nuc": ["node-k3s-gpu-timesliced-4.json"]}) as double:
        ok, reports, _problems, _attempts, _elapsed = run(double, tmp_path, [{"name": "nuc", "gpus": 1}], per_gpu=4, timeout=0)
    assert ok and reports[0]["expected"] == 4 and reports[0]["allocatable"] == 4
    with ApiReplayDouble({"nuc": ["node-k3s-gpu-ready.json"]}) as double:
        ok, _reports, problems, _attempts, _elapsed = run(double, tmp_path, [{"name": "nuc", "gpus": 1}], per_gpu=4, timeout=0)
    assert not ok and "expected at least 4" in problems[0]


def test_node_not_ready_fails_even_with_gpus(tmp_path):
    with ApiReplayDouble({"nuc": ["node-k3s-gpu-notready.json"]}) as double:
        ok, reports, problems, _attempts, _elapsed = run(double, tmp_path, ["nuc"], timeout=0)
    assert not ok and reports[0]["unschedulable"] is True and reports[0]["ready"] is False
    assert problems == ["node nuc offers nvidia.com/gpu=1 but is not Ready"]


def test_every_node_is_reported_and_only_the_short_one_fails(tmp_path):
    script = {"nuc": ["node-k3s-gpu-ready.json"], "server": ["node-k3s-server-cpu.json"]}
    with ApiReplayDouble(script) as double:
        ok, reports, problems, _attempts, _elapsed = run(double, tmp_path, ["nuc", "server", "gpu-2"], timeout=0)
    assert not ok
    assert [r["name"] for r in reports] == ["nuc", "server", "gpu-2"]
    assert reports[0]["problem"] is None
    assert problems[0].startswith("node server reports no nvidia.com/gpu")
    assert problems[1] == "node gpu-2 is not in the cluster"
    assert reports[2]["found"] is False


@pytest.mark.parametrize("nodes, per_gpu, message", [
    ([], 1, "nodes: at least one GPU node"),
    ([{"name": "nuc", "gpus": 0}], 1, "nodes[0].gpus: must be an integer >= 1, got 0"),
    ([{"gpus": 1}], 1, "nodes[0]: needs a node name"),
    (["nuc", {"name": "nuc"}], 1, "nodes[1].name: nuc is listed twice"),
    (["nuc"], 0, "per_gpu: must be an integer >= 1, got 0"),
])
def test_bad_node_lists_fail_naming_the_entry(nodes, per_gpu, message):
    with pytest.raises(k8s_gpu.CapacityError, match=message.replace("[", r"\[").replace("]", r"\]")):
        k8s_gpu.normalize_nodes(nodes, per_gpu)


@pytest.mark.parametrize("text, count", [("1", 1), ("8", 8), ("2k", 2000), ("1500m", 1), (None, None)])
def test_quantities(text, count):
    assert k8s_gpu.parse_count(text) == count


def test_missing_kubeconfig_names_the_file(tmp_path):
    with pytest.raises(k8s_gpu.CapacityError, match=r"kubeconfig .*/nope \(context current\): cannot be loaded"):
        k8s_gpu.make_api_client({"kubeconfig": str(tmp_path / "nope")})


def test_unreachable_api_server_is_a_clear_error(tmp_path):
    with ApiReplayDouble({}) as double:
        kubeconfig = double.kubeconfig(tmp_path / "kubeconfig")
    # the double is gone: nothing listens on its port now
    read = k8s_gpu.node_reader(k8s_gpu.make_api_client({"kubeconfig": kubeconfig}))
    os.environ.pop("K8S_AUTH_HOST", None)
    with pytest.raises(k8s_gpu.CapacityError, match="reading node nuc: cannot reach the API server"):
        read("nuc")


def test_environment_fallback_like_kubernetes_core():
    env = {"K8S_AUTH_KUBECONFIG": "/k", "K8S_AUTH_CONTEXT": "c", "K8S_AUTH_VERIFY_SSL": "false"}
    got = k8s_gpu.auth_params({"kubeconfig": None, "context": "mine"}, environ=env)
    assert got["kubeconfig"] == "/k" and got["context"] == "mine" and got["validate_certs"] is False


PLAYBOOK = textwrap.dedent("""\
    - hosts: localhost
      connection: local
      gather_facts: false
      tasks:
        - name: Gate that passes
          homelab.gpu_stack.k8s_gpu_capacity:
            kubeconfig: "{{ kc }}"
            nodes: [{name: nuc, gpus: 1}]
            timeout: 0
          register: good
        - name: Gate that fails
          homelab.gpu_stack.k8s_gpu_capacity:
            kubeconfig: "{{ kc }}"
            nodes: [nuc, gpu-2]
            per_gpu: 2
            timeout: 1
            poll: 1
          register: bad
          ignore_errors: true  # the failure is what is checked
        - name: Same gate in check mode
          homelab.gpu_stack.k8s_gpu_capacity:
            kubeconfig: "{{ kc }}"
            nodes: [nuc, gpu-2]
            per_gpu: 2
          check_mode: true
          register: checked
        - name: Keep the results
          ansible.builtin.copy:
            dest: "{{ out }}"
            content: "{{ {'good': good, 'bad': bad, 'checked': checked} | to_json }}"
            mode: "0644"
    """)


def test_module_through_ansible(tmp_path):
    playbook = tmp_path / "play.yml"
    playbook.write_text(PLAYBOOK)
    out = tmp_path / "out.json"
    with ApiReplayDouble({"nuc": ["node-k3s-gpu-ready.json"]}) as double:
        kubeconfig = double.kubeconfig(tmp_path / "kubeconfig")
        proc = subprocess.run(
            [os.path.join(ROOT, ".venv", "bin", "ansible-playbook"), str(playbook), "-i", "localhost,",
             "-e", "kc=%s out=%s ansible_python_interpreter=%s" % (kubeconfig, out, sys.executable)],
            cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    res = json.loads(out.read_text())
    assert res["good"]["satisfied"] is True and res["good"]["changed"] is False
    assert res["good"]["nodes"][0]["allocatable"] == 1
    assert res["bad"]["failed"] is True
    assert "GPU capacity not reached after 1s" in res["bad"]["msg"]
    assert "node nuc reports allocatable nvidia.com/gpu=1 (capacity 1), expected at least 2" in res["bad"]["msg"]
    assert "node gpu-2 is not in the cluster" in res["bad"]["msg"]
    assert res["checked"].get("failed") is not True and res["checked"]["satisfied"] is False
    assert res["checked"]["attempts"] == 1
