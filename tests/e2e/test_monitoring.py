"""Every dashboard panel, proven against a real Prometheus scraping the real chain (issue 16).

    Prometheus  Debian's prometheus package (scripts/bootstrap.sh installs it),
                on loopback with its own data folder, scraping every second
    vLLM        the CPU vLLM (GPU tier stand-in, the same server and /metrics)
    CPU tier    llama.cpp's OpenAI-compatible server (it exports no metrics)
    gateway     LiteLLM 1.106.2 from roles/litellm's template, with the
                prometheus callback the role loads when monitoring is on
    GPU         nvidia_gpu_exporter_double over nvidia-smi-double (an RTX
                3060's readings): the exporter itself cannot be had here
    rules       roles/monitoring's recording rules (the plan, the GPU mode),
                rendered by the role's own tasks from the same model spec

Prometheus scrapes what the role's scrape jobs would find in the cluster
(same job names, metrics paths and model / node labels), as static targets:
kubernetes_sd cannot run without a cluster (and Debian builds it out).
Traffic runs through the gateway first; then the cpu tier is stopped so a
fallback fails. Then every target of every panel in roles/monitoring's
dashboards is evaluated through /api/v1/query, its variables set to All:
each must return a series with a value its unit allows. A metric renamed in
a vLLM or LiteLLM upgrade fails here instead of blanking a panel.
"""

import json
import math
import shutil
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml
from ansible_collections.homelab.gpu_stack.plugins.filter.status_page import status_page_html, vllm_cache_config
from openai import OpenAI

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "roles" / "monitoring" / "files" / "dashboards"
SMI = ROOT / "tests" / "unit" / "fixtures" / "nvidia_smi"
MASTER_KEY = "sk-e2e-monitoring-" + "4c1d9e7a2b6f3085"
NODE = "e2e-gpu"
MODEL = "tiny-mon"
# The value each unit allows; a NaN or an infinite value never passes.
PLAUSIBLE = {
    "percentunit": lambda v: 0 <= v <= 1,
    "s": lambda v: 0 < v < 120,
    "bytes": lambda v: 0 < v < 2 ** 50,
    "celsius": lambda v: 0 < v < 110,
    "watt": lambda v: 0 < v < 1000,
    "tps": lambda v: v > 0,
    "reqps": lambda v: v >= 0,
    "short": lambda v: v >= 0,
}
# Targets whose 0 is the true reading here (the stack is idle when they are
# asked, or nothing went wrong); every other target must read above 0, since
# the traffic above made each of them happen.
ZERO_IS_RIGHT = {
    ("vllm", "Requests running / waiting (queue)"): "idle once the traffic stopped",
    ("vllm", "KV-cache usage"): "idle: every request's blocks are freed",
    ("vllm", "Preemptions/s"): "eight sequences fit the KV cache",
    ("gateway", "Backend state (0 healthy, 1 partial outage, 2 outage)"): "0 is healthy",
}
RENDER = ROOT / "tests" / "render" / "fixtures" / "monitoring-render.yml"


class Stack:
    pass


def prom_query(base, expr):
    url = base + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=30) as answer:  # loopback only
            body = json.load(answer)
    except urllib.error.HTTPError as exc:  # a query Prometheus cannot parse says why in its body
        body = json.load(exc)
    assert body["status"] == "success", body
    return body["data"]["result"]


