"""The changes callback lists changed tasks per host, and nothing on a no-op run."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PLAY = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Make the marker
      ansible.builtin.copy: {dest: "%s", content: "x", mode: "0600"}
    - name: Only report
      ansible.builtin.debug: {msg: hello}
"""


def run(playbook):
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))
    proc = subprocess.run([str(Path(sys.executable).with_name("ansible-playbook")), str(playbook)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout.split("WHAT CHANGED", 1)[1]


def test_first_run_lists_the_change_second_run_nothing(tmp_path):
    playbook = tmp_path / "p.yml"
    playbook.write_text(PLAY % (tmp_path / "marker"))
    first = run(playbook)
    assert "localhost:" in first and "- Make the marker" in first
    assert "Only report" not in first
    assert "nothing changed" in run(playbook)
