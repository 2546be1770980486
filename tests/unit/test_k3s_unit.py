# Copyright: homelab.gpu_stack contributors
# Apache License 2.0 (see LICENSE)
"""The k3s unit as the role renders it, for a server and for an agent.

k3s's install.sh (k3s-io/k3s, install.sh, create_systemd_service_file)
writes Type=notify for both: k3s sends READY=1 once it has written its
containerd config. An agent with Type=exec returned from a restart before
that, so the NVIDIA runtime gate could read the previous config.toml.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

PLAYBOOK = """
- hosts: localhost
  connection: local
  gather_facts: false
  vars:
    k3s_is_server: "{{ server | bool }}"
    k3s_service_name: "{{ 'k3s' if server | bool else 'k3s-agent' }}"
    k3s_systemd_dir: /etc/systemd/system
    k3s_bin_path: /usr/local/bin/k3s
  tasks:
    - ansible.builtin.copy:
        dest: "{{ out }}"
        mode: "0644"
        content: "{{ lookup('ansible.builtin.template', template) }}"
"""


def render_unit(tmp_path, server):
    play = tmp_path / "render-unit.yml"
    out = tmp_path / ("server" if server else "agent")
    play.write_text(PLAYBOOK)
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    proc = subprocess.run([str(Path(sys.executable).with_name("ansible-playbook")), str(play), "-i", "localhost,",
                           "-e", "out=%s" % out, "-e", "server=%s" % server,
                           "-e", "template=%s" % (ROOT / "roles/k3s/templates/k3s.service.j2"),
                           "-e", "ansible_python_interpreter=%s" % sys.executable],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    return out.read_text()


@pytest.mark.parametrize("server", [True, False])
def test_unit_type_is_notify_like_install_sh(tmp_path, server):
    unit = render_unit(tmp_path, server)
    assert [line for line in unit.splitlines() if line.startswith("Type=")] == ["Type=notify"]
    assert "ExecStart=/usr/local/bin/k3s %s" % ("server" if server else "agent") in unit
    assert "KillMode=process" in unit and "Delegate=yes" in unit
