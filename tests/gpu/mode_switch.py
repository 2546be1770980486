"""P7 (issue 14): GPU mode switches through the collection's own switch path
(plugins/module_utils/gpu_switch.py's ``switch``), on the GPU machine.

The two servers are the example inventory's pair as render.yml deploys them with
switch: sleep on one 12 GB card (jobs_switch.json, written by
``role_path.py --switch``): the same arguments, VLLM_SERVER_DEV_MODE, planned
KV pinned by --kv-cache-memory-bytes. Only the I/O is local (LocalIO): processes
instead of pods, nvidia-smi's per-process memory of the two servers instead of
the node's card, and no gateway (set_routed is recorded, not enforced: the
readiness gate is the cluster's part, shown on the sandbox).

The card is emulated as in serve_matrix.py: vLLM gets util x 12288 MiB of this
GPU's CUDA memory, so its start check and the pinned KV are those of the card.

Measured, by switch method: seconds from the switch request until the arriving
model answered a chat (switch's own report), level 1 and level 2, the first
switch after a start, a scale-down/cold start in the same run; the card memory
each sleeping server keeps (gaming) against the plan's residual; awake + asleep
against the card; vLLM's KV tokens against the plan's.

Usage: python3 mode_switch.py JOBS.json OUTDIR [ROUNDS]
"""
import json
import os
import re
import statistics
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
# The repository's root (device_run.sh runs there; the scripts are copied elsewhere).
sys.path.insert(0, os.path.join(os.environ.get("GPUSTACK_ROOT", os.getcwd()), "plugins", "module_utils"))

import gpu_switch  # noqa: E402  the collection's module_utils, imported by path
from serve_matrix import cuda_total_bytes, group_members, parse_log, stop_group  # noqa: E402

MIB = 2 ** 20
# vLLM's own lines on what the graphs and a sleep took (kept with the results).
SAID = re.compile(r"Graph capturing finished|CUDA graph pool memory|Sleep mode freed|Capturing CUDA graphs|"
                  r"cudagraph_capture_sizes|Reloading and processing weights took")
T0 = time.time()


def log(msg):
    print("[%6.1fs] %s" % (time.time() - T0, msg), flush=True)


def http(port, method, path, body=None, timeout=120):
    data = json.dumps(body).encode() if body is not None else (b"" if method == "POST" else None)
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        raw = resp.read()
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


def smi(query):
    return subprocess.run(["nvidia-smi", query, "--format=csv,noheader,nounits"],
                          capture_output=True, text=True, check=True).stdout.strip()


def compute_apps():
    """{pid: used bytes} of the processes on the GPU (pids as this container sees them, or none)."""
    apps = {}
    for line in smi("--query-compute-apps=pid,used_memory").splitlines():
        pid, used = (x.strip() for x in line.split(","))
        apps[int(pid)] = int(used) * MIB
    return apps


def used_bytes():
    return int(smi("--query-gpu=memory.used").splitlines()[0]) * MIB


class Server:
    def __init__(self, job, index, models_dir, total, outdir):
        self.job, self.name = job, job["name"]
        self.port = 18200 + index
        self.log_path = os.path.join(outdir, "logs", "switch-%s.log" % job["model"])
        args = list(job["args"])
        i = args.index("--gpu-memory-utilization")
        self.util_here = float(args[i + 1]) * job["card_mib"] * MIB / total
        del args[i:i + 2]
        self.cmd = ([sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model",
                     os.path.join(models_dir, job["model"]), "--served-model-name", self.name, "--host", "127.0.0.1",
                     "--port", str(self.port)] + args + ["--gpu-memory-utilization", "%.6f" % self.util_here])
        self.env = dict(os.environ, VLLM_CACHE_ROOT=os.path.join(outdir, "vllm-cache", job["model"]), **job["env"])
        self.proc = None
        self.starts = 0

    def start(self):
        self.logf = open(self.log_path, "a")
        self.proc = subprocess.Popen(self.cmd, stdout=self.logf, stderr=subprocess.STDOUT, env=self.env,
                                     start_new_session=True)
        self.starts += 1

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def pids(self):
        return group_members(self.proc.pid) if self.proc is not None else []

    def stop(self):
        if self.proc is None:
            return
        stop_group(self.proc)
        self.proc = None
        self.logf.close()


