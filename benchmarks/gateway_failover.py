# Copyright: homelab.gpu_stack contributors
# Apache License 2.0 (see LICENSE)
"""Gateway failover figures (issue 6), on real servers on this machine.

P1  Added latency per request with the GPU tier dead, through LiteLLM:
      ours      the config roles/litellm renders (num_retries 0, per-tier timeouts,
                router_settings.fallbacks)
      defaults  the same model list and fallbacks with LiteLLM's defaults
                (fallbacks under litellm_settings, default retries, no timeouts)
    "Added" = median latency of a request for the dead GPU model (served by the
    CPU tier after failover) minus the median latency of a request sent to the
    CPU tier's model group directly (same backend, no failover).
    Then 200 sequential requests (ours) counting failures, and 32 concurrent
    clients while the primary vLLM is killed and later restarted: failures, and
    whether traffic returns to the GPU tier once vLLM is back.
P5  A hung GPU tier (vLLM SIGSTOPped, then SIGCONTinued) under 32 concurrent
    clients, through the config roles/litellm renders: failed requests, the
    median added latency during the hang after its first 5 s (against the
    median before the hang), and how long after the resume the GPU tier
    answers again. "previous" is the same config without what routes around a
    hung tier (the cpu tier as a second, order-2 deployment of each GPU model's
    group, and LiteLLM's health-check routing), for comparison.
P2  Seconds from vLLM's /health first answering 200 to the gate
    (plugins/module_utils/openai_gate.py, the module's own code) passing.

Run: .venv/bin/python benchmarks/gateway_failover.py   (~6-10 min on 2 cores;
builds the vLLM / LiteLLM / llama.cpp venvs first if they are missing)
"""

from __future__ import absolute_import, division, print_function

import argparse
import importlib.util
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / ".ansible" / "collections"))
sys.path.insert(0, str(ROOT / "tests" / "support"))
import chain  # noqa: E402  (start/stop helpers shared with the e2e tests and the demo)

# Only render_litellm_config still comes from the e2e conftest.
_spec = importlib.util.spec_from_file_location("gpu_stack_e2e", ROOT / "tests" / "e2e" / "conftest.py")
e2e = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(e2e)

from ansible_collections.homelab.gpu_stack.plugins.module_utils.openai_gate import Gate  # noqa: E402
from openai import OpenAI  # noqa: E402

MASTER_KEY = "sk-bench-master-key-" + "5e8d1c0a"
GPU_MODEL = "tiny-gpu"


def defaults_config(ours):
    """Our rendered config with LiteLLM's defaults instead of our failover settings
    (and without the hang routing: one deployment per GPU group)."""
    config = yaml.safe_load(without_hang_routing(ours))
    for group in config["model_list"]:
        for key in ("timeout", "stream_timeout", "max_retries"):
            group["litellm_params"].pop(key, None)
    fallbacks = config["router_settings"]["fallbacks"]
    config["router_settings"] = {}
    config["litellm_settings"] = {"fallbacks": fallbacks, "drop_params": True}
    return yaml.safe_dump(config, sort_keys=False)


def ask(base, model, timeout=120):
    client = OpenAI(base_url=base + "/v1", api_key=MASTER_KEY, timeout=timeout, max_retries=0)
    start = time.monotonic()
    try:
        raw = client.chat.completions.with_raw_response.create(
            model=model, messages=[{"role": "user", "content": "Say hello."}], max_tokens=4)
        raw.parse()
        return time.monotonic() - start, raw.headers.get("x-litellm-model-api-base"), None
    except Exception as exc:  # counted as a failure, the run goes on
        return time.monotonic() - start, None, "%s: %s" % (type(exc).__name__, str(exc)[:120])


def series(base, model, count):
    results = [ask(base, model) for attempt in range(count)]
    ok = [r[0] for r in results if r[2] is None]
    return (statistics.median(ok) if ok else float("nan")), len(results) - len(ok), results


