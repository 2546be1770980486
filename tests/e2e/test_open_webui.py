"""Open WebUI in a real chromium, against a real gateway chain (issue 15).

    GPU tier   a CPU vLLM serving the tiny model as tiny-chat (the GPU stand-in)
    CPU tier   llama.cpp's server on the same model (GGUF)
    gateway    LiteLLM 1.106.2 from the config roles/litellm renders
    UI         Open WebUI 0.12.4 from PyPI (scripts/venv-open-webui.sh), started
               with the environment of the Deployment roles/open_webui renders
    browser    Debian's chromium, headless, driven by Playwright
               (tests/support/webui_browser.py), no browser download

The browser logs in as the admin the Deployment's environment creates, picks
tiny-chat, sends a message and sees the answer (vLLM's access log has it, the
CPU tier's does not); then vLLM is killed and the same page gets its next
answer from llama.cpp (its access log has it).
Screenshots: build/test-artifacts/open-webui/.

What differs from the cluster: the gateway has no database here (LiteLLM's
database layer needs Prisma's engines, which no reachable registry ships), so
the UI's key Secret holds the master key, as in the sandbox; the URLs are
loopback ones instead of the Services'; the Deployment is rendered with Open
WebUI's background requests (titles, tags, follow-ups) off through
open_webui_extra_env; and the tiny model serves a 2048-token context.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

try:  # openai 3.x moved to the httpx2 fork
    import httpx2 as httpx
except ImportError:  # pragma: no cover
    import httpx

import chain
from conftest import ROOT, _venv

MASTER_KEY = "sk-e2e-webui-master-" + "5d1e9a7c3b"
MODEL = "tiny-chat"
ARTIFACTS = ROOT / "build" / "test-artifacts" / "open-webui"
RENDER_PLAYBOOK = """\
- name: Render the Open WebUI objects with the role
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Render
      ansible.builtin.include_role:
        name: homelab.gpu_stack.open_webui
"""


@pytest.fixture(scope="module")
def webui_venv():
    return _venv("venv-open-webui.sh")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """The role's objects for inventories/local with the UI on (Secrets included)."""
    out = tmp_path_factory.mktemp("webui-render")
    (out / "render.yml").write_text(RENDER_PLAYBOOK)
    # Only the chat reaches the models: Open WebUI's own background requests
    # (titles, tags, follow-ups: long prompts, max_tokens 1000) would overflow
    # the tiny model and blur which tier answered the page.
    background = dict((name, "False") for name in
                      ("ENABLE_TITLE_GENERATION", "ENABLE_TAGS_GENERATION", "ENABLE_FOLLOW_UP_GENERATION"))
    extra = {"open_webui_enabled": True, "open_webui_mode": "render", "open_webui_render_dir": str(out / "objects"),
             "open_webui_extra_env": background, "gpu_stack_render_secrets": True,
             "ansible_python_interpreter": sys.executable}
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("ansible-playbook")), "-i", str(ROOT / "inventories/local"),
         str(out / "render.yml"), "-e", json.dumps(extra)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
        env=dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1"))
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return dict((p.name, yaml.safe_load(p.read_text())) for p in (out / "objects").glob("*.yaml"))


def deployment_env(objects, secrets_by_name):
    """The container env of the rendered Deployment, Secret references resolved."""
    container = objects["deployment-open-webui.yaml"]["spec"]["template"]["spec"]["containers"][0]
    env = {}
    for item in container["env"]:
        if "value" in item:
            env[item["name"]] = item["value"]
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            env[item["name"]] = secrets_by_name[ref["name"]][ref["key"]]
    return env


