"""`ansible-galaxy collection build` makes a tarball that installs, and whose
roles, modules and filters resolve by FQCN from the installed copy alone."""

import os
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def run(*cmd, **kw):
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=300, check=False, **kw)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


def test_build_install_and_resolve(tmp_path):
    run(BIN / "ansible-galaxy", "collection", "build", ROOT, "--output-path", tmp_path, "--force")
    tarball = tmp_path / "homelab-gpu_stack-0.1.0.tar.gz"
    names = tarfile.open(tarball).getnames()
    assert "roles/preflight/meta/argument_specs.yml" in names
    assert "plugins/module_utils/model_spec.py" in names
    leaked = [n for n in names if n.split("/")[0] in ("tests", "molecule", "images", ".venv", ".ansible")]
    assert not leaked, "build_ignore misses %s" % leaked[:5]

    # Away from the checkout's ansible.cfg, which resolves the collection from the checkout.
    dest = tmp_path / "collections"
    (tmp_path / "ansible.cfg").write_text("[defaults]\ncollections_path = %s\n" % dest)
    env = dict(os.environ, ANSIBLE_CONFIG=str(tmp_path / "ansible.cfg"), PAGER="cat")
    run(BIN / "ansible-galaxy", "collection", "install", "--no-deps", "--force", "-p", dest, tarball,
        env=env, cwd=tmp_path)
    assert (dest / "ansible_collections" / "homelab" / "gpu_stack" / "roles" / "preflight").is_dir()
    out = run(BIN / "ansible-doc", "-t", "role", "homelab.gpu_stack.preflight", env=env, cwd=tmp_path)
    assert "gpu_stack_models" in out
    out = run(BIN / "ansible-doc", "-t", "filter", "homelab.gpu_stack.model_specs", env=env, cwd=tmp_path)
    assert "gpu_stack_models" in out
    # The filter imports the collection's module_utils: only works when installed right.
    playbook = tmp_path / "p.yml"
    playbook.write_text(
        "- hosts: localhost\n  gather_facts: false\n  tasks:\n"
        "    - ansible.builtin.assert:\n"
        "        that: (hv | homelab.gpu_stack.model_specs(['h']))[0].served_name == 'a'\n"
        "      vars:\n        hv: {h: {gpu_stack_models: [{name: a, source: o/a}]}}\n")
    run(BIN / "ansible-playbook", playbook, env=env, cwd=tmp_path)
