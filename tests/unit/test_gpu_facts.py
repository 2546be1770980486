"""gpu_facts: nvidia-smi outputs recorded per card, replayed through a real subprocess.

The parsing tests run plugins/module_utils/gpu.py against tests/doubles/nvidia-smi-double
(a test double: no test machine has an NVIDIA driver), which replays the fixtures in
tests/unit/fixtures/nvidia_smi/; h100_real.csv there is the real output of the lent H100.
The module tests run the module itself through ansible-playbook (check mode, facts,
failure messages).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ansible_collections.homelab.gpu_stack.plugins.module_utils.gpu import (
    GpuQueryError,
    gather,
    parse_query_output,
    query_command,
)

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "unit" / "fixtures" / "nvidia_smi"
DOUBLE = ROOT / "tests" / "doubles" / "nvidia-smi-double"
# nvidia-smi's exit codes for the recorded situations.
RC = {"driver_error.txt": 9, "no_devices.txt": 6, "old_driver.txt": 2}


def runner(fixture):
    env = dict(os.environ, NVIDIA_SMI_DOUBLE_FIXTURE=str(FIXTURES / fixture),
               NVIDIA_SMI_DOUBLE_RC=str(RC.get(fixture, 0)))

    def run(argv):
        proc = subprocess.run([sys.executable] + argv, check=False, capture_output=True, text=True, env=env)
        return proc.returncode, proc.stdout, proc.stderr
    return run


def facts(fixture):
    return gather(runner(fixture), str(DOUBLE))


def test_h100_real_output():
    gpus, summary, raw = facts("h100_real.csv")
    assert raw == (FIXTURES / "h100_real.csv").read_text()
    assert gpus == [{
        "index": 0, "name": "NVIDIA H100 80GB HBM3", "uuid": "GPU-44203f95-b3e4-c404-062b-6ae8deb0d88c",
        "memory_total_mib": 81559, "memory_used_mib": 0, "driver_version": "580.159.04",
        "compute_capability": "9.0"}]
    assert summary["count"] == 1
    assert summary["memory_total_mib"] == 81559
    assert summary["inventory_gpu"] == {"model": "NVIDIA H100 80GB HBM3", "vram_mib": 81559, "count": 1}


@pytest.mark.parametrize("fixture,name,mib,cc,driver", [
    ("rtx3060_12gb.csv", "NVIDIA GeForce RTX 3060", 12288, "8.6", "550.120"),
    ("rtx4090.csv", "NVIDIA GeForce RTX 4090", 24564, "8.9", "565.57.01"),
])
def test_single_consumer_cards(fixture, name, mib, cc, driver):
    gpus, summary, _raw = facts(fixture)
    assert [(g["name"], g["memory_total_mib"], g["compute_capability"]) for g in gpus] == [(name, mib, cc)]
    assert summary["driver_version"] == driver
    assert summary["inventory_gpu"] == {"model": name, "vram_mib": mib, "count": 1}


def test_two_gpus_are_summed():
    gpus, summary, _raw = facts("multi_2x3090.csv")
    assert [g["index"] for g in gpus] == [0, 1]
    assert gpus[0]["uuid"] != gpus[1]["uuid"]
    assert [g["memory_used_mib"] for g in gpus] == [18, 3]
    assert (summary["count"], summary["memory_total_mib"], summary["memory_used_mib"]) == (2, 49152, 21)
    assert summary["inventory_gpu"] == {"model": "NVIDIA GeForce RTX 3090", "vram_mib": 24576, "count": 2}


def test_mixed_cards_have_no_inventory_shape():
    text = (FIXTURES / "rtx4090.csv").read_text() + (FIXTURES / "rtx3060_12gb.csv").read_text().replace("0,", "1,", 1)
    gpus = parse_query_output(text)
    from ansible_collections.homelab.gpu_stack.plugins.module_utils.gpu import summarize
    summary = summarize(gpus)
    assert summary["count"] == 2 and summary["memory_total_mib"] == 24564 + 12288
    assert summary["inventory_gpu"] is None


@pytest.mark.parametrize("fixture,words", [
    ("driver_error.txt", ["could not talk to the NVIDIA driver (exit 9)", "lsmod | grep nvidia",
                          "couldn't communicate with the NVIDIA driver"]),
    ("no_devices.txt", ["found no GPU (exit 6)", "No devices were found"]),
    ("old_driver.txt", ["driver 510 or newer", 'Field "compute_cap"']),
    ("na_field.csv", ["memory.used='[N/A]'", "NVIDIA GeForce RTX 3090"]),
])
def test_failures_say_what_to_check(fixture, words):
    with pytest.raises(GpuQueryError) as exc:
        facts(fixture)
    for word in words:
        assert word in str(exc.value)


@pytest.mark.parametrize("text,words", [
    ("", ["no GPU rows"]),
    ("0, NVIDIA GeForce RTX 4090, GPU-x, 24564, 1, 565.57.01\n", ["has 6 fields, expected 7"]),
    ("0, NVIDIA GeForce RTX 4090, GPU-x, 24 GiB, 1, 565.57.01, 8.9\n", ["memory.total='24 GiB' is not a int"]),
    ("0, A, GPU-x, 1, 1, 1, 8.9\n0, B, GPU-y, 1, 1, 1, 8.9\n", ["index twice"]),
])
def test_unusable_output(text, words):
    with pytest.raises(GpuQueryError) as exc:
        parse_query_output(text)
    for word in words:
        assert word in str(exc.value)


def test_query_is_the_one_the_fixtures_were_recorded_with():
    # The double refuses any other field list, so a changed query cannot pass on old fixtures.
    assert query_command("nvidia-smi")[1:] == [
        "--query-gpu=index,name,uuid,memory.total,memory.used,driver_version,compute_cap",
        "--format=csv,noheader,nounits"]


# ---- the module itself, through ansible-playbook ----

PLAYBOOK = """
- name: Gather GPU facts
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Run gpu_facts
      homelab.gpu_stack.gpu_facts: {args}
      register: gpu
      ignore_errors: true  # the test reads the failure from the JSON result
    - name: Show the fact set for later tasks
      ansible.builtin.debug:
        var: gpu_stack_gpus
      when: gpu is succeeded