def watch_health(url, state, stop):
    """Record when url first answers 200 (polled every 20 ms)."""
    import urllib.request
    while not stop.is_set():
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    state["first_200"] = time.monotonic()
                    return
        except Exception:
            pass
        time.sleep(0.02)


def start_vllm_with_p2(procs, start_vllm, model_dir, port, base):
    """Start vLLM; return (proc, P2 seconds, gate result)."""
    proc = start_vllm("vllm-" + GPU_MODEL, model_dir, GPU_MODEL, port=port)
    state, stop = {}, threading.Event()
    watcher = threading.Thread(target=watch_health, args=(base[:-3] + "/health", state, stop))
    watcher.start()
    result = Gate(base, [GPU_MODEL], deadline=900, request_timeout=60).run()
    passed = time.monotonic()
    stop.set()
    watcher.join()
    return proc, passed - state.get("first_200", passed), result


def concurrent_phase(base, vllm_restart, clients=32, kill_after=5.0, tail_s=15.0):
    """clients threads loop requests while the primary is killed and restarted."""
    records, stop = [], threading.Event()
    lock = threading.Lock()

    def client():
        while not stop.is_set():
            took, api_base, error = ask(base, GPU_MODEL)
            with lock:
                records.append((time.monotonic(), took, api_base, error))

    threads = [threading.Thread(target=client) for index in range(clients)]
    t0 = time.monotonic()
    for thread in threads:
        thread.start()
    time.sleep(kill_after)
    killed_at, back_at = vllm_restart()
    time.sleep(tail_s)
    stop.set()
    for thread in threads:
        thread.join()
    return t0, killed_at, back_at, records


def without_hang_routing(ours):
    """Our config minus what routes around a hung tier: one deployment per GPU
    group (fallbacks only) and no health-check routing."""
    config = yaml.safe_load(ours)
    config["model_list"] = [m for m in config["model_list"] if m["litellm_params"].get("order", 1) == 1]
    for group in config["model_list"]:
        group["litellm_params"].pop("order", None)
    for key in ("enable_health_check_routing",):
        config["router_settings"].pop(key, None)
    for key in ("background_health_checks", "health_check_interval", "background_health_check_model_groups"):
        config["general_settings"].pop(key, None)
    return yaml.safe_dump(config, sort_keys=False)