class LocalIO(gpu_switch.SwitchIO):
    def __init__(self, servers, baseline):
        self.servers = servers
        self.baseline = baseline
        self.routed = {}
        self.readings = []

    def _srv(self, step):
        return self.servers[step["name"]]

    def state(self, step):
        srv = self._srv(step)
        if not srv.alive():
            return gpu_switch.STOPPED
        try:
            return gpu_switch.ASLEEP if (http(srv.port, "GET", "/is_sleeping", timeout=5) or {}).get("is_sleeping") \
                else gpu_switch.AWAKE
        except OSError:
            return gpu_switch.STOPPED

    def set_routed(self, step, on):
        changed = self.routed.get(step["name"]) != on
        self.routed[step["name"]] = on
        return changed

    def vllm(self, step, method, path, body=None):
        return http(self._srv(step).port, method, path, body)

    def _wait_health(self, srv, limit=600):
        end = time.time() + limit
        while time.time() < end:
            if not srv.alive():
                raise gpu_switch.SwitchError("%s exited while starting (see its log)" % srv.name)
            try:
                http(srv.port, "GET", "/health", timeout=2)
                return
            except OSError:
                time.sleep(0.5)
        raise gpu_switch.SwitchError("%s did not answer /health in %d s" % (srv.name, limit))

    def scale(self, step, replicas):
        srv = self._srv(step)
        if replicas == 0:
            srv.stop()
        elif not srv.alive():
            srv.start()
            self._wait_health(srv)

    def restart(self, step):
        self.scale(step, 0)
        self.scale(step, 1)

    def chat(self, step):
        out = http(self._srv(step).port, "POST", "/v1/chat/completions",
                   {"model": step["name"], "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 8})
        if not (out or {}).get("choices"):
            raise gpu_switch.SwitchError("%s gave no answer: %r" % (step["name"], out))

    def card_used_bytes(self, node):
        """The two servers' memory: by pid where nvidia-smi's pids are this container's,
        else the GPU's memory.used less what it used before any server started."""
        apps = compute_apps()
        mine = [apps[pid] for srv in self.servers.values() for pid in srv.pids() if pid in apps]
        used = sum(mine) if mine else max(0, used_bytes() - self.baseline)
        self.readings.append(used)
        return used

    def clock(self):
        return time.time()

    def pause(self, seconds):
        time.sleep(seconds)

    def say(self, msg):
        log("switch says: " + msg)


def models_of(jobs, method, level=None):
    """The stack model's entries gpu_switch reads, from the rendered jobs."""
    return [{"name": j["name"], "node": "gpu-00", "spec": {"served_name": j["name"], "modes": j["modes"]},
             "switch": method, "sleep_level": level or j["sleep_level"], "plan": j["plan"]} for j in jobs]


def per_process(servers):
    apps = compute_apps()
    return dict((name, sum(apps.get(pid, 0) for pid in srv.pids())) for name, srv in servers.items())


def main():
    jobs_file, outdir = sys.argv[1], sys.argv[2]
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 4
    os.makedirs(os.path.join(outdir, "logs"), exist_ok=True)
    with open(jobs_file) as fh:
        spec = json.load(fh)
    jobs = spec["jobs"]
    card = jobs[0]["card_mib"] * MIB
    total = cuda_total_bytes()
    servers = dict((j["name"], Server(j, i, spec["models_dir"], total, outdir)) for i, j in enumerate(jobs))
    io = LocalIO(servers, used_bytes())
    results = {"card_mib": jobs[0]["card_mib"], "switches": [], "memory": [], "kv": {}}

    def save():
        with open(os.path.join(outdir, "switch_results.json"), "w") as fh:
            json.dump(results, fh, indent=1)

    def do(mode, method, level=None, label=None):
        t = time.time()
        io.readings = []
        try:
            report = gpu_switch.switch(models_of(jobs, method, level), mode, io, deadline_s=700, card_wait_s=15)
        except gpu_switch.SwitchError as exc:
            # Recorded, and the run goes on from whatever state the servers are in.
            log("%s %s %s FAILED: %s" % (mode, method, label, exc))
            report = {"events": [], "fallbacks": [], "steps": [], "error": str(exc)}
        row = {"mode": mode, "method": method, "level": level or 1, "label": label or "",
               "seconds": round(time.time() - t, 3), "events": report["events"], "fallbacks": report["fallbacks"],
               "before": dict((s["name"], s["before"]) for s in report["steps"]), "error": report.get("error")}
        row["card_readings"] = io.readings
        mem = per_process(servers)
        row["card_bytes_after"] = mem
        row["card_total_after"] = io.card_used_bytes("gpu-00")
        row["fits_card"] = row["card_total_after"] <= card
        results["switches"].append(row)
        log("%-6s %-5s L%s %-18s %.2f s  card %s (%.2f GiB of %.2f)  fallbacks %s" % (
            mode, method, row["level"], row["label"], row["seconds"],
            dict((k, round(v / 2 ** 30, 2)) for k, v in mem.items()), row["card_total_after"] / 2 ** 30,
            card / 2 ** 30, report["fallbacks"]))
        save()
        return row

    try:
        # Cold: ml's model from nothing (a scale arrival), then r1 (the first sleep of ml's model).
        # site.yml's bring-up: r1's model starts and sleeps (its first sleep;
        # the card reading then is its residual alone), ml's starts cold beside it.
        do("ml", "sleep", 1, "bring-up")
        # ml's model sleeps for the first time, r1's wakes: the first switch after a start.
        do("r1", "sleep", 1, "first switch")
        for i in range(rounds):
            do("ml", "sleep", 1, "level 1")
            do("r1", "sleep", 1, "level 1")
        do("gaming", "sleep", 1, "gaming")
        results["gaming"] = {"per_process": per_process(servers),
                             "planned_residual": dict((j["name"], j["plan"]["sleep_residual_bytes"]) for j in jobs)}
        do("ml", "sleep", 1, "from gaming")
        do("r1", "sleep", 2, "to level 2")  # r1's model slept at level 1: not counted
        for i in range(rounds):
            do("ml", "sleep", 2, "level 2")
            do("r1", "sleep", 2, "level 2")
        # The scale path in the same run: a scale model is never asleep, so
        # both servers stop first (as their pods would be gone), then ml's
        # model starts cold through its switch.
        for srv in servers.values():
            srv.stop()
        do("ml", "scale", label="scale (cold start)")
        for name, srv in servers.items():
            found, _errors = parse_log(srv.log_path)
            with open(srv.log_path, errors="replace") as fh:
                said = [line.strip()[-240:] for line in fh if SAID.search(line)]
            results["kv"][name] = {"vllm_tokens": found.get("kv_tokens"),
                                   "planned_tokens": next(j for j in jobs if j["name"] == name)["plan"]["kv_cache_tokens"],
                                   "vllm_said": said[-12:]}
        save()
    finally:
        for srv in servers.values():
            srv.stop()
        save()
    sw = results["switches"]

    def med(pred):
        vals = [r["seconds"] for r in sw if pred(r) and not r["error"]]
        return (round(statistics.median(vals), 3), len(vals)) if vals else None
    log("P7 level 1 median %s, level 2 median %s, first switch %s, scale %s" % (
        med(lambda r: r["label"] == "level 1"), med(lambda r: r["label"] == "level 2"),
        med(lambda r: r["label"] == "first switch"), med(lambda r: r["label"] == "scale (cold start)")))
    log("gaming: %s" % results.get("gaming"))
    log("kv: %s" % results["kv"])


if __name__ == "__main__":
    main()
