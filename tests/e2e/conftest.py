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
    wait_http(url, deadline, proc=None)
"""

import atexit
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COLLECTIONS = ROOT / ".ansible" / "collections"
if str(COLLECTIONS) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS))

# The converter's hash table does not know our freshly trained byte-level BPE
# tokenizer; it is GPT-2 style (byte-level pre-tokenizer, no normaliser), so
# the conversion tells llama.cpp so instead of failing.
_CONVERT = r"""
import sys
share, args = sys.argv[1], sys.argv[2:]
sys.path[:0] = [share, share + "/gguf-py"]
from conversion import base
base.TextModel.get_vocab_base_pre = lambda self, tokenizer: "gpt-2"
sys.argv = ["convert_hf_to_gguf.py"] + args
import convert_hf_to_gguf
convert_hf_to_gguf.main()
"""

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


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port, host="127.0.0.1"):
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


class Proc:
    def __init__(self, name, popen, log, port):
        self.name, self.popen, self.log, self.port = name, popen, log, port
        self.pid = popen.pid

    def alive(self):
        return self.popen.poll() is None

    def log_tail(self, lines=40):
        try:
            return "\n".join(Path(self.log).read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class ProcessManager:
    """Starts servers in their own process group; stops them by PID, always."""

    def __init__(self, logdir):
        self.logdir = Path(logdir)
        self.logdir.mkdir(parents=True, exist_ok=True)
        self.procs = []

    def start(self, name, cmd, env=None, port=None, cwd=None):
        log = self.logdir / ("%s.log" % name)
        handle = open(log, "ab")
        popen = subprocess.Popen(
            [str(c) for c in cmd], stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=dict(os.environ, **(env or {})), cwd=cwd, start_new_session=True)
        handle.close()
        proc = Proc(name, popen, log, port)
        self.procs.append(proc)
        return proc

    @staticmethod
    def _signal(proc, sig):
        try:
            os.killpg(proc.pid, sig)  # its own session: pgid == pid
        except ProcessLookupError:
            pass

    def pause(self, proc):
        self._signal(proc, signal.SIGSTOP)

    def resume(self, proc):
        self._signal(proc, signal.SIGCONT)

    def kill(self, proc):
        """Abrupt death (SIGKILL), as when a node or pod dies."""
        self._signal(proc, signal.SIGKILL)
        proc.popen.wait(timeout=30)

    def stop(self, proc, grace=15):
        if proc.popen.poll() is None:
            self._signal(proc, signal.SIGCONT)  # a paused process cannot act on SIGTERM
            self._signal(proc, signal.SIGTERM)
            try:
                proc.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        # SIGTERM once failed to stop LiteLLM, and vLLM leaves an engine child:
        # the group is killed whatever the leader did.
        self._signal(proc, signal.SIGKILL)
        try:
            proc.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        if proc.port:
            end = time.monotonic() + 10
            while port_open(proc.port) and time.monotonic() < end:
                time.sleep(0.2)

    def stop_all(self):
        for proc in reversed(self.procs):
            self.stop(proc)
        self.procs = []


def wait_http(url, deadline=300, proc=None, headers=None):
    """Poll until GET url answers 200; fail with the server's log if it died."""
    try:  # openai 3.x moved to the httpx2 fork
        import httpx2 as httpx
    except ImportError:  # pragma: no cover
        import httpx

    end = time.monotonic() + deadline
    last = None
    while time.monotonic() < end:
        if proc is not None and not proc.alive():
            pytest.fail("%s exited (%s) before %s answered; log tail:\n%s"
                        % (proc.name, proc.popen.returncode, url, proc.log_tail()))
        try:
            response = httpx.get(url, timeout=2, headers=headers)
            if response.status_code == 200:
                return time.monotonic()
            last = "HTTP %s" % response.status_code
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(0.25)
    pytest.fail("%s not answering 200 after %ss (last: %s)%s"
                % (url, deadline, last, "; log tail:\n" + proc.log_tail() if proc else ""))


def _venv(script):
    out = subprocess.run(["bash", str(ROOT / "scripts" / script)], cwd=ROOT, check=True,
                         stdout=subprocess.PIPE, text=True, timeout=1800)
    return Path(out.stdout.strip().splitlines()[-1])


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
    subprocess.run([str(vllm_venv / "bin" / "python"), str(ROOT / "tests/support/tiny_model.py"),
                    str(out), "--layers", "2", "--hidden", "128", "--heads", "4", "--kv-heads", "2",
                    "--dtype", "float32"], check=True, timeout=600, stdout=subprocess.DEVNULL)
    return out