def hung_phase(procs, vllm, base, gpu_base, clients=32, hang_after=8.0, hang_for=25.0, tail_s=20.0):
    """clients threads loop requests; vLLM is stopped (SIGSTOP) hang_after s in,
    continued hang_for s later. Returns the figures of P5."""
    records, stop = [], threading.Event()
    lock = threading.Lock()

    def client():
        while not stop.is_set():
            started = time.monotonic()
            took, api_base, error = ask(base, GPU_MODEL, timeout=60)
            with lock:
                records.append((started, took, api_base, error))

    threads = [threading.Thread(target=client) for index in range(clients)]
    for thread in threads:
        thread.start()
    time.sleep(hang_after)
    procs.pause(vllm)
    hung_at = time.monotonic()
    time.sleep(hang_for)
    procs.resume(vllm)
    resumed_at = time.monotonic()
    time.sleep(tail_s)
    stop.set()
    for thread in threads:
        thread.join()
    before = [r[1] for r in records if r[0] + r[1] < hung_at and r[3] is None]
    during = [r[1] for r in records if r[0] > hung_at + 5 and r[0] + r[1] < resumed_at and r[3] is None]
    back = sorted(r[0] + r[1] for r in records if r[0] > resumed_at and r[2] == gpu_base)
    late = [r for r in records if r[0] > resumed_at + 10 and r[3] is None]
    return {
        "requests": len(records), "failed": sum(1 for r in records if r[3]),
        "first_failure": next((r[3] for r in records if r[3]), None),
        "median_before": statistics.median(before) if before else float("nan"),
        "median_during": statistics.median(during) if during else float("nan"),
        "during_n": len(during),
        "gpu_back_after_s": (back[0] - resumed_at) if back else float("nan"),
        "late_on_gpu": (sum(1 for r in late if r[2] == gpu_base), len(late)),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--sequential", type=int, default=200)
    parser.add_argument("--defaults-requests", type=int, default=10)
    parser.add_argument("--clients", type=int, default=32)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="gw-bench-"))
    procs = chain.ProcessManager(tmp / "logs")
    try:
        vllm_venv = chain.venv("venv-vllm.sh")
        litellm_venv = chain.venv("venv-litellm.sh")
        llamacpp_venv = chain.venv("venv-llamacpp.sh")
        model_dir = chain.make_tiny_model(vllm_venv, tmp / "tiny", "--dtype", "float32")
        gguf = chain.make_gguf(vllm_venv, llamacpp_venv, model_dir, tmp / "tiny.gguf")

        def start_vllm(name, model, served, port):
            return procs.start(name, chain.vllm_cmd(vllm_venv, model, served, port),
                               env=chain.vllm_env(tmp / ("cache-" + name)), port=port)

        cpu_port, vllm_port = chain.free_port(), chain.free_port()
        cpu = procs.start("llamacpp-cpu", chain.llamacpp_cmd(llamacpp_venv, gguf, "tiny-cpu", cpu_port), port=cpu_port)
        cpu_base = "http://127.0.0.1:%d/v1" % cpu_port
        vllm_base = "http://127.0.0.1:%d/v1" % vllm_port

        # P2 on the first start.
        vllm, p2, gate = start_vllm_with_p2(procs, start_vllm, model_dir, vllm_port, vllm_base)
        chain.wait_http(cpu_base + "/models", 120, cpu)

        tiers = [{"name": "gpu", "kind": "gpu", "fallback": "cpu", "timeout_s": 3},
                 {"name": "cpu", "kind": "cpu", "provider": "openai_compatible", "api_base": cpu_base,
                  "model": "tiny-cpu", "timeout_s": 20}]
        models = [{"name": GPU_MODEL, "source": str(model_dir), "served_name": GPU_MODEL}]
        ours_path = tmp / "ours.yaml"
        e2e.render_litellm_config(ours_path, models, tiers,
                                  {"litellm_master_key": MASTER_KEY,
                                   "litellm_model_api_bases": {GPU_MODEL: vllm_base}}, tmp)
        defaults_path = tmp / "defaults.yaml"
        defaults_path.write_text(defaults_config(ours_path.read_text()))

        gateways = {}
        for name, path in (("ours", ours_path), ("defaults", defaults_path)):
            port = chain.free_port()
            proc = procs.start("litellm-" + name, chain.litellm_cmd(litellm_venv, path, port),
                               env=chain.litellm_env(MASTER_KEY), port=port)
            gateways[name] = ("http://127.0.0.1:%d" % port, proc)
        for base, proc in gateways.values():
            chain.wait_http(base + "/health/liveliness", 300, proc)
            ask(base, GPU_MODEL)  # warm both paths
            ask(base, "cpu")

        # 32 clients while the primary (up, from the P2 start) is killed 5 s
        # in, restarted 5 s later and watched until /health is 200 again.
        def kill_then_restart():
            procs.kill(vllm)
            killed_at = time.monotonic()
            time.sleep(5)
            again = start_vllm("vllm-" + GPU_MODEL + "-again", model_dir, GPU_MODEL, vllm_port)
            holder["proc"] = again
            return killed_at, chain.wait_http(vllm_base[:-3] + "/health", 900, again)

        holder = {}
        t0, killed_at, back_at, records = concurrent_phase(gateways["ours"][0], kill_then_restart,
                                                           clients=args.clients)
        failed = [r for r in records if r[3]]
        # back on the GPU tier: the first answer from it, and every answer from
        # 10 s on (the health check's interval and its answer)
        first_back = min((r[0] for r in records if r[0] > back_at and r[2] == vllm_base), default=float("nan"))
        after = [r for r in records if r[0] - r[1] > back_at + 10]
        on_gpu_after = sum(1 for r in after if r[2] == vllm_base)
        during = [r for r in records if killed_at < r[0] - r[1] and r[0] < back_at]
        print("P1 %d clients: %d requests, %d failures; primary killed at %.1fs, healthy again at %.1fs "
              "(first GPU answer %.1fs later); while down %d requests served by %s; from 10 s after it was "
              "back %d/%d served by the GPU tier -> traffic %s to the GPU tier"
              % (args.clients, len(records), len(failed), killed_at - t0, back_at - t0, first_back - back_at,
                 len(during),
                 sorted(set({cpu_base: "cpu tier", vllm_base: "gpu tier (answered before /health was polled 200)"}
                            .get(r[2], r[2]) for r in during if r[2])), on_gpu_after, len(after),
                 "returns" if after and on_gpu_after == len(after) else
                 ("partly returns" if on_gpu_after else "does NOT return")), flush=True)
        if failed:
            print("  first failure: %s" % failed[0][3])

        # P5: the GPU tier hangs (SIGSTOP) under the same clients, with our
        # config and with the previous one (no hang routing).
        vllm = holder["proc"]
        previous_path = tmp / "previous.yaml"
        previous_path.write_text(without_hang_routing(ours_path.read_text()))
        port = chain.free_port()
        previous = procs.start("litellm-previous", chain.litellm_cmd(litellm_venv, previous_path, port),
                               env=chain.litellm_env(MASTER_KEY), port=port)
        gateways["previous"] = ("http://127.0.0.1:%d" % port, previous)
        chain.wait_http(gateways["previous"][0] + "/health/liveliness", 300, previous)
        for name in ("ours", "previous"):
            ask(gateways[name][0], GPU_MODEL)
            hung = hung_phase(procs, vllm, gateways[name][0], vllm_base, clients=args.clients)
            print("P5 %-8s hung GPU tier, %d clients: %d requests, %d failed%s; median %.3fs before the hang, "
                  "%.3fs during it after its first 5 s (%d requests) -> added %.3fs; GPU tier answers %.1fs "
                  "after the resume, %d/%d requests from 10 s after the resume on the GPU tier   "
                  "goal: 0 failed, added <= 0.5s, back within 10 s"
                  % (name, args.clients, hung["requests"], hung["failed"],
                     " (first: %s)" % hung["first_failure"] if hung["failed"] else "",
                     hung["median_before"], hung["median_during"], hung["during_n"],
                     hung["median_during"] - hung["median_before"], hung["gpu_back_after_s"],
                     hung["late_on_gpu"][0], hung["late_on_gpu"][1]), flush=True)

        # Sequential, GPU tier dead: ours against LiteLLM's defaults.
        procs.kill(vllm)
        added, failures = {}, {}
        for name, count in (("ours", args.sequential), ("defaults", args.defaults_requests)):
            base = gateways[name][0]
            direct = series(base, "cpu", min(count, 50))[0]
            dead, failed, results = series(base, GPU_MODEL, count)
            wrong = sum(1 for r in results if r[2] is None and r[1] != cpu_base)
            added[name], failures[name] = dead - direct, (failed, count, wrong)
            print("P1 %-8s GPU dead: median %.3fs/request vs %.3fs direct to the CPU tier -> added %.3fs; "
                  "failures %d/%d; not served by the CPU tier %d"
                  % (name, dead, direct, dead - direct, failed, count, wrong), flush=True)
        ratio = added["defaults"] / added["ours"] if added["ours"] > 0 else float("inf")
        print("P1 ratio (defaults added / ours added): %.0fx   goal: ours <= 0.10s, >= 40x" % ratio, flush=True)

        print("P2 gate passed %.3fs after vLLM /health first answered 200 (steps: %s)   goal: <= 1s"
              % (p2, dict((k, (v["attempts"], v["latency_s"])) for k, v in gate["steps"].items())), flush=True)
    finally:
        procs.stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
