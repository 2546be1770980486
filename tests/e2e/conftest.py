"""Shared fixtures for end-to-end tests against real servers on this machine.

Everything here is real: CPU vLLM (scripts/venv-vllm.sh), llama.cpp's
OpenAI-compatible server (scripts/venv-llamacpp.sh), LiteLLM's proxy
(scripts/venv-litellm.sh), a tiny random-weight model generated offline
(tests/support/tiny_model.py) and converted to GGUF by llama.cpp's own
converter. Each venv is built once and cached by the hash of its pins.

Processes are started in their own session and stopped by PID (SIGTERM to the
group, then SIGKILL), whatever the test's outcome; each gets its own cache
folders and a log file under the test's tmp folder.

Reuse:
    procs (session)            ProcessManager: start / stop / pause / resume
    vllm_venv, litellm_venv, llamacpp_venv (session)  venv paths
    tiny_model_dir, tiny_gguf (session)               the generated model
    start_vllm, start_llamacpp, start_litellm         factories (session)
    render_litellm_config(dest, models, tiers, extra_vars)  the role's template
    run_render_playbook(playbook, models, tiers, extra_vars, workdir)  any role's render tasks
    wait_http(url, deadline, proc=None)
"""

import atexit
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COLLECTIONS = ROOT / ".ansible" / "collections"
if str(COLLECTIONS) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS))
if str(ROOT / "tests" / "support") not in sys.path:
    sys.path.insert(0, str(ROOT / "tests" / "support"))

# The start/stop helpers live in tests/support/chain.py (shared with the
# benchmarks); their names stay importable from here.
import chain  # noqa: E402
from chain import (  # noqa: E402,F401
    CONVERT as _CONVERT, ProcessManager, free_port, litellm_env, vllm_env)

_RENDER_PLAYBOOK = """\
- name: Render the LiteLLM config from the role's template
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Render config.yaml only
      ansible.builtin.include_role:
        name: homelab.gpu_stack.litellm
        tasks_from: render_config
"""


def wait_http(url, deadline=300, proc=None, headers=None):
    """Poll until GET url answers 200; fail the test with the server's log if it died."""
    try:
        return chain.wait_http(url, deadline, proc, headers)
    except chain.ChainError as exc:
        pytest.fail(str(exc))


def _venv(script):
    return chain.venv(script)


@pytest.fixture(scope="session")
def vllm_venv():
    return _venv("venv-vllm.sh")


@pytest.fixture(scope="session")
def litellm_venv():
    return _venv("venv-litellm.sh")


@pytest.fixture(scope="session")
def llamacpp_venv():
    return _venv("venv-llamacpp.sh")


@pytest.fixture(scope="session")
def procs(tmp_path_factory):
    manager = ProcessManager(tmp_path_factory.mktemp("server-logs"))
    atexit.register(manager.stop_all)  # also on an interrupted session
    yield manager
    manager.stop_all()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, vllm_venv):
    """A 2-layer Llama with a ChatML byte-level BPE tokenizer, made offline."""
    out = tmp_path_factory.mktemp("tiny-model") / "tiny"
    chain.make_tiny_model(vllm_venv, out, "--layers", "2", "--hidden", "128", "--heads", "4",
                          "--kv-heads", "2", "--dtype", "float32")
    return out


@pytest.fixture(scope="session")
def tiny_gguf(tiny_model_dir, vllm_venv, llamacpp_venv):
    """The same tiny model as GGUF, by the converter of the llama.cpp that serves it.

    The converter needs torch, which the vLLM venv has; gguf-py and the
    conversion package come from llama.cpp's sdist kept in the llama.cpp venv.
    """
    out = tiny_model_dir.parent / "tiny-f32.gguf"
    chain.make_gguf(vllm_venv, llamacpp_venv, tiny_model_dir, out)
    return out


@pytest.fixture(scope="session")
def start_vllm(procs, vllm_venv, tmp_path_factory):
    """start_vllm(name, model_dir, served_name) -> Proc (not waited for: poll /health)."""
    def start(name, model_dir, served_name, port=None):
        port = port or free_port()
        cache = tmp_path_factory.mktemp("cache-" + name)
        return procs.start(name, chain.vllm_cmd(vllm_venv, model_dir, served_name, port),
                           env=vllm_env(cache), port=port)
    return start


@pytest.fixture(scope="session")
def start_llamacpp(procs, llamacpp_venv):
    """start_llamacpp(name, gguf, alias, api_key=None) -> Proc (up in ~1 s: poll /v1/models)."""
    def start(name, gguf, alias, api_key=None, port=None):
        port = port or free_port()
        return procs.start(name, chain.llamacpp_cmd(llamacpp_venv, gguf, alias, port, api_key), port=port)
    return start


