# Copyright: homelab.gpu_stack contributors
# Apache License 2.0 (see LICENSE)
"""The k3s unit as the role renders it, for a server and for an agent.

k3s's install.sh (k3s-io/k3s, install.sh, create_systemd_service_file)
writes Type=notify for both: k3s sends READY=1 once it has written its
containerd config. An agent with Type=exec returned from a restart before
that, so the NVIDIA runtime gate could read the previous config.toml.
"""

from pathlib import Path

import pytest
from playbook import run_playbook

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
    out = tmp_path / ("server" if server else "agent")
    template = ROOT / "roles/k3s/templates/k3s.service.j2"
    run_playbook(tmp_path, PLAYBOOK, "localhost,", ["out=%s" % out, "server=%s" % server, "template=%s" % template])
    return out.read_text()


@pytest.mark.parametrize("server", [True, False])
def test_unit_type_is_notify_like_install_sh(tmp_path, server):
    unit = render_unit(tmp_path, server)
    assert [line for line in unit.splitlines() if line.startswith("Type=")] == ["Type=notify"]
    assert "ExecStart=/usr/local/bin/k3s %s" % ("server" if server else "agent") in unit
    assert "KillMode=process" in unit and "Delegate=yes" in unit
