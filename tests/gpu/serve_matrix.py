"""Start one vLLM server per job on the one GPU, emulating smaller cards, and record
what vLLM reports: KV-cache tokens, whether it started, time to /health, throughput.

Runs on the GPU machine (see README.md). Input: a jobs file written by plan_matrix.py:
  {"models_dir": DIR, "jobs": [{"name", "model", "card", "card_mib", "args": [...],
                                "bench": null | {"concurrency", "requests", "max_tokens"}, ...}]}
A card is emulated by capping vLLM's memory budget to what the job's own
--gpu-memory-utilization would give on that card: the value passed to vLLM is
util * card_mib MiB / (CUDA-visible bytes of this GPU). The job's args are passed
through unchanged otherwise.

Servers overlap their imports, but their memory-profiling windows run one at a time
through tests/gpu/vllm_gate (see there why), and no server is stopped or benchmarked
while a window is open. Results are rewritten to OUTDIR/results.json after every event,
so a run cut short still leaves what it measured.

Usage: python3 serve_matrix.py JOBS.json OUTDIR [DEADLINE_S]
"""
import asyncio
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
MIB = 2 ** 20
PRELAUNCH = 4          # servers importing/waiting ahead of the one in its window
WINDOW_LIMIT_S = 420   # a profiling window longer than this is treated as a hang
HEALTH_LIMIT_S = 120   # from the end of the window to /health
VLLM_DEFAULT_UTIL = 0.92  # vLLM 0.26's CacheConfig.gpu_memory_utilization default

T0 = time.time()


def log(msg):
    print("[%6.1fs] %s" % (time.time() - T0, msg), flush=True)


def cuda_total_bytes():
    if os.environ.get("GPUSTACK_CUDA_TOTAL_BYTES"):  # dry runs of this script without a GPU
        return int(os.environ["GPUSTACK_CUDA_TOTAL_BYTES"])
    out = subprocess.run([sys.executable, "-c", "import torch; print(torch.cuda.mem_get_info()[1])"],
                         capture_output=True, text=True, check=True).stdout
    return int(out.strip().splitlines()[-1])


def gpu_free_mib():
    out = subprocess.run(["nvidia-smi", "--query-gpu=memory.free,memory.used", "--format=csv,noheader,nounits"],
                         capture_output=True, text=True, check=True).stdout
    free, used = (int(x) for x in out.split(","))
    return free, used


def group_members(pgid):
    """Live (non-zombie) processes of a process group."""
    members = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % pid) as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(pid))
    return members


