"""The gateway chain end to end, on real servers (issue 6, cases a-f).

    GPU tier   two CPU vLLM servers (stand-ins for the GPU nodes' vLLM: the
               same server, same API, on the CPU), one per model
    CPU tier   llama.cpp's OpenAI-compatible server on the same tiny model (GGUF)
    cloud tier a second llama.cpp server that demands an API key, standing in
               for the cloud through the tier's api_base: no real cloud is
               reachable from here, and this is a real OpenAI-compatible server
    gateway    LiteLLM 1.106.2 started from the config.yaml that roles/litellm's
               template renders (tasks_from=render_config), not a hand-written one

The tests run in file order and later ones break the chain further (hang,
kill), so each states what it expects to be up. At most two vLLMs run (~3 GiB each).
"""

import collections
import time
from pathlib import Path

import pytest
import yaml
from openai import OpenAI

try:  # openai 3.x moved to the httpx2 fork
    import httpx2 as httpx
except ImportError:  # pragma: no cover
    import httpx


MASTER_KEY = "sk-e2e-master-" + "7f3a9c1e5b2d4f60"
CLOUD_KEY = "sk-e2e-cloud-stand-in-" + "0b1c2d3e"
GPU_TIMEOUT_S = 2.0
MODELS = ["tiny-a", "tiny-b"]


class Chain:
    pass


@pytest.fixture(scope="module")
def chain(tmp_path_factory, procs, tiny_model_dir, tiny_gguf, start_vllm, start_llamacpp, helpers):
    """Starts both vLLMs (not waited for: test f gates on one while it starts),
    the CPU and cloud tiers, and renders the gateway config from the role."""
    c = Chain()
    c.procs, c.helpers = procs, helpers
    c.vllm = {name: start_vllm("vllm-" + name, tiny_model_dir, name) for name in MODELS}
    c.vllm_base = {name: "http://127.0.0.1:%d/v1" % p.port for name, p in c.vllm.items()}
    c.cpu = start_llamacpp("llamacpp-cpu", tiny_gguf, "tiny-cpu")
    c.cloud = start_llamacpp("llamacpp-cloud-stand-in", tiny_gguf, "gpt-4o-mini", api_key=CLOUD_KEY)
    c.cpu_base = "http://127.0.0.1:%d/v1" % c.cpu.port
    c.cloud_base = "http://127.0.0.1:%d/v1" % c.cloud.port
    tiers = [
        {"name": "gpu", "kind": "gpu", "fallback": "cpu", "timeout_s": GPU_TIMEOUT_S},
        {"name": "cpu", "kind": "cpu", "provider": "openai_compatible", "api_base": c.cpu_base,
         "model": "tiny-cpu", "fallback": "cloud", "timeout_s": 20},
        {"name": "cloud", "kind": "cloud", "provider": "openai", "api_base": c.cloud_base,
         "model": "gpt-4o-mini", "api_key": CLOUD_KEY, "timeout_s": 20},
    ]
    models = [{"name": n, "source": str(tiny_model_dir), "served_name": n, "dtype": "float32",
               "context_length": 512} for n in MODELS]
    workdir = tmp_path_factory.mktemp("gateway")
    c.config = workdir / "litellm-config.yaml"
    c.render_output = helpers.render_litellm_config(
        c.config, models, tiers,
        {"litellm_master_key": MASTER_KEY, "litellm_model_api_bases": c.vllm_base}, workdir)
    c.lite = None
    yield c