@pytest.fixture(scope="session")
def start_litellm(procs, litellm_venv):
    """start_litellm(name, config_path, env) -> Proc (poll /health/liveliness)."""
    def start(name, config, env, port=None):
        port = port or free_port()
        return procs.start(name, chain.litellm_cmd(litellm_venv, config, port), env=env, port=port)
    return start


def run_render_playbook(playbook, models, tiers, extra_vars=None, workdir=None, gpu_vram_mib=12288):
    """Run a rendering playbook (its text) against a one-GPU-worker inventory.

    ``models``: raw model specs (as in gpu_stack_models) of that worker, e2e-gpu;
    ``tiers``: gpu_stack_tiers; ``extra_vars`` are passed from a 0600 file that
    is removed afterwards (they may hold keys). Returns the ansible output.
    """
    workdir = Path(workdir)
    # The roles read the stack model, compiled from a whole inventory: a server,
    # a GPU per model (they share no mode), and each tiny model's own config.json
    # (a local source's folder is found as <gpu_stack_model_configs>/<its name>).
    inventory = {"all": {"children": {"k3s_servers": {"hosts": {"e2e-gpu": {}}},
                                      "gpu_workers": {"hosts": {"e2e-gpu": {
                                          "gpu_stack_models": models,
                                          "gpu_stack_gpu": {"model": "none (e2e)", "vram_mib": gpu_vram_mib,
                                                            "count": max(1, len(models))}}}}}}}
    (workdir / "inventory.json").write_text(json.dumps(inventory))
    folders = set(str(Path(m["source"]).parent) for m in models if m["source"].startswith("/"))
    variables = dict(extra_vars or {}, gpu_stack_tiers=tiers, gpu_stack_model_hub=False,
                     gpu_stack_model_configs=folders.pop() if folders else "")
    varfile = workdir / "render-vars.json"
    varfile.write_text(json.dumps(variables))
    varfile.chmod(0o600)
    (workdir / "render.yml").write_text(playbook)
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("ansible-playbook")), "-i", str(workdir / "inventory.json"),
         str(workdir / "render.yml"), "-e", "@%s" % varfile, "-e", "ansible_connection=local",
         "-e", "ansible_python_interpreter=%s" % sys.executable],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    varfile.unlink()
    if proc.returncode != 0:
        pytest.fail("rendering failed:\n%s" % (proc.stdout + proc.stderr)[-4000:])
    return proc.stdout + proc.stderr


def render_litellm_config(dest, models, tiers, extra_vars=None, workdir=None):
    """Render config.yaml with roles/litellm's own template (tasks_from=render_config).

    ``models``: raw model specs (as in gpu_stack_models) of one GPU worker;
    ``tiers``: gpu_stack_tiers; ``extra_vars``: e.g. litellm_master_key,
    litellm_model_api_bases. Returns the ansible-playbook output.
    """
    return run_render_playbook(_RENDER_PLAYBOOK, models, tiers, dict(extra_vars or {}, litellm_config_path=str(dest)),
                               workdir or Path(dest).parent)


def run_module(module, args, check=False):
    """Run a collection module on localhost through ansible (ad hoc); return its result."""
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
               ANSIBLE_STDOUT_CALLBACK="json", ANSIBLE_NOCOLOR="1")
    cmd = [str(Path(sys.executable).with_name("ansible")), "localhost", "-m", module,
           "-a", json.dumps(args), "-e", "ansible_python_interpreter=%s" % sys.executable]
    if check:
        cmd.append("--check")
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
                          check=False)  # a failed gate is a result to read, not an exception
    try:
        # The JSON document comes first; a summary callback may print after it.
        doc, _end = json.JSONDecoder().raw_decode(proc.stdout[proc.stdout.index("{"):])
    except ValueError:
        pytest.fail("no JSON from ansible:\n%s" % (proc.stdout + proc.stderr)[-4000:])
    result = doc["plays"][0]["tasks"][0]["hosts"]["localhost"]
    return result, proc.stdout + proc.stderr


class Helpers:
    """The plain helpers, handed to tests as a fixture (conftest is not importable by name)."""
    free_port = staticmethod(free_port)
    wait_http = staticmethod(wait_http)
    render_litellm_config = staticmethod(render_litellm_config)
    run_render_playbook = staticmethod(run_render_playbook)
    run_module = staticmethod(run_module)
    litellm_env = staticmethod(litellm_env)
    vllm_env = staticmethod(vllm_env)


@pytest.fixture(scope="session")
def helpers():
    return Helpers
