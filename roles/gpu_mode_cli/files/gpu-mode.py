# Copyright: homelab.gpu_stack contributors
# Apache License 2.0 (see LICENSE)
"""gpu-mode: switch the GPU mode and show what the card is doing, without the Ansible inventory.

Installed by homelab.gpu_stack (role gpu_mode_cli) on the hosts of the
inventory group gpu_mode_hosts. It reads /etc/gpu-stack/gpu-mode.json (0600:
the API server, its CA, a ServiceAccount token whose Role allows only what a
switch needs) and the ConfigMap gpu-modes the collection keeps (the modes and
each model's switch), and runs the collection's own switch path
(module_utils/gpu_switch.py) through the API, as gpu_mode.yml does.

    gpu-mode status          active mode, each model awake/asleep/stopped, VRAM per process, what the gateway answers from
    gpu-mode MODE            switch (gpu-mode ml, gpu-mode gaming, ...)
    gpu-mode default         switch to the inventory's gpu_stack_gpu_mode (the boot unit runs this)
"""
import json
import os
import socket
import subprocess
import sys
import time

CONFIG = os.environ.get("GPU_MODE_CONFIG", "/etc/gpu-stack/gpu-mode.json")
HERE = os.path.dirname(os.path.realpath(__file__))
sys.path.insert(0, os.path.join(HERE, "python"))

from ansible_collections.homelab.gpu_stack.plugins.module_utils import gpu, gpu_switch  # noqa: E402
from ansible_collections.homelab.gpu_stack.plugins.module_utils.gpu_switch_k8s import (  # noqa: E402
    KubeError, KubeSwitchIO, UrllibTransport)

USAGE = "usage: gpu-mode status | gpu-mode MODE | gpu-mode default"


def nvidia_smi_apps():
    """[(pid, process, MiB)] on this machine's GPUs, or None where there is no nvidia-smi."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,process_name,used_memory",
                              "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return [tuple(x.strip() for x in line.split(",")) for line in out.strip().splitlines() if line.strip()]


def card_used_bytes():
    """Memory in use on this machine's GPUs, read as gpu_facts reads it; None without a readable nvidia-smi."""
    def run(argv):
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
        return proc.returncode, proc.stdout, proc.stderr
    try:
        return gpu.gather(run, "nvidia-smi")[1]["memory_used_mib"] * 2 ** 20
    except (OSError, subprocess.SubprocessError, gpu.GpuQueryError):
        return None


class CommandIO(KubeSwitchIO):
    """The API for everything; the card read with nvidia-smi where the command runs on the model's node."""

    def __init__(self, transport, table, local_node):
        KubeSwitchIO.__init__(self, transport, table["namespace"], table["awake_condition"], table["vllm_port"],
                              table["chat_through_proxy"])
        self.local_node = local_node

    def card_used_bytes(self, node):
        return card_used_bytes() if node == self.local_node else None

    def say(self, msg):
        print("  " + msg)


def load():
    with open(CONFIG) as fh:
        conf = json.load(fh)
    transport = UrllibTransport(conf["server"], conf["token"], conf.get("ca_data"))
    cm = json.loads(transport.request("GET", "/api/v1/namespaces/%s/configmaps/%s"
                                      % (conf["namespace"], conf["configmap"])))
    table = json.loads(cm["data"]["modes.json"])
    hostname = socket.gethostname().split(".")[0]
    local = next((m["node"] for m in table["models"] if m["node_name"] == hostname or m["node"] == hostname), None)
    return table, CommandIO(transport, table, local)


def status(table, io):
    t0 = time.monotonic()
    states = {}
    for step in gpu_switch.plan_switch(table["models"], table["mode"]):
        states[step["name"]] = io.state(step)
    awake = set(n for n, s in states.items() if s == gpu_switch.AWAKE)
    active = [mode for mode in table["modes"]
              if set(m["name"] for m in table["models"] if gpu_switch.runs_in_mode(m["spec"], mode)) == awake]
    print("GPU mode: %s" % (active[0] if active else "none matches (%s awake)" % (", ".join(sorted(awake)) or "nothing")))
    for m in table["models"]:
        state = states[m["name"]]
        answering = "gpu" if state == gpu_switch.AWAKE else (m["fallback"][0] if m["fallback"] else "nothing")
        extra = " (sleep level %s)" % m["sleep_level"] if m["switch"] == "sleep" else ""
        print("  %-24s %-8s on %-12s switch %s%s; the gateway answers %s from %s"
              % (m["name"], state, m["node_name"], m["switch"], extra, m["spec"]["served_name"], answering))
    apps = nvidia_smi_apps()
    if apps is None:
        print("  VRAM per process: no nvidia-smi here (run gpu-mode status on a GPU node)")
    else:
        print("  VRAM per process: " + (", ".join("%s %s %s MiB" % a for a in apps) or "none"))
    print("  (%.2f s)" % (time.monotonic() - t0))


def main(argv):
    if len(argv) != 1 or argv[0] in ("-h", "--help"):
        print(__doc__ if argv and argv[0] in ("-h", "--help") else USAGE)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    try:
        table, io = load()
        if argv[0] == "status":
            status(table, io)
            return 0
        mode = table["mode"] if argv[0] == "default" else argv[0]
        if mode not in table["modes"]:
            print("gpu-mode: %r is not a mode (modes: %s)" % (mode, ", ".join(table["modes"])), file=sys.stderr)
            return 2
        print("switching to %s" % mode)
        report = gpu_switch.switch(table["models"], mode, io)
        for t, name, what in report["events"]:
            print("  %6.1f s  %s: %s" % (t, name, what))
        print("GPU mode: %s (%.1f s)" % (mode, report["seconds"]))
        return 0
    except (gpu_switch.SwitchError, KubeError, OSError, ValueError, KeyError) as exc:
        print("gpu-mode: %s" % exc, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