@pytest.fixture(scope="module")
def gateway(chain, start_litellm):
    """Every backend up and LiteLLM started from the rendered config."""
    wait_http = chain.helpers.wait_http
    for name, proc in chain.vllm.items():
        wait_http(chain.vllm_base[name][:-3] + "/health", 900, proc)
    wait_http(chain.cpu_base + "/models", 120, chain.cpu)
    wait_http(chain.cloud_base + "/models", 120, chain.cloud,
              headers={"Authorization": "Bearer " + CLOUD_KEY})
    if chain.lite is None:
        chain.lite = start_litellm("litellm", chain.config,
                                   chain.helpers.litellm_env(MASTER_KEY, {"LITELLM_TIER_CLOUD_API_KEY": CLOUD_KEY}))
        chain.lite_base = "http://127.0.0.1:%d" % chain.lite.port
        wait_http(chain.lite_base + "/health/liveliness", 300, chain.lite)
    return chain


Answer = collections.namedtuple("Answer", "took content finish_reason headers")


def ask(chain, model, key=MASTER_KEY, timeout=60):
    """One chat completion through the gateway.

    A random-weight model may end at once (empty content), so a real answer is
    one with a finish_reason, not necessarily with text.
    """
    client = OpenAI(base_url=chain.lite_base + "/v1", api_key=key, timeout=timeout, max_retries=0)
    start = time.monotonic()
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": "Say hello."}], max_tokens=8)
    took = time.monotonic() - start
    choice = raw.parse().choices[0]
    assert choice.finish_reason in ("stop", "length"), choice
    return Answer(took, choice.message.content, choice.finish_reason, raw.headers)


def test_rendered_config_is_the_roles_and_chains_gpu_cpu_cloud(chain):
    config = yaml.safe_load(chain.config.read_text())
    assert config["router_settings"]["fallbacks"] == [
        {"tiny-a": ["cpu", "cloud"]}, {"tiny-b": ["cpu", "cloud"]}, {"cpu": ["cloud"]},
        {"cpu-via-fallback": ["cpu"]}]
    assert config["router_settings"]["num_retries"] == 0
    # one entry per group, the order-1 deployment where a group has two
    groups = {m["model_name"]: m["litellm_params"] for m in reversed(config["model_list"])}
    # the GPU model's group holds its next tier too, as the order-2 deployment
    tiny_a = [m for m in config["model_list"] if m["model_name"] == "tiny-a"]
    assert [(m["litellm_params"].get("order"), m["litellm_params"]["model"]) for m in tiny_a] == [
        (1, "hosted_vllm/tiny-a"), (2, "openai/tiny-cpu")]
    assert config["general_settings"]["background_health_check_model_groups"] == ["tiny-a", "tiny-b"]
    assert tiny_a[1]["model_info"]["disable_background_health_check"] is True
    assert groups["tiny-a"]["model"] == "hosted_vllm/tiny-a"
    assert groups["tiny-a"]["timeout"] == GPU_TIMEOUT_S
    assert groups["cloud"]["api_key"] == "os.environ/LITELLM_TIER_CLOUD_API_KEY"
    assert config["general_settings"]["master_key"] == "os.environ/LITELLM_MASTER_KEY"
    # No side door: mock_testing_* stays refused (the gate uses the probe group).
    assert "dangerously_allow_mock_testing_request_params" not in config["general_settings"]


def test_f_gate_passes_against_a_starting_vllm(chain):
    """Case f (1): the module, run through ansible, waits out a vLLM that is still starting."""
    proc = chain.vllm["tiny-a"]
    result, out = chain.helpers.run_module("homelab.gpu_stack.openai_endpoint_gate", {
        "base_url": chain.vllm_base["tiny-a"], "names": ["tiny-a"], "deadline": 900,
        "poll_interval": 0.5, "request_timeout": 60})
    assert not result.get("failed"), out[-3000:] + proc.log_tail()
    assert result["passed"] is True
    assert result["steps"]["health"]["attempts"] > 1, "the server was already up: nothing was gated"
    assert result["models"] == ["tiny-a"]
    assert result["chat"]["tiny-a"]["content"]


def test_a_each_model_reaches_its_gpu_tier(gateway):
    for name in MODELS:
        headers = ask(gateway, name).headers
        assert headers.get("x-litellm-model-api-base") == gateway.vllm_base[name], dict(headers)
        assert int(headers.get("x-litellm-attempted-fallbacks") or 0) == 0


