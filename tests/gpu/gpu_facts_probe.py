"""Run the gpu_facts logic against the real nvidia-smi of the GPU machine.

Imports plugins/module_utils/gpu.py by path (no Ansible needed there), prints
nvidia-smi's raw CSV and the parsed facts, and writes both under $OUT:
  $OUT/h100_real.csv   the raw output (copied into tests/unit/fixtures/nvidia_smi/)
  $OUT/gpu_facts.json  {"argv", "rc", "stderr", "gpus", "summary"}
"""
import importlib.util
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
spec = importlib.util.spec_from_file_location("gpu", os.path.join(ROOT, "plugins", "module_utils", "gpu.py"))
gpu = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gpu)
out = os.environ.get("OUT", "/tmp/gpu_out")
os.makedirs(out, exist_ok=True)
name = sys.argv[1] if len(sys.argv) > 1 else "h100_real.csv"
record = {}


def run(argv):
    proc = subprocess.run(argv, check=False, capture_output=True, text=True)
    record.update(argv=argv, rc=proc.returncode, stdout=proc.stdout, stderr=proc.stderr)
    return proc.returncode, proc.stdout, proc.stderr


try:
    gpus, summary, raw = gpu.gather(run, "nvidia-smi")
except gpu.GpuQueryError as exc:
    print("gpu_facts FAILED:", exc)
    gpus, summary = None, {"error": str(exc)}
with open(os.path.join(out, name), "w") as fh:
    fh.write(record.get("stdout", ""))
record.update(gpus=gpus, summary=summary)
with open(os.path.join(out, "gpu_facts.json"), "w") as fh:
    json.dump(record, fh, indent=1)
print("argv:", " ".join(record["argv"]), "rc:", record["rc"])
print("raw nvidia-smi output:")
print(record["stdout"], end="")
print("parsed:", json.dumps({"gpus": gpus, "summary": summary}, indent=1))
