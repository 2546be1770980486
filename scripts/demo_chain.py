#!/usr/bin/env python3
# Copyright: homelab.gpu_stack contributors
# Apache License 2.0 (see LICENSE)
"""The gateway chain of inventories/local, running on this machine (issue 6, `make demo`).

1. a tiny chat model, generated offline once (cached under $GPU_STACK_CACHE/demo);
2. the GPU tier: a CPU vLLM serving the inventory's model (tiny-chat) on :18001;
   the cpu tier: llama.cpp on the port of the inventory's cpu tier api_base (:18090);
   the "cloud" tier: a second llama.cpp on the cloud tier's api_base (:18099), a
   LOCAL STAND-IN for the cloud, holding the inventory's vault_openai_api_key;
3. the gateway config rendered by ansible-playbook (playbooks/demo_chain_render.yml:
   the litellm role, tasks_from render_config) from inventories/local;
4. LiteLLM started from that file;
5. gated by homelab.gpu_stack.openai_endpoint_gate (playbooks/demo_chain_gate.yml):
   once plain, once with force_fallback;
6. a curl to paste.

Everything is stopped at the end (by PID, then the process group is killed),
also on a failure or Ctrl-C, unless --keep is given; `--stop` stops a kept chain.

Run: .venv/bin/python scripts/demo_chain.py [--keep | --stop]
"""

from __future__ import absolute_import, division, print_function

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "support"))
import chain  # noqa: E402