@pytest.fixture(scope="session")
def tiny_gguf(tiny_model_dir, vllm_venv, llamacpp_venv):
    """The same tiny model as GGUF, by the converter of the llama.cpp that serves it.

    The converter needs torch, which the vLLM venv has; gguf-py and the
    conversion package come from llama.cpp's sdist kept in the llama.cpp venv.
    """
    out = tiny_model_dir.parent / "tiny-f32.gguf"
    share = llamacpp_venv / "share" / "llama.cpp"
    subprocess.run([str(vllm_venv / "bin" / "python"), "-c", _CONVERT, str(share),
                    str(tiny_model_dir), "--outfile", str(out), "--outtype", "f32"],
                   check=True, timeout=600, stdout=subprocess.DEVNULL, env=dict(os.environ, NO_LOCAL_GGUF=""))
    return out


def vllm_env(cache):
    cache = Path(cache)
    return {
        "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
        "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CACHE_ROOT": str(cache / "vllm"),
        "TORCHINDUCTOR_CACHE_DIR": str(cache / "inductor"), "HF_HOME": str(cache / "hf"),
        "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1",
    }


@pytest.fixture(scope="session")
def start_vllm(procs, vllm_venv, tmp_path_factory):
    """start_vllm(name, model_dir, served_name) -> Proc (not waited for: poll /health)."""
    def start(name, model_dir, served_name, port=None):
        port = port or free_port()
        cache = tmp_path_factory.mktemp("cache-" + name)
        cmd = [vllm_venv / "bin" / "python", "-m", "vllm.entrypoints.openai.api_server",
               "--model", model_dir, "--served-model-name", served_name,
               "--host", "127.0.0.1", "--port", str(port), "--dtype", "float32",
               "--max-model-len", "512", "--enforce-eager", "--max-num-seqs", "8"]
        return procs.start(name, cmd, env=vllm_env(cache), port=port)
    return start


@pytest.fixture(scope="session")
def start_llamacpp(procs, llamacpp_venv):
    """start_llamacpp(name, gguf, alias, api_key=None) -> Proc (up in ~1 s: poll /v1/models)."""
    def start(name, gguf, alias, api_key=None, port=None):
        port = port or free_port()
        cmd = [llamacpp_venv / "bin" / "python", "-m", "llama_cpp.server", "--model", gguf,
               "--model_alias", alias, "--host", "127.0.0.1", "--port", str(port),
               "--n_ctx", "512", "--n_threads", "1", "--verbose", "false"]
        if api_key:
            cmd += ["--api_key", api_key]
        return procs.start(name, cmd, port=port)
    return start


def litellm_env(master_key, extra=None):
    env = {"LITELLM_MASTER_KEY": master_key,
           # Bundled pricing map: the remote fetch cannot succeed here (~10 s of retries).
           "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_TELEMETRY": "False"}
    env.update(extra or {})
    return env


@pytest.fixture(scope="session")
def start_litellm(procs, litellm_venv):
    """start_litellm(name, config_path, env) -> Proc (poll /health/liveliness)."""
    def start(name, config, env, port=None):
        port = port or free_port()
        cmd = [litellm_venv / "bin" / "litellm", "--config", config, "--host", "127.0.0.1",
               "--port", str(port), "--num_workers", "1"]
        return procs.start(name, cmd, env=env, port=port)
    return start


def render_litellm_config(dest, models, tiers, extra_vars=None, workdir=None):
    """Render config.yaml with roles/litellm's own template (tasks_from=render_config).

    ``models``: raw model specs (as in gpu_stack_models) of one GPU worker;
    ``tiers``: gpu_stack_tiers; ``extra_vars``: e.g. litellm_master_key,
    litellm_model_api_bases. Returns the ansible-playbook output.
    """
    workdir = Path(workdir or Path(dest).parent)
    inventory = {"all": {"children": {"gpu_workers": {"hosts": {"e2e-gpu": {
        "gpu_stack_models": models,
        "gpu_stack_gpu": {"model": "none (e2e)", "vram_mib": 1024, "count": 1}}}}}}}
    (workdir / "inventory.json").write_text(json.dumps(inventory))
    variables = dict(extra_vars or {}, gpu_stack_tiers=tiers, litellm_config_path=str(dest))
    varfile = workdir / "render-vars.json"
    varfile.write_text(json.dumps(variables))
    varfile.chmod(0o600)
    (workdir / "render.yml").write_text(_RENDER_PLAYBOOK)
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("ansible-playbook")), "-i", str(workdir / "inventory.json"),
         str(workdir / "render.yml"), "-e", "@%s" % varfile, "-e", "ansible_connection=local",
         "-e", "ansible_python_interpreter=%s" % sys.executable],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    varfile.unlink()
    if proc.returncode != 0:
        pytest.fail("rendering the LiteLLM config failed:\n%s" % (proc.stdout + proc.stderr)[-4000:])
    return proc.stdout + proc.stderr


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
    run_module = staticmethod(run_module)
    litellm_env = staticmethod(litellm_env)
    vllm_env = staticmethod(vllm_env)


@pytest.fixture(scope="session")
def helpers():
    return Helpers