def panels():
    """(dashboard, panel title, unit, expr) for every target of every panel."""
    for path in sorted(DASHBOARDS.glob("*.json")):
        dashboard = json.loads(path.read_text())
        variables = [v["name"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
        for panel in dashboard["panels"]:
            for target in panel["targets"]:
                expr = target["expr"]
                for name in variables:
                    expr = expr.replace("$" + name, ".*")
                yield path.stem, panel["title"], panel["fieldConfig"]["defaults"]["unit"], expr


@pytest.fixture(scope="module")
def stack(tmp_path_factory, procs, tiny_model_dir, tiny_gguf, start_vllm, start_llamacpp, start_litellm,
          helpers):
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        pytest.fail("no prometheus binary: scripts/bootstrap.sh installs Debian's prometheus package")
    s = Stack()
    s.vllm = start_vllm("vllm-" + MODEL, tiny_model_dir, MODEL)
    s.vllm_base = "http://127.0.0.1:%d" % s.vllm.port
    s.cpu = start_llamacpp("llamacpp-cpu-mon", tiny_gguf, "tiny-cpu")
    s.cpu_base = "http://127.0.0.1:%d/v1" % s.cpu.port
    tiers = [{"name": "gpu", "kind": "gpu", "fallback": "cpu", "timeout_s": 20},
             {"name": "cpu", "kind": "cpu", "provider": "openai_compatible", "api_base": s.cpu_base,
              "model": "tiny-cpu", "timeout_s": 20}]
    models = [{"name": MODEL, "source": str(tiny_model_dir), "served_name": MODEL, "dtype": "float32",
               "context_length": 512, "modes": ["ml"], "revision": "main"}]
    work = tmp_path_factory.mktemp("monitoring")
    # The role's rules, from the same spec; monitoring on loads LiteLLM's callback.
    helpers.run_render_playbook(RENDER.read_text(), models, tiers, {
        "monitoring_out": str(work / "monitoring.json"), "monitoring_prometheus": "external",
        "gpu_stack_gpu_modes": ["ml", "gaming"]}, work, gpu_vram_mib=12288)  # the exporter double's 3060
    s.rendered = json.loads((work / "monitoring.json").read_text())
    s.config = work / "litellm-config.yaml"
    helpers.render_litellm_config(s.config, models, tiers, {
        "litellm_master_key": MASTER_KEY, "litellm_model_api_bases": {MODEL: s.vllm_base + "/v1"},
        "gpu_stack_monitoring": True, "gpu_stack_gpu_modes": ["ml", "gaming"]}, work)
    exporter_port = helpers.free_port()
    s.exporter = procs.start("gpu-exporter-double", [
        sys.executable, "-m", "nvidia_gpu_exporter_double", "--web.listen-address=127.0.0.1:%d" % exporter_port,
        "--nvidia-smi-command=%s" % (ROOT / "tests" / "doubles" / "nvidia-smi-double"), "--collect.compute-apps"],
        env={"PYTHONPATH": str(ROOT / "tests" / "doubles"),
             "NVIDIA_SMI_DOUBLE_TELEMETRY": str(SMI / "rtx3060_telemetry.csv"),
             "NVIDIA_SMI_DOUBLE_APPS": str(SMI / "rtx3060_apps.csv")}, port=exporter_port)
    helpers.wait_http(s.vllm_base + "/health", 900, s.vllm)
    helpers.wait_http(s.cpu_base + "/models", 120, s.cpu)
    s.lite = start_litellm("litellm-mon", s.config, helpers.litellm_env(MASTER_KEY))
    s.lite_base = "http://127.0.0.1:%d" % s.lite.port
    helpers.wait_http(s.lite_base + "/health/liveliness", 300, s.lite)
    helpers.wait_http("http://127.0.0.1:%d/metrics" % exporter_port, 30, s.exporter)

    jobs = {job["job_name"]: job for job in s.rendered["scrape_configs"]}
    # The gateway's metrics need its key, from a file as in the cluster (a mounted Secret).
    key_file = work / "litellm-key"
    key_file.write_text(MASTER_KEY)
    key_file.chmod(0o600)
    targets = {"gpu-stack-vllm": (s.vllm.port, {"model": MODEL, "node": NODE}),
               "gpu-stack-litellm": (s.lite.port, {}),
               "gpu-stack-gpu-exporter": (exporter_port, {"node": NODE})}
    assert set(jobs) == set(targets), jobs
    (work / "rules.yml").write_text(yaml.safe_dump(s.rendered["rules"]))
    (work / "prometheus.yml").write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(work / "rules.yml")],
        "scrape_configs": [dict({"job_name": job, "metrics_path": jobs[job]["metrics_path"],
                                 "static_configs": [{"targets": ["127.0.0.1:%d" % port], "labels": labels}]},
                                **({"authorization": dict(jobs[job]["authorization"], credentials_file=str(key_file))}
                                   if "authorization" in jobs[job] else {}))
                           for job, (port, labels) in targets.items()]}))
    prom_port = helpers.free_port()
    s.prom_base = "http://127.0.0.1:%d" % prom_port
    s.prom = procs.start("prometheus", [
        prometheus, "--config.file=%s" % (work / "prometheus.yml"), "--storage.tsdb.path=%s" % (work / "tsdb"),
        "--web.listen-address=127.0.0.1:%d" % prom_port, "--log.level=warn"], port=prom_port)
    helpers.wait_http(s.prom_base + "/-/ready", 60, s.prom)

    client = OpenAI(base_url=s.lite_base + "/v1", api_key=MASTER_KEY, timeout=60, max_retries=0)
    direct = OpenAI(base_url=s.vllm_base + "/v1", api_key="none", timeout=60, max_retries=0)
    # The same long prefix each time, so vLLM's prefix cache has something to hit.
    prefix = "You are a terse assistant for a homelab. " * 8
    end = time.monotonic() + 25
    while time.monotonic() < end:
        client.chat.completions.create(model=MODEL, max_tokens=8, messages=[
            {"role": "system", "content": prefix}, {"role": "user", "content": "Say hello."}])
        # vLLM's own knob, so a random-weight model still makes several tokens (inter-token latency).
        list(direct.chat.completions.create(model=MODEL, max_tokens=12, stream=True,
                                            extra_body={"ignore_eos": True},
                                            messages=[{"role": "user", "content": prefix + "Count."}]))
        client.chat.completions.create(model="cpu-via-fallback", max_tokens=4,
                                       messages=[{"role": "user", "content": "hi"}])
    # Fallbacks that fail: the cpu tier is gone. For some seconds, so that the
    # failure counters are seen before and after (increase() of a series born
    # at its first failure is 0).
    procs.stop(s.cpu)
    end = time.monotonic() + 6
    while time.monotonic() < end:
        with pytest.raises(Exception):
            client.chat.completions.create(model="cpu-via-fallback", max_tokens=4,
                                           messages=[{"role": "user", "content": "hi"}])
        time.sleep(0.5)
    time.sleep(4)  # a few more scrapes and rule evaluations after the last request
    yield s
    # Stopped here, not at the session's end: the other e2e modules start their own vLLMs.
    for proc in (s.prom, s.lite, s.exporter, s.cpu, s.vllm):
        procs.stop(proc)