"""


def play(tmp_path, fixture, args, check=False):
    (tmp_path / "play.yml").write_text(PLAYBOOK.format(args=json.dumps(args)))
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="ansible.posix.json", ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
               NVIDIA_SMI_DOUBLE_FIXTURE=str(FIXTURES / fixture), NVIDIA_SMI_DOUBLE_RC=str(RC.get(fixture, 0)),
               ANSIBLE_PYTHON_INTERPRETER=sys.executable)
    cmd = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", str(tmp_path / "play.yml")]
    if check:
        cmd.append("--check")
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env, cwd=str(ROOT))
    assert proc.stdout, proc.stderr
    # Other callbacks enabled in ansible.cfg may print after the JSON document.
    tasks = json.JSONDecoder().raw_decode(proc.stdout)[0]["plays"][0]["tasks"]
    return [t["hosts"]["localhost"] for t in tasks]


def test_module_in_check_mode_sets_facts(tmp_path):
    gather_result, debug = play(tmp_path, "multi_2x3090.csv", {"nvidia_smi_path": str(DOUBLE)}, check=True)
    assert gather_result.get("failed") is not True, gather_result
    assert gather_result["changed"] is False
    assert gather_result["count"] == 2 and gather_result["memory_total_mib"] == 49152
    assert gather_result["nvidia_smi"] == str(DOUBLE)
    assert [g["name"] for g in debug["gpu_stack_gpus"]] == ["NVIDIA GeForce RTX 3090"] * 2


def test_module_driver_error_fails_clearly(tmp_path):
    result = play(tmp_path, "driver_error.txt", {"nvidia_smi_path": str(DOUBLE)})[0]
    assert result["failed"] is True
    assert "could not talk to the NVIDIA driver" in result["msg"]


def test_module_missing_nvidia_smi(tmp_path):
    absent = str(tmp_path / "no-such-nvidia-smi")
    failed = play(tmp_path, "h100_real.csv", {"nvidia_smi_path": absent})[0]
    assert failed["failed"] is True
    assert "nvidia-smi not found (looked in %s)" % absent in failed["msg"]
    empty, debug = play(tmp_path, "h100_real.csv", {"nvidia_smi_path": absent, "missing": "empty"})
    assert empty.get("failed") is not True, empty
    assert (empty["gpus"], empty["count"], empty["nvidia_smi"], empty["inventory_gpu"]) == ([], 0, None, None)
    assert debug["gpu_stack_gpus"] == []
