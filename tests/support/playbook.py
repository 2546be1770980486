# Copyright: homelab.gpu_stack contributors
# Apache License 2.0 (see LICENSE)
"""Run an inline playbook the way the tests need it (this checkout's ansible.cfg)."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_playbook(tmp_path, text, inventory, extra_vars, env=None, expect_ok=True):
    """Run an inline playbook with this checkout's ansible.cfg; fail the test with its output if it fails
    (``expect_ok=False``: return it whatever its exit status, for a test of a refusal)."""
    play = tmp_path / "play.yml"
    play.write_text(text)
    cmd = [str(Path(sys.executable).with_name("ansible-playbook")), "-i", inventory, str(play),
           "-e", "ansible_python_interpreter=%s" % sys.executable]
    for item in extra_vars:
        cmd += ["-e", item]
    full_env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1", **(env or {}))
    proc = subprocess.run(cmd, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=300, check=False)
    if expect_ok:
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    return proc