def test_gate_proves_the_fallback_through_the_probe_group(gateway):
    """The role's probe group: its own deployment is refused, the cpu tier answers
    through LiteLLM's fallback; the gate passes only on a fallback's answer."""
    result, out = gateway.helpers.run_module("homelab.gpu_stack.openai_endpoint_gate", {
        "base_url": gateway.lite_base + "/v1", "api_key": MASTER_KEY, "names": ["cpu-via-fallback"],
        "health_path": "/health/liveliness", "expect_fallback": True, "deadline": 120})
    assert not result.get("failed"), out[-3000:]
    assert result["chat"]["cpu-via-fallback"]["headers"]["x-litellm-model-api-base"] == gateway.cpu_base
    assert MASTER_KEY not in out
    # and a model served by its GPU tier does not pass as a fallback (the gate
    # retries to its deadline: long enough for one CPU vLLM answer on a busy machine)
    result, out = gateway.helpers.run_module("homelab.gpu_stack.openai_endpoint_gate", {
        "base_url": gateway.lite_base + "/v1", "api_key": MASTER_KEY, "names": [MODELS[0]],
        "health_path": "/health/liveliness", "expect_fallback": True, "deadline": 20})
    assert result.get("failed") and "was not served by a fallback" in result["msg"], out[-2000:]


def test_no_key_holder_can_inject_failures(gateway):
    """mock_testing_* (LiteLLM's fallback test switch) is refused by the running gateway."""
    body = {"model": MODELS[0], "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4,
            "mock_testing_fallbacks": True}
    answer = httpx.post(gateway.lite_base + "/v1/chat/completions", json=body, timeout=30,
                        headers={"Authorization": "Bearer " + MASTER_KEY})
    assert answer.status_code == 400, answer.text[:300]
    assert "Mock testing request params are disabled" in answer.text


def test_e_missing_and_wrong_keys_are_refused_and_keys_stay_out_of_logs(gateway):
    body = {"model": "tiny-a", "messages": [{"role": "user", "content": "hi"}]}
    missing = httpx.post(gateway.lite_base + "/v1/chat/completions", json=body, timeout=30)
    assert missing.status_code == 401, missing.text[:200]
    # Without a database LiteLLM cannot look a non-master key up as a virtual
    # key and answers 400 "No connected db." (with one: 401); either way, refused.
    wrong_key = "sk-wrong-" + "x" * 24
    wrong = httpx.post(gateway.lite_base + "/v1/chat/completions", json=body, timeout=30,
                       headers={"Authorization": "Bearer " + wrong_key})
    assert wrong.status_code in (400, 401, 403), wrong.text[:200]
    assert "choices" not in wrong.json()
    # The gate stops at once on a refused key and says so, without the key.
    result, out = gateway.helpers.run_module("homelab.gpu_stack.openai_endpoint_gate", {
        "base_url": gateway.lite_base + "/v1", "api_key": wrong_key, "names": ["tiny-a"],
        "health_path": "/health/liveliness", "deadline": 60})
    assert result.get("failed"), out[-2000:]
    assert "refused (HTTP status that waiting cannot fix) after 1 attempt" in result["msg"]
    assert wrong_key not in out
    for proc in [gateway.lite, gateway.cpu, gateway.cloud] + list(gateway.vllm.values()):
        text = Path(proc.log).read_text(errors="replace")
        assert MASTER_KEY not in text, proc.name
        assert CLOUD_KEY not in text, proc.name
    assert MASTER_KEY not in gateway.config.read_text()
    assert CLOUD_KEY not in gateway.config.read_text()
    assert MASTER_KEY not in gateway.render_output and CLOUD_KEY not in gateway.render_output