def stop_group(proc):
    """Stop a server started with start_new_session: SIGTERM, then SIGKILL; then the whole
    group, since engine-core children may outlive the API server, until none is left (its
    GPU memory is back only then)."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        for _attempt in range(60):
            if proc.poll() is not None:
                break
            time.sleep(0.25)
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=30)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    for _attempt in range(120):
        if not group_members(proc.pid):
            break
        time.sleep(0.25)


PATTERNS = {
    "available_kv_gib": (r"Available KV cache memory: ([\d.]+) GiB", float),
    "kv_tokens": (r"GPU KV cache size: ([\d,]+) tokens", lambda s: int(s.replace(",", ""))),
    "max_concurrency": (r"Maximum concurrency for ([\d,]+ tokens per request: [\d.]+x)", str),
    "model_loading_gib": (r"Model loading took ([\d.]+) GiB", float),
    "memory_summary": (r"(Desired GPU memory utilization is .*)", str),
    "cudagraph_memory": (r"(CUDA graph pool memory: .*)", str),
    "attention_backend": (r"(Using [A-Za-z0-9_ ]*(?:[Aa]ttention|backend)[^\n]*)", str),
    "quantization_used": (r"(The model is convertible to \S+ during runtime[^\n]*|Detected that the model "
                          r"can run with \S+[^\n]*)", str),
    "max_model_len_used": (r"max_model_len=(\d+)", int),
    "init_engine": (r"(init engine \(profile, create kv cache, warmup model\) took [\d.]+ seconds)", str),
    "gate_wait": (r"\[gpustack-gate\] \S+ waited ([\d.]+)s", float),
}
ERROR_RE = re.compile(r"(OutOfMemoryError|CUDA out of memory|ValueError: .*|RuntimeError: .*|AssertionError.*|"
                      r"No available memory for the cache blocks.*|larger than the maximum number of tokens.*|"
                      r"Error in memory profiling.*|is less than desired GPU memory utilization.*)")


def parse_log(path):
    try:
        with open(path, errors="replace") as fh:
            text = fh.read()
    except OSError:
        return {}, []
    found = {}
    for key, (pattern, conv) in PATTERNS.items():
        m = re.search(pattern, text)
        if m:
            found[key] = conv(m.group(1))
    errors = []
    for m in ERROR_RE.finditer(text):
        line = m.group(1)[:400]
        if line not in errors:
            errors.append(line)
    return found, errors[-6:]


def http(port, path, body=None, timeout=1.0):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), data=data,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, r.read()


PROMPT = "The quick brown fox jumps over the lazy dog while the probe counts tokens. " * 2


async def bench(port, model, concurrency, requests, max_tokens):
    import aiohttp

    async def one(session, i, n):
        body = {"model": model, "prompt": "[%d] %s" % (i, PROMPT), "max_tokens": n,
                "ignore_eos": True, "temperature": 1.0}
        t = time.time()
        async with session.post("http://127.0.0.1:%d/v1/completions" % port, json=body) as r:
            out = await r.json()
            if r.status != 200:
                raise RuntimeError("HTTP %d: %s" % (r.status, str(out)[:300]))
        return out["usage"]["completion_tokens"], out["usage"]["prompt_tokens"], time.time() - t

    conn = aiohttp.TCPConnector(limit=concurrency + 4)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=900), connector=conn) as s:
        await asyncio.gather(*[one(s, 10_000 + i, 8) for i in range(concurrency)])  # warm-up wave
        sem = asyncio.Semaphore(concurrency)

        async def guarded(i):
            async with sem:
                return await one(s, i, max_tokens)
        t = time.time()
        res = await asyncio.gather(*[guarded(i) for i in range(requests)])
        wall = time.time() - t
    out_toks = sum(r[0] for r in res)
    lat = sorted(r[2] for r in res)
    return {"concurrency": concurrency, "requests": requests, "max_tokens": max_tokens,
            "wall_s": round(wall, 2), "output_tokens": out_toks, "prompt_tokens": sum(r[1] for r in res),
            "output_tok_per_s": round(out_toks / wall, 1), "latency_mean_s": round(statistics.mean(lat), 2),
            "latency_p50_s": round(lat[len(lat) // 2], 2), "latency_max_s": round(lat[-1], 2)}


class Job:
    def __init__(self, spec, index, models_dir, total_bytes, gate_dir, outdir):
        self.spec = spec
        self.name = spec["name"]
        self.port = 18100 + index
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", self.name)
        self.log_path = os.path.join(outdir, "logs", safe + ".log")
        # Every server starts on an empty compile cache, as a new pod does: with a
        # cache hit vLLM's profile run peaks lower, and which job warmed which
        # would decide the KV figure (the first run's 0.5B on 16/24 GB did).
        self.cache_dir = os.path.join(outdir, "vllm-cache", safe)
        args = list(spec["args"])
        util = VLLM_DEFAULT_UTIL
        if "--gpu-memory-utilization" in args:
            i = args.index("--gpu-memory-utilization")
            util = float(args[i + 1])
            del args[i:i + 2]
        self.card_util = util
        self.budget_mib = util * spec["card_mib"]
        self.h100_util = self.budget_mib * MIB / total_bytes
        self.args = args
        self.model_dir = os.path.join(models_dir, spec["model"])
        self.gate_dir = gate_dir
        self.state = "pending"
        self.proc = None
        self.t = {}
        self.result = {"name": self.name, "model": spec["model"], "card": spec["card"], "card_mib": spec["card_mib"],
                       "args": spec["args"], "card_util": util, "budget_mib": round(self.budget_mib, 1),
                       "emulated_util_on_this_gpu": round(self.h100_util, 6), "predicted": spec.get("predicted"),
                       "status": "pending"}

    def gate(self, suffix):
        return os.path.join(self.gate_dir, self.name + suffix)

    def launch(self):
        env = dict(os.environ, GPUSTACK_GATE_DIR=self.gate_dir, GPUSTACK_JOB=self.name,
                   VLLM_CACHE_ROOT=self.cache_dir)
        cmd = ([sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", self.model_dir,
                "--served-model-name", self.name, "--host", "127.0.0.1", "--port", str(self.port)]
               + self.args + ["--gpu-memory-utilization", "%.6f" % self.h100_util])
        self.result["command"] = " ".join(cmd)
        self.logf = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, stdout=self.logf, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)
        self.t["launch"] = time.time()
        self.state = "launched"
        log("launch %s (budget %.0f MiB, util here %.4f): %s" % (self.name, self.budget_mib, self.h100_util,
                                                                 " ".join(self.args)))

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        if self.proc is not None:
            stop_group(self.proc)
        if not self.logf.closed:
            self.logf.close()

    def finish(self, status, why=None):
        found, errors = parse_log(self.log_path)
        self.result.update(found)
        self.result["status"] = status
        if why:
            self.result["why"] = why
        if errors:
            self.result["errors"] = errors
        launch = self.t.get("launch")
        if launch and "health" in self.t:
            total = self.t["health"] - launch
            wait = (self.t["go"] - self.t["ready"]) if "go" in self.t and "ready" in self.t else 0.0
            self.result["health_after_launch_s"] = round(total, 1)
            self.result["gate_wait_s"] = round(wait, 1)
            self.result["time_to_health_s"] = round(total - wait, 1)
        if "go" in self.t and "done" in self.t:
            self.result["window_s"] = round(self.t["done"] - self.t["go"], 1)
        pred = (self.result.get("predicted") or {}).get("kv_tokens")
        if pred and self.result.get("kv_tokens"):
            self.result["kv_tokens_error_pct"] = round(100.0 * (pred - self.result["kv_tokens"])
                                                       / self.result["kv_tokens"], 2)


def main():
    jobs_file, outdir = sys.argv[1], sys.argv[2]
    deadline = T0 + (float(sys.argv[3]) if len(sys.argv) > 3 else 1500)
    spec = json.load(open(jobs_file))
    os.makedirs(os.path.join(outdir, "logs"), exist_ok=True)
    gate_dir = os.path.join(outdir, "gate")
    os.makedirs(gate_dir, exist_ok=True)
    total = cuda_total_bytes()
    log("CUDA-visible memory of this GPU: %d bytes (%.0f MiB)" % (total, total / MIB))
    jobs = [Job(j, i, spec["models_dir"], total, gate_dir, outdir) for i, j in enumerate(spec["jobs"])]
    meta = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(T0)), "cuda_total_bytes": total,
            "jobs_file": jobs_file}

    def save():
        meta["elapsed_s"] = round(time.time() - T0, 1)
        with open(os.path.join(outdir, "results.json.tmp"), "w") as fh:
            json.dump({"meta": meta, "results": [j.result for j in jobs]}, fh, indent=1)
        os.replace(os.path.join(outdir, "results.json.tmp"), os.path.join(outdir, "results.json"))

    bench_at_end = bool(spec.get("bench_at_end"))
    rounds = int(spec.get("bench_rounds", 1))
    window = None
    while True:
        now = time.time()
        if now > deadline:
            log("deadline reached: stopping what is left")
            for j in jobs:
                if j.state not in ("done", "failed", "pending"):
                    j.stop()
                    j.finish("unfinished", "session deadline")
                    j.state = "failed"
                elif j.state == "pending":
                    j.result["status"] = "not run (deadline)"
            save()
            break
        active = [j for j in jobs if j.state not in ("pending", "done", "failed")]
        if not active and not any(j.state == "pending" for j in jobs):
            break
        changed = False
        for j in active:
            if j.state in ("launched", "ready") and os.path.exists(j.gate(".error")):
                j.stop()
                j.finish("failed", "gate plugin: " + open(j.gate(".error")).read())
                j.state = "failed"
                changed = True
                continue
            if not j.alive():
                j.finish("failed", "server exited with %s during %s" % (j.proc.returncode, j.state))
                log("FAILED %s in %s: %s" % (j.name, j.state, j.result.get("errors")))
                if window is j:
                    window = None
                j.stop()
                j.state = "failed"
                changed = True
                continue
            if j.state == "launched" and os.path.exists(j.gate(".ready")):
                j.state, j.t["ready"] = "ready", now
            elif j.state == "launched" and now - j.t["launch"] > WINDOW_LIMIT_S:
                j.stop()
                j.finish("failed", "never reached the gate in init_device (plugin not loaded?)")
                j.state = "failed"
                changed = True
            elif j.state == "window":
                if os.path.exists(j.gate(".done")):
                    j.state, j.t["done"] = "warm", now
                    window = None
                    log("window done %s in %.1fs" % (j.name, now - j.t["go"]))
                elif now - j.t["go"] > WINDOW_LIMIT_S:
                    j.stop()
                    j.finish("failed", "profiling window over %ds" % WINDOW_LIMIT_S)
                    j.state, window = "failed", None
                    changed = True
            elif j.state == "warm":
                try:
                    if http(j.port, "/health", timeout=0.5)[0] == 200:
                        j.t["health"] = time.time()
                        j.state = "healthy"
                except Exception:  # noqa: BLE001 - not up yet
                    if now - j.t["done"] > HEALTH_LIMIT_S:
                        j.stop()
                        j.finish("failed", "no /health %ds after warm-up" % HEALTH_LIMIT_S)
                        j.state = "failed"
                        changed = True
        # Stops and benchmarks only between windows: they change memory and GPU load.
        if window is None:
            for j in jobs:
                if j.state != "healthy":
                    continue
                free, used = gpu_free_mib()
                j.result["gpu_used_mib_while_up"] = used
                try:
                    t = time.time()
                    status, body = http(j.port, "/v1/completions", {"model": j.name, "prompt": "Hello",
                                                                    "max_tokens": 8}, timeout=60)
                    j.result["smoke"] = {"status": status, "latency_s": round(time.time() - t, 3),
                                         "completion_tokens": json.loads(body)["usage"]["completion_tokens"]}
                except Exception as exc:  # noqa: BLE001 - recorded, not fatal
                    j.result["smoke"] = {"error": repr(exc)[:300]}
                if j.spec.get("bench") and bench_at_end:
                    # Benchmarked together once every server is up and nothing else
                    # starts: imports and compiles on the CPU would skew the figures.
                    j.state = "parked"
                    changed = True
                    continue
                if j.spec.get("bench"):
                    b = j.spec["bench"]
                    log("bench %s: %s" % (j.name, b))
                    try:
                        j.result["bench"] = asyncio.run(bench(j.port, j.name, b["concurrency"], b["requests"],
                                                              b["max_tokens"]))
                    except Exception as exc:  # noqa: BLE001 - recorded, not fatal
                        j.result["bench"] = {"error": repr(exc)[:300]}
                    log("bench %s: %s" % (j.name, j.result["bench"]))
                j.stop()
                j.finish("started")
                j.state = "done"
                log("done %s: kv_tokens=%s predicted=%s health=%ss" % (
                    j.name, j.result.get("kv_tokens"), (j.result.get("predicted") or {}).get("kv_tokens"),
                    j.result.get("time_to_health_s")))
                changed = True
        if window is None:
            ready = [j for j in jobs if j.state == "ready"]
            if ready and not any(j.state == "healthy" for j in jobs):
                j = ready[0]
                free, _used = gpu_free_mib()
                if free >= j.budget_mib + 1024:
                    open(j.gate(".go"), "w").close()
                    j.t["go"], j.state, window = time.time(), "window", j
                    j.result["gpu_free_mib_at_go"] = free
                    log("go %s (free %d MiB, waited %.1fs)" % (j.name, free, time.time() - j.t["ready"]))
                elif not any(x.state in ("warm", "healthy", "window") for x in jobs):
                    j.stop()
                    j.finish("failed", "needs %.0f MiB, only %d MiB free with nothing else running"
                             % (j.budget_mib + 1024, free))
                    j.state = "failed"
        parked = [j for j in jobs if j.state == "parked"]
        if parked and not any(j.state in ("pending", "launched", "ready", "window", "warm", "healthy") for j in jobs):
            for rnd in range(rounds):
                # ABBA order: no server always runs right after the same other one.
                for j in (parked if rnd % 2 == 0 else parked[::-1]):
                    b = j.spec["bench"]
                    log("bench round %d %s: %s" % (rnd + 1, j.name, b))
                    try:
                        res = asyncio.run(bench(j.port, j.name, b["concurrency"], b["requests"], b["max_tokens"]))
                    except Exception as exc:  # noqa: BLE001 - recorded, not fatal
                        res = {"error": repr(exc)[:300]}
                    j.result.setdefault("bench_rounds", []).append(res)
                    log("bench round %d %s: %s" % (rnd + 1, j.name, res))
                    save()
            for j in parked:
                ok = [r["output_tok_per_s"] for r in j.result["bench_rounds"] if "output_tok_per_s" in r]
                j.result["bench"] = dict(j.result["bench_rounds"][-1])
                if ok:
                    j.result["bench"]["output_tok_per_s"] = round(statistics.mean(ok), 1)
                    j.result["bench"]["rounds_tok_per_s"] = ok
                j.stop()
                j.finish("started")
                j.state = "done"
            changed = True
        waiting = sum(1 for j in jobs if j.state in ("launched", "ready"))
        for j in jobs:
            if waiting >= PRELAUNCH:
                break
            if j.state == "pending":
                j.launch()
                waiting += 1
                changed = True
        if changed:
            save()
        time.sleep(0.25)
    save()
    log("all jobs finished")
    for j in jobs:
        r = j.result
        print("%-34s %-9s kv=%-9s pred=%-9s err%%=%-6s health=%-6s tok/s=%s %s" % (
            r["name"], r["status"], r.get("kv_tokens"), (r.get("predicted") or {}).get("kv_tokens"),
            r.get("kv_tokens_error_pct"), r.get("time_to_health_s"), (r.get("bench") or {}).get("output_tok_per_s"),
            (r.get("errors") or [""])[-1][:160]), flush=True)


if __name__ == "__main__":
    main()