@pytest.fixture(scope="module")
def stack(tmp_path_factory, procs, helpers, tiny_model_dir, tiny_gguf, vllm_venv, llamacpp_venv,
          start_litellm, webui_venv, rendered):
    s = type("Stack", (), {})()
    # A context of 2048 (the model's own limit), not the chain's usual 512:
    # Open WebUI's prompt for a chat is longer than a curl's.
    port = helpers.free_port()
    s.vllm = procs.start("webui-vllm", chain.vllm_cmd(vllm_venv, tiny_model_dir, MODEL, port) + ["--max-model-len", "2048"],
                         env=chain.vllm_env(tmp_path_factory.mktemp("webui-vllm-cache")), port=port)
    port = helpers.free_port()
    s.cpu = procs.start("webui-llamacpp", chain.llamacpp_cmd(llamacpp_venv, tiny_gguf, "tiny-cpu", port) + ["--n_ctx", "2048"],
                        port=port)
    s.vllm_base = "http://127.0.0.1:%d/v1" % s.vllm.port
    s.cpu_base = "http://127.0.0.1:%d/v1" % s.cpu.port
    # A GPU-tier timeout long enough for the tiny model's longest answer on a
    # busy CPU: while vLLM is up, every answer is vLLM's (no timeout fallback).
    tiers = [{"name": "gpu", "kind": "gpu", "fallback": "cpu", "timeout_s": 60},
             {"name": "cpu", "kind": "cpu", "provider": "openai_compatible", "api_base": s.cpu_base,
              "model": "tiny-cpu", "timeout_s": 60}]
    models = [{"name": MODEL, "source": str(tiny_model_dir), "served_name": MODEL, "dtype": "float32",
               "context_length": 2048}]
    workdir = tmp_path_factory.mktemp("webui-gateway")
    config = workdir / "litellm-config.yaml"
    # Without hang routing the CPU tier is asked only as the fallback (its
    # background health checks would reach it too), so its request count
    # tells which tier answered the page.
    gateway_vars = {"litellm_master_key": MASTER_KEY, "litellm_hang_routing": False,
                    "litellm_model_api_bases": {MODEL: s.vllm_base}}
    helpers.render_litellm_config(config, models, tiers, gateway_vars, workdir)
    helpers.wait_http(s.vllm_base[:-3] + "/health", 900, s.vllm)
    helpers.wait_http(s.cpu_base + "/models", 120, s.cpu)
    s.lite = start_litellm("webui-litellm", config, helpers.litellm_env(MASTER_KEY))
    s.lite_base = "http://127.0.0.1:%d" % s.lite.port
    helpers.wait_http(s.lite_base + "/health/liveliness", 300, s.lite)

    secrets = {"open-webui": rendered["secret-open-webui.yaml"]["stringData"],
               "gateway-key-open-webui": {"api_key": MASTER_KEY}}
    s.role_env = deployment_env(rendered, secrets)
    port = helpers.free_port()
    s.url = "http://127.0.0.1:%d" % port
    data = tmp_path_factory.mktemp("webui-data")
    # Only what a loopback run must change: where it listens, keeps its data
    # and finds the gateway, and the URL the browser uses.
    env = dict(s.role_env, PORT=str(port), DATA_DIR=str(data), WEBUI_URL=s.url,
               OPENAI_API_BASE_URL=s.lite_base + "/v1", HOME=str(data))
    s.webui = procs.start("open-webui", [webui_venv / "bin" / "open-webui", "serve", "--host", "127.0.0.1",
                                         "--port", port], env=env, port=port, cwd=data)
    helpers.wait_http(s.url + "/health", 300, s.webui)
    s.webui_venv, s.procs = webui_venv, procs
    return s


def chats_answered(proc):
    """Chat completions a server answered (200 in its uvicorn access log)."""
    return Path(proc.log).read_text(errors="replace").count('"POST /v1/chat/completions HTTP/1.1" 200')


def test_the_deployment_runs_offline_with_its_gateway_key_and_no_signup(rendered):
    env = deployment_env(rendered, {"open-webui": rendered["secret-open-webui.yaml"]["stringData"],
                                    "gateway-key-open-webui": {"api_key": "<from the litellm role>"}})
    assert env["OPENAI_API_BASE_URL"] == "http://litellm.llm.svc:4000/v1"
    assert env["OPENAI_API_KEY"] == "<from the litellm role>"
    assert env["ENABLE_SIGNUP"] == "False" and env["ENABLE_OLLAMA_API"] == "False"
    assert env["OFFLINE_MODE"] == "True" and env["HF_HUB_OFFLINE"] == "1"
    # vLLM refuses Open WebUI's native tool calling (tool_choice "auto") with 400.
    assert json.loads(env["DEFAULT_MODEL_PARAMS"]) == {"function_calling": "legacy"}
    assert env["WEBUI_ADMIN_EMAIL"] == "admin@gpu-stack.home.arpa"
    assert env["WEBUI_URL"] == "https://chat.gpu-stack.home.arpa"
    ingress = rendered["ingress-open-webui.yaml"]["spec"]
    assert ingress["tls"][0]["hosts"] == ["chat.gpu-stack.home.arpa"]


