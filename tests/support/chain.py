# Copyright: homelab.gpu_stack contributors
# Apache License 2.0 (see LICENSE)
"""Start and stop the real serving chain (CPU vLLM, llama.cpp, LiteLLM) on this machine.

One importable module for the e2e fixtures (tests/e2e/conftest.py), the
benchmarks and the test harness's GGUF conversion (molecule/k3s/prepare.yml),
so they all start the servers the same way. No pytest here: failures raise ChainError (an AssertionError, so
pytest reports it as a failed assertion with the server's log tail).

Processes are started in their own session and stopped by PID (SIGTERM to the
group, then SIGKILL), each with a log file.
"""

from __future__ import absolute_import, division, print_function

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# The converter's hash table does not know our freshly trained byte-level BPE
# tokenizer; it is GPT-2 style (byte-level pre-tokenizer, no normaliser), so
# the conversion tells llama.cpp so instead of failing.
CONVERT = r"""
import sys
share, args = sys.argv[1], sys.argv[2:]
sys.path[:0] = [share, share + "/gguf-py"]
from conversion import base
base.TextModel.get_vocab_base_pre = lambda self, tokenizer: "gpt-2"
sys.argv = ["convert_hf_to_gguf.py"] + args
import convert_hf_to_gguf
convert_hf_to_gguf.main()
"""


class ChainError(AssertionError):
    """A server of the chain did not come up (the message carries its log tail)."""


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
    """Poll until GET url answers 200; raise ChainError with the server's log if it died."""
    try:  # openai 3.x moved to the httpx2 fork
        import httpx2 as httpx
    except ImportError:  # pragma: no cover
        import httpx

    end = time.monotonic() + deadline
    last = None
    while time.monotonic() < end:
        if proc is not None and not proc.alive():
            raise ChainError("%s exited (%s) before %s answered; log tail:\n%s"
                             % (proc.name, proc.popen.returncode, url, proc.log_tail()))
        try:
            response = httpx.get(url, timeout=2, headers=headers)
            if response.status_code == 200:
                return time.monotonic()
            last = "HTTP %s" % response.status_code
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(0.25)
    raise ChainError("%s not answering 200 after %ss (last: %s)%s"
                     % (url, deadline, last, "; log tail:\n" + proc.log_tail() if proc else ""))


def venv(script):
    """Path of the venv that scripts/<script> builds once (and prints)."""
    out = subprocess.run(["bash", str(ROOT / "scripts" / script)], cwd=ROOT, check=True,
                         stdout=subprocess.PIPE, text=True, timeout=1800)
    return Path(out.stdout.strip().splitlines()[-1])


def _run_quiet(what, cmd, env=None):
    """Run a generator; its chatter is shown only when it fails."""
    proc = subprocess.run([str(c) for c in cmd], timeout=600, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise ChainError("%s failed (exit %s):\n%s" % (what, proc.returncode, proc.stderr[-4000:]))


def make_tiny_model(vllm_venv, out, *shape_args):
    """Generate the tiny model offline into out (tests/support/tiny_model.py's options)."""
    _run_quiet("tiny_model.py", [Path(vllm_venv) / "bin" / "python", ROOT / "tests/support/tiny_model.py", out]
               + list(shape_args))
    return Path(out)


def make_gguf(vllm_venv, llamacpp_venv, model_dir, out):
    """The HF model as f32 GGUF, by the converter of the llama.cpp that serves it.

    The converter needs torch, which the vLLM venv has; gguf-py and the
    conversion package come from llama.cpp's sdist kept in the llama.cpp venv.
    """
    share = Path(llamacpp_venv) / "share" / "llama.cpp"
    _run_quiet("convert_hf_to_gguf.py", [Path(vllm_venv) / "bin" / "python", "-c", CONVERT, share, model_dir,
                                         "--outfile", out, "--outtype", "f32"],
               env=dict(os.environ, NO_LOCAL_GGUF=""))
    return Path(out)


def vllm_env(cache):
    cache = Path(cache)
    return {
        "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
        "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CACHE_ROOT": str(cache / "vllm"),
        "TORCHINDUCTOR_CACHE_DIR": str(cache / "inductor"), "HF_HOME": str(cache / "hf"),
        "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1",
    }


def vllm_cmd(vllm_venv, model_dir, served_name, port):
    return [Path(vllm_venv) / "bin" / "python", "-m", "vllm.entrypoints.openai.api_server",
            "--model", model_dir, "--served-model-name", served_name,
            "--host", "127.0.0.1", "--port", str(port), "--dtype", "float32",
            "--max-model-len", "512", "--enforce-eager", "--max-num-seqs", "8"]


def llamacpp_cmd(llamacpp_venv, gguf, alias, port, api_key=None):
    cmd = [Path(llamacpp_venv) / "bin" / "python", "-m", "llama_cpp.server", "--model", gguf,
           "--model_alias", alias, "--host", "127.0.0.1", "--port", str(port),
           "--n_ctx", "512", "--n_threads", "1", "--verbose", "false"]
    if api_key:
        cmd += ["--api_key", api_key]
    return cmd


def litellm_env(master_key, extra=None):
    env = {"LITELLM_MASTER_KEY": master_key,
           # Bundled pricing map: the remote fetch cannot succeed here (~10 s of retries).
           "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_TELEMETRY": "False"}
    env.update(extra or {})
    return env


def litellm_cmd(litellm_venv, config, port):
    return [Path(litellm_venv) / "bin" / "litellm", "--config", config, "--host", "127.0.0.1",
            "--port", str(port), "--num_workers", "1"]