INVENTORY = ROOT / "inventories" / "local"
VLLM_PORT = 18001
LITELLM_PORT = 18400
CACHE = Path(os.environ.get("GPU_STACK_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
             / "homelab-gpu-stack") / "demo"
PIDFILE = CACHE / "chain.pids"
ANSIBLE_ENV = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
LOCAL = ["-e", "ansible_connection=local", "-e", "ansible_python_interpreter=%s" % sys.executable]


def say(msg=""):
    print(msg, flush=True)


_DEMO_START = []  # the demo's own start time, set by its first step


def step(msg):
    if not _DEMO_START:
        _DEMO_START.append(time.monotonic())
    say("[demo %5.1fs] %s" % (time.monotonic() - _DEMO_START[0], msg))


def bin_path(name):
    return str(Path(sys.executable).with_name(name))


def inventory_vars():
    """The local inventory's variables as Ansible reads them (not re-parsed here)."""
    out = subprocess.run([bin_path("ansible-inventory"), "-i", str(INVENTORY), "--host", "gs-gpu"],
                         cwd=ROOT, env=ANSIBLE_ENV, check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def tier(variables, kind):
    found = [t for t in variables["gpu_stack_tiers"] if t.get("kind") == kind]
    if len(found) != 1:
        raise SystemExit("demo: inventories/local gpu_stack_tiers needs exactly one %s tier" % kind)
    return found[0]


def port_of(api_base, what):
    url = urlparse(api_base)
    if url.hostname not in ("127.0.0.1", "localhost") or not url.port:
        raise SystemExit("demo: %s api_base %s is not a local host:port, the demo starts it here"
                         % (what, api_base))
    return url.port


def cached_model(vllm_venv, llamacpp_venv, spec):
    """The tiny model (HF folder + GGUF) in the inventory's shape, made once."""
    shape = spec["shape"]
    key = "%s-L%d-h%d-a%d-kv%d" % (spec["served_name"], shape["num_layers"], shape["hidden_size"],
                                   shape["num_attention_heads"], shape["num_kv_heads"])
    model_dir, gguf = CACHE / key, CACHE / (key + "-f32.gguf")
    if (model_dir / ".complete").exists() and gguf.exists():
        step("model: reusing %s (cached)" % model_dir)
        return model_dir, gguf
    step("model: generating %s offline (random weights, no download)" % model_dir)
    shutil.rmtree(model_dir, ignore_errors=True)
    chain.make_tiny_model(vllm_venv, model_dir, "--layers", shape["num_layers"], "--hidden",
                          shape["hidden_size"], "--heads", shape["num_attention_heads"], "--kv-heads",
                          shape["num_kv_heads"], "--head-dim", shape["head_dim"], "--max-pos",
                          shape["max_position_embeddings"], "--dtype", "float32")
    tmp = gguf.with_suffix(".tmp")
    chain.make_gguf(vllm_venv, llamacpp_venv, model_dir, tmp)
    tmp.rename(gguf)
    (model_dir / ".complete").touch()
    return model_dir, gguf


def render_config(config_path, model_name):
    step("gateway: ansible-playbook playbooks/demo_chain_render.yml -i inventories/local "
         "(litellm role, tasks_from=render_config)")
    extra = {"litellm_config_path": str(config_path),
             "litellm_model_api_bases": {model_name: "http://127.0.0.1:%d/v1" % VLLM_PORT}}
    out = subprocess.run([bin_path("ansible-playbook"), "-i", str(INVENTORY),
                          str(ROOT / "playbooks/demo_chain_render.yml"), "-e", json.dumps(extra)] + LOCAL,
                         cwd=ROOT, env=ANSIBLE_ENV, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit("demo: rendering the gateway config failed:\n%s" % (out.stdout + out.stderr)[-4000:])
    step("gateway: rendered %s" % config_path)


def key_envs(config_text):
    """Environment variables the rendered config reads its keys from (os.environ/NAME)."""
    import yaml
    config = yaml.safe_load(config_text)
    names = set()
    for group in config["model_list"]:
        value = str(group["litellm_params"].get("api_key", ""))
        if value.startswith("os.environ/"):
            names.add(value.split("/", 1)[1])
    return sorted(names)


def gate(names, fallback_name, result_path):
    step("gate: ansible-playbook playbooks/demo_chain_gate.yml (homelab.gpu_stack.openai_endpoint_gate, "
         "plain, then force_fallback: true)")
    extra = {"demo_chain_base_url": "http://127.0.0.1:%d/v1" % LITELLM_PORT, "demo_chain_names": names,
             "demo_chain_fallback_name": fallback_name, "demo_chain_result_path": str(result_path)}
    out = subprocess.run([bin_path("ansible-playbook"), "-i", str(INVENTORY),
                          str(ROOT / "playbooks/demo_chain_gate.yml"), "-e", json.dumps(extra)] + LOCAL,
                         cwd=ROOT, env=ANSIBLE_ENV, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit("demo: the gate failed:\n%s" % (out.stdout + out.stderr)[-4000:])
    result = json.loads(result_path.read_text())
    result_path.unlink()
    return result


def steps_line(result):
    return ", ".join("%s %.3fs (%d attempt%s)" % (name, s["latency_s"], s["attempts"], "" if s["attempts"] == 1 else "s")
                     for name, s in ((n, result["steps"][n]) for n in ("health", "models", "chat")))


def save_pids(procs):
    PIDFILE.write_text(json.dumps([{"name": p.name, "pid": p.pid, "cmd": Path("/proc/%d/cmdline" % p.pid)
                                    .read_text(errors="replace")} for p in procs.procs]))


def stop_kept():
    """Stop a chain left by --keep: SIGTERM to each group, then SIGKILL (checked it is ours)."""
    if not PIDFILE.exists():
        say("demo: no kept chain (%s missing)" % PIDFILE)
        return 0
    entries = json.loads(PIDFILE.read_text())
    for entry in entries:
        try:
            same = Path("/proc/%d/cmdline" % entry["pid"]).read_text(errors="replace") == entry["cmd"]
        except OSError:
            same = False
        if not same:  # gone, or the PID now belongs to someone else
            continue
        for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
            try:
                os.killpg(entry["pid"], sig)
            except ProcessLookupError:
                break
            end = time.monotonic() + wait
            while time.monotonic() < end and Path("/proc/%d" % entry["pid"]).exists():
                try:  # reap if it is our child (it is not, after --keep), else just poll
                    os.waitpid(entry["pid"], os.WNOHANG)
                except ChildProcessError:
                    pass
                time.sleep(0.2)
        say("demo: stopped %s (pid %d)" % (entry["name"], entry["pid"]))
    PIDFILE.unlink()
    return 0


def run(args, procs):
    variables = inventory_vars()
    spec = variables["gpu_stack_models"][0]
    model_name = spec["served_name"]
    cpu, cloud = tier(variables, "cpu"), tier(variables, "cloud")
    cpu_port, cloud_port = port_of(cpu["api_base"], "cpu tier"), port_of(cloud["api_base"], "cloud tier")
    master_key, cloud_key = variables["litellm_master_key"], variables["vault_openai_api_key"]
    busy = [p for p in (VLLM_PORT, cpu_port, cloud_port, LITELLM_PORT) if chain.port_open(p)]
    if busy:
        raise SystemExit("demo: port(s) %s already in use (a kept demo? stop it: %s --stop)"
                         % (busy, "scripts/demo_chain.py"))

    step("venvs: vLLM CPU, LiteLLM, llama.cpp (built once, cached)")
    vllm_venv, litellm_venv, llamacpp_venv = (chain.venv(s) for s in
                                              ("venv-vllm.sh", "venv-litellm.sh", "venv-llamacpp.sh"))
    model_dir, gguf = cached_model(vllm_venv, llamacpp_venv, spec)

    step("gpu tier: CPU vLLM serving %s on 127.0.0.1:%d (no GPU here: vLLM's CPU build)" % (model_name, VLLM_PORT))
    vllm = procs.start("vllm-" + model_name, chain.vllm_cmd(vllm_venv, model_dir, model_name, VLLM_PORT),
                       env=chain.vllm_env(CACHE / "vllm-cache"), port=VLLM_PORT)
    step("cpu tier: llama.cpp serving %s on 127.0.0.1:%d" % (cpu["model"], cpu_port))
    cpu_proc = procs.start("llamacpp-cpu", chain.llamacpp_cmd(llamacpp_venv, gguf, cpu["model"], cpu_port),
                           port=cpu_port)
    step("cloud tier: llama.cpp serving %s on 127.0.0.1:%d -- a LOCAL STAND-IN for the cloud, "
         "no cloud is reached (key: the inventory's vault_openai_api_key)" % (cloud["model"], cloud_port))
    cloud_proc = procs.start("llamacpp-cloud-stand-in",
                             chain.llamacpp_cmd(llamacpp_venv, gguf, cloud["model"], cloud_port, api_key=cloud_key),
                             port=cloud_port)

    config_path = CACHE / "litellm-config.yaml"
    render_config(config_path, model_name)
    env_names = [n for n in key_envs(config_path.read_text()) if n != "LITELLM_MASTER_KEY"]
    step("gateway: LiteLLM from the rendered config on 127.0.0.1:%d (keys from env: LITELLM_MASTER_KEY%s)"
         % (LITELLM_PORT, "".join(", " + n for n in env_names)))
    gateway = procs.start("litellm", chain.litellm_cmd(litellm_venv, config_path, LITELLM_PORT),
                          env=chain.litellm_env(master_key, dict((n, cloud_key) for n in env_names)),
                          port=LITELLM_PORT)

    chain.wait_http("http://127.0.0.1:%d/v1/models" % cpu_port, 120, cpu_proc)
    chain.wait_http("http://127.0.0.1:%d/v1/models" % cloud_port, 120, cloud_proc,
                    headers={"Authorization": "Bearer " + cloud_key})
    step("cpu tier and cloud stand-in: up")
    # Until vLLM is up the gateway would (rightly) serve tiny-chat from the cpu
    # tier; the plain gate is meant to show the GPU tier answering.
    chain.wait_http("http://127.0.0.1:%d/health" % VLLM_PORT, 900, vllm)
    step("gpu tier: vLLM /health answers")
    chain.wait_http("http://127.0.0.1:%d/health/liveliness" % LITELLM_PORT, 300, gateway)
    step("gateway: LiteLLM /health/liveliness answers")

    import yaml
    groups = [g["model_name"] for g in yaml.safe_load(config_path.read_text())["model_list"]]
    result = gate(groups, model_name, CACHE / "gate-result.json")
    backends = {"http://127.0.0.1:%d/v1" % VLLM_PORT: "gpu tier (vLLM)",
                cpu["api_base"]: "cpu tier (llama.cpp)", cloud["api_base"]: "cloud tier (local stand-in)"}
    plain, forced = result["plain"], result["fallback"]
    say()
    say("== gate, plain: passed=%s; %s" % (plain["passed"], steps_line(plain)))
    for name in groups:  # in fallback order
        answer = plain["chat"][name]
        api_base = answer.get("headers", {}).get("x-litellm-model-api-base")
        say("   %-10s answered by %s (%s) in %.3fs: %r"
            % (name, backends.get(api_base, api_base), api_base, answer.get("latency_s", float("nan")),
               answer.get("content", "")[:40]))
    say("== gate, force_fallback: true: passed=%s; %s" % (forced["passed"], steps_line(forced)))
    answer = forced["chat"][model_name]
    headers = answer.get("headers", {})
    api_base = headers.get("x-litellm-model-api-base")
    say("   %s: the primary was failed on purpose (mock_testing_fallbacks); answered by %s (%s), "
        "attempted fallbacks: %s" % (model_name, backends.get(api_base, api_base), api_base,
                                     headers.get("x-litellm-attempted-fallbacks")))
    say("   (the random-weight model answers gibberish: the chain is the point, not the text)")
    say()
    base = "http://127.0.0.1:%d" % LITELLM_PORT
    say("== try it%s:" % ("" if args.keep else " (the chain is stopped now; to leave it up: --keep, or GPU_STACK_DEMO_KEEP=1 make demo)"))
    say("   export LITELLM_MASTER_KEY=%s   # inventories/local litellm_master_key (sandbox value)" % master_key)
    say("   curl -sD - %s/v1/chat/completions -H \"Authorization: Bearer $LITELLM_MASTER_KEY\" \\" % base)
    say("     -H 'Content-Type: application/json' \\")
    say("     -d '{\"model\": \"%s\", \"messages\": [{\"role\": \"user\", \"content\": \"Say hello.\"}], "
        "\"max_tokens\": 8}'" % model_name)
    say("   # header x-litellm-model-api-base names the backend; add \"mock_testing_fallbacks\": true "
        "to the JSON to force the fallback")
    say("   logs: %s" % procs.logdir)
    if args.keep:
        save_pids(procs)
        say("== the chain stays up (--keep): %s"
            % ", ".join("%s pid %d" % (p.name, p.pid) for p in procs.procs))
        say("   stop it: .venv/bin/python scripts/demo_chain.py --stop")
        procs.procs = []  # handed over to --stop
    else:
        say("== stopping the chain (pass --keep to leave it running)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--keep", action="store_true", help="leave the chain running at the end")
    parser.add_argument("--stop", action="store_true", help="stop a chain left by --keep")
    args = parser.parse_args()
    CACHE.mkdir(parents=True, exist_ok=True)
    if args.stop:
        return stop_kept()
    if PIDFILE.exists():
        stop_kept()  # a previous --keep: its ports are needed again

    # SIGTERM (a CI timeout, `kill`) stops the chain too, like Ctrl-C.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(143))
    shutil.rmtree(CACHE / "logs", ignore_errors=True)
    procs = chain.ProcessManager(CACHE / "logs")
    start = time.monotonic()
    step("demo chain from inventories/local (cache %s)" % CACHE)
    try:
        run(args, procs)
    except chain.ChainError as exc:
        say("demo: a server did not come up: %s" % exc)
        return 1
    except KeyboardInterrupt:
        say("\ndemo: interrupted, stopping the chain")
        return 130
    finally:
        if procs.procs:
            procs.stop_all()
            say("demo: chain stopped (logs kept in %s)" % procs.logdir)
    say("== demo chain: done in %.0f s" % (time.monotonic() - start))
    return 0


if __name__ == "__main__":
    sys.exit(main())