def test_signup_is_off_and_the_admin_from_the_vault_logs_in(stack):
    config = httpx.get(stack.url + "/api/config", timeout=10).json()
    assert config["features"]["enable_signup"] is False
    refused = httpx.post(stack.url + "/api/v1/auths/signup", timeout=10,
                         json={"name": "x", "email": "visitor@example.org", "password": "visitor-password-1"})
    assert refused.status_code in (401, 403), refused.text[:200]
    wrong = httpx.post(stack.url + "/api/v1/auths/signin", timeout=10,
                       json={"email": stack.role_env["WEBUI_ADMIN_EMAIL"], "password": "not-the-password"})
    assert wrong.status_code in (400, 401, 403)
    signin = httpx.post(stack.url + "/api/v1/auths/signin", timeout=10,
                        json={"email": stack.role_env["WEBUI_ADMIN_EMAIL"],
                              "password": stack.role_env["WEBUI_ADMIN_PASSWORD"]})
    assert signin.status_code == 200 and signin.json()["role"] == "admin", signin.text[:200]


def test_browser_chats_through_the_gpu_tier_then_the_cpu_tier(stack, tmp_path):
    if shutil.which("chromium") is None:
        pytest.fail("Debian's chromium is missing: scripts/bootstrap.sh installs it")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    gpu_before, cpu_before = chats_answered(stack.vllm), chats_answered(stack.cpu)
    browser = subprocess.Popen(
        [str(stack.webui_venv / "bin" / "python"), str(ROOT / "tests/support/webui_browser.py"), stack.url,
         stack.role_env["WEBUI_ADMIN_EMAIL"], MODEL, str(tmp_path)],
        env=dict(os.environ, WEBUI_PASSWORD=stack.role_env["WEBUI_ADMIN_PASSWORD"]),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        progress = tmp_path / "progress.json"
        end = time.monotonic() + 300
        while browser.poll() is None and "first" not in (json.loads(progress.read_text()) if progress.exists() else {}):
            assert time.monotonic() < end, "no first answer in the browser within 300 s"
            time.sleep(0.5)
        state = json.loads(progress.read_text()) if progress.exists() else {}
        assert "first" in state, "browser stopped early:\n%s" % browser.stdout.read()[-4000:]
        assert state["model_label"] == "Selected model: %s" % MODEL
        assert state["first"].strip(), "the page shows no answer text"
        assert chats_answered(stack.vllm) > gpu_before, "vLLM (the GPU tier) answered no chat"
        assert chats_answered(stack.cpu) == cpu_before, "the CPU tier answered while the GPU tier was up"

        stack.procs.kill(stack.vllm)
        (tmp_path / "go").write_text("")
        out = browser.communicate(timeout=300)[0]
        assert browser.returncode == 0, out[-4000:]
        state = json.loads(progress.read_text())
        assert state["second"].strip(), "the page shows no answer text once the GPU tier is down"
        assert chats_answered(stack.cpu) > cpu_before, "llama.cpp (the CPU tier) answered no chat"
    finally:
        if browser.poll() is None:
            os.killpg(browser.pid, 9)
            browser.wait(timeout=10)
        for shot in tmp_path.glob("*.png"):
            shutil.copy(shot, ARTIFACTS / shot.name)
    assert (ARTIFACTS / "answer-gpu.png").stat().st_size > 10000
    assert (ARTIFACTS / "answer-after-gpu-stopped.png").stat().st_size > 10000


def test_app_keys_need_litellm_database_and_say_so(stack, helpers):
    """homelab.gpu_stack.litellm_keys against this real LiteLLM, which has no
    database: it fails with LiteLLM's own answer, and the master key stays out
    of the output. (With a database: tests/unit/test_litellm_keys.py.)"""
    result, out = helpers.run_module("homelab.gpu_stack.litellm_keys", {
        "base_url": stack.lite_base + "/v1", "master_key": MASTER_KEY, "consumers": [{"name": "open-webui"}]})
    assert result.get("failed"), out[-3000:]
    assert re.search(r"LiteLLM /key/list answered HTTP [45]\d\d: ", result["msg"]), result["msg"]
    assert MASTER_KEY not in out
