"""Run one bad-input case: a copy of inventories/local with the case's patch,
preflight against this machine (connection local), the output returned.

Case format (tests/bad_input/cases.yml, one list item per case):
  id:       unique slug
  why:      what is wrong, in words
  patch:    {<file under the inventory>: {<top-level var>: <value>}}; each key
            replaces that variable in that file (hosts.yml takes the inventory
            structure itself under the key `all`)
  limit:    optional --limit
  playbook: optional playbook (default tests/bad_input/validate.yml)
  tags:     optional --tags (e.g. preflight, with playbooks/site.yml)
  expect:   the message, exactly (compared with whitespace collapsed)
  expect_also: optional, the rest of a message whose middle names a folder
            of the run (the copy of the inventory)
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "inventories" / "local"


def load_cases():
    return yaml.safe_load((ROOT / "tests" / "bad_input" / "cases.yml").read_text())


def build_inventory(case, into):
    inv = Path(into) / "inventory"
    shutil.copytree(BASE, inv)
    # The configs the inventory points at (gpu_stack_model_configs: ../model-configs).
    shutil.copytree(BASE.parent / "model-configs", Path(into) / "model-configs")
    for rel, changes in (case.get("patch") or {}).items():
        path = inv / rel
        data = yaml.safe_load(path.read_text()) if path.exists() else {}
        data = data or {}
        for key, value in changes.items():
            if value is None:
                data.pop(key, None)
            else:
                data[key] = value
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(data, sort_keys=False))
    return inv


def run_case(case, tmp):
    inv = build_inventory(case, tmp)
    playbook = ROOT / case.get("playbook", "tests/bad_input/validate.yml")
    env = dict(os.environ, ANSIBLE_CALLBACK_RESULT_FORMAT="json", ANSIBLE_NOCOLOR="1", HF_HUB_OFFLINE="1",
               ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))
    cmd = [str(Path(sys.executable).with_name("ansible-playbook")), "-i", str(inv), str(playbook),
           "-e", json.dumps({"ansible_connection": "local",
                             "ansible_python_interpreter": sys.executable})]
    if case.get("limit"):
        cmd += ["--limit", case["limit"]]
    if case.get("tags"):
        cmd += ["--tags", case["tags"]]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    return proc.returncode, proc.stdout + proc.stderr


def collapse(text):
    return " ".join(text.replace("\\n", " ").split())