def test_f_gate_fails_usefully_when_health_answers_but_the_name_is_missing(gateway):
    """Case f (2): /health is 200 but the model is not served: the message says so."""
    result, out = gateway.helpers.run_module("homelab.gpu_stack.openai_endpoint_gate", {
        "base_url": gateway.vllm_base["tiny-a"], "names": ["no-such-model"], "deadline": 3,
        "poll_interval": 0.5})
    assert result.get("failed"), out[-2000:]
    assert "step 'models'" in result["msg"]
    assert "does not list no-such-model (it lists: tiny-a)" in result["msg"]
    assert result["steps"]["health"]["passed"] is True


def test_c_hung_gpu_tier_is_skipped_within_its_timeout(gateway):
    """Case c: vLLM frozen (SIGSTOP): the CPU tier answers within the timeout + 0.5 s."""
    proc = gateway.vllm["tiny-b"]
    gateway.procs.pause(proc)
    try:
        for attempt in range(3):
            answer = ask(gateway, "tiny-b")
            assert answer.headers.get("x-litellm-model-api-base") == gateway.cpu_base, dict(answer.headers)
            assert answer.took <= GPU_TIMEOUT_S + 0.5, "request %d took %.2fs" % (attempt, answer.took)
    finally:
        gateway.procs.resume(proc)


def test_c_a_stream_to_a_hung_gpu_tier_falls_back_before_its_first_chunk(gateway):
    """A stream that has not started when the GPU tier hangs is answered by the
    CPU tier within the tier's timeout (+0.5 s), chunks and all."""
    proc = gateway.vllm["tiny-b"]
    gateway.procs.pause(proc)
    try:
        client = OpenAI(base_url=gateway.lite_base + "/v1", api_key=MASTER_KEY, timeout=60, max_retries=0)
        start = time.monotonic()
        raw = client.chat.completions.with_raw_response.create(
            model="tiny-b", messages=[{"role": "user", "content": "Say hello."}], max_tokens=8, stream=True)
        chunks = list(raw.parse())
        took = time.monotonic() - start
        assert raw.headers.get("x-litellm-model-api-base") == gateway.cpu_base, dict(raw.headers)
        assert chunks and chunks[-1].choices[0].finish_reason in ("stop", "length"), chunks[-1:]
        assert took <= GPU_TIMEOUT_S + 0.5, "the stream took %.2fs" % took
    finally:
        gateway.procs.resume(proc)


def test_b_killed_gpu_tier_every_request_served_by_cpu(gateway):
    """Case b: vLLM killed (SIGKILL): no request fails, each is served by the CPU tier."""
    gateway.procs.kill(gateway.vllm["tiny-a"])
    served_by = [ask(gateway, "tiny-a").headers.get("x-litellm-model-api-base") for attempt in range(20)]
    assert served_by == [gateway.cpu_base] * 20
    # The other model still reaches its own GPU-tier vLLM, once LiteLLM's health
    # check has seen it answer again after the hangs of the c cases (every 5 s).
    deadline = time.monotonic() + 20
    while True:
        headers = ask(gateway, "tiny-b").headers
        if headers.get("x-litellm-model-api-base") == gateway.vllm_base["tiny-b"] or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert headers.get("x-litellm-model-api-base") == gateway.vllm_base["tiny-b"]


def test_d_gpu_and_cpu_down_the_cloud_tier_answers(gateway):
    """Case d: GPU vLLM and the CPU tier both dead: the cloud stand-in answers, with its key."""
    assert not gateway.vllm["tiny-a"].alive()
    gateway.procs.stop(gateway.cpu)
    for model in ("tiny-a", "cpu"):
        headers = ask(gateway, model).headers
        assert headers.get("x-litellm-model-api-base") == gateway.cloud_base, dict(headers)
    # And the stand-in really demands the key LiteLLM sent from the Secret's env variable.
    refused = httpx.post(gateway.cloud_base + "/chat/completions", timeout=30,
                         json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
    assert refused.status_code == 401