def test_prometheus_scrapes_every_job(stack):
    up = {r["metric"]["job"]: r["value"][1] for r in prom_query(stack.prom_base, "up")}
    with urllib.request.urlopen(stack.prom_base + "/api/v1/targets", timeout=30) as answer:
        errors = {t["labels"]["job"]: t["lastError"] for t in json.load(answer)["data"]["activeTargets"]}
    assert up == {"gpu-stack-vllm": "1", "gpu-stack-litellm": "1", "gpu-stack-gpu-exporter": "1"}, errors


def test_every_panel_returns_a_plausible_series(stack):
    report, bad = [], []
    for dashboard, title, unit, expr in panels():
        result = prom_query(stack.prom_base, expr)
        values = [float(r["value"][1]) for r in result]
        ok = bool(values) and all(math.isfinite(v) and PLAUSIBLE[unit](v) for v in values)
        if (dashboard, title) not in ZERO_IS_RIGHT:
            ok = ok and max(values) > 0
        report.append("%-8s %-50s series=%d %s" % (dashboard, title[:50], len(values), "; ".join(
            "%s=%.4g" % (",".join(v for k, v in sorted(r["metric"].items())), float(r["value"][1]))
            for r in result[:4])))
        if not ok:
            bad.append("%s / %s: %s -> %s" % (dashboard, title, expr, result))
    print("\n" + "\n".join(report))
    assert not bad, "panels without a plausible series:\n" + "\n".join(bad)


def test_the_live_gpu_mode_is_the_one_whose_models_are_up(stack):
    modes = {r["metric"]["mode"]: r["value"][1] for r in prom_query(stack.prom_base, "gpu_stack:gpu_mode_active")}
    assert modes == {"ml": "1", "gaming": "0"}, modes


def test_planned_bytes_are_the_planners(stack):
    """The rule's figure is the plan the vllm role puts in the Deployment's annotation."""
    rule = [r for g in stack.rendered["rules"]["groups"] for r in g["rules"]
            if r["record"] == "gpu_stack:model_planned_vram_bytes" and r["labels"]["part"] == "kv_cache"]
    assert [r["labels"]["model"] for r in rule] == [MODEL]
    got = prom_query(stack.prom_base, 'gpu_stack:model_planned_vram_bytes{part="kv_cache"}')
    assert [float(r["value"][1]) for r in got] == [float(rule[0]["expr"][len("vector("):-1])]


def test_status_page_sets_what_vllm_reports_against_the_plan(stack):
    """The summary's page filters on this vLLM's real /metrics: its KV cache beside the plan's."""
    with urllib.request.urlopen(stack.vllm_base + "/metrics", timeout=30) as answer:
        reported = vllm_cache_config(answer.read().decode())
    assert reported["num_gpu_blocks"] > 0 and reported["block_size"] > 0, reported
    planned = next(int(r["expr"][len("vector("):-1]) for g in stack.rendered["rules"]["groups"] for r in g["rules"]
                   if r["record"] == "gpu_stack:model_planned_kv_cache_tokens")
    page = status_page_html({"mode": "ml", "models": [{
        "name": MODEL, "served_name": MODEL, "node": NODE, "state": "serving", "answering": "gpu (vLLM)",
        "route": ["gpu", "cpu"], "plan": {"kv_cache_tokens": planned}, "reported": reported}]})
    # The CPU build sizes its cache from VLLM_CPU_KVCACHE_SPACE, not the card: the page shows the gap.
    assert "%d of %d planned" % (reported["num_gpu_blocks"] * reported["block_size"], planned) in page
