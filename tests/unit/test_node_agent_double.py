"""The node-agent double (tests/doubles/node_agent_double) against the real
API double (tests/doubles/kube_api_double, WITHOUT --fake-kubelet): pods bound
to a node become real processes on this machine, through a test image map
whose images are a small Python program (APP below) run by /usr/bin/python3.

Both doubles run as subprocesses on loopback and are stopped by PID (SIGTERM,
then SIGKILL). Files a pod's uid 1000 must reach live in a 0755 folder under
/tmp (pytest's own tmp folders are root-only)."""

import copy
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOUBLES = ROOT / "tests" / "doubles"
sys.path.insert(0, str(DOUBLES))
from node_agent_double.api import ApiError, Client  # noqa: E402

TOKEN = "node-agent-test-token"
PY = "/usr/bin/python3"   # readable by uid 1000, unlike the pyenv python under /root

APP = r'''
import getpass, http.server, json, os, sys, time
args = sys.argv[1:]
opts = dict(zip(args[::2], args[1::2]))
# /proc/self/environ is the env as exec'd (Python's locale coercion edits os.environ).
env = dict(kv.split("=", 1) for kv in open("/proc/self/environ").read().split("\0") if kv)
report = {"argv": sys.argv, "env": env, "uid": os.getuid(), "gid": os.getgid(), "groups": sorted(os.getgroups()),
          "cwd": os.getcwd(), "pid": os.getpid(), "files": {}}
try:
    report["user"] = getpass.getuser()
except Exception as e:
    report["user_error"] = repr(e)
for p in opts.get("--read", "").split(","):
    if p:
        st = os.stat(p)
        report["files"][p] = {"text": open(p).read(), "mode": oct(st.st_mode & 0o7777), "gid": st.st_gid}
if "--lookup-user" in opts:
    print("I am", getpass.getuser(), flush=True)
alive = opts.get("--alive")
if alive:
    open(alive, "w").close()
if "--report" in opts:
    with open(opts["--report"] + ".tmp", "w") as f:
        json.dump(report, f)
    os.replace(opts["--report"] + ".tmp", opts["--report"])
if "--exit" in opts:
    sys.exit(int(opts["--exit"]))

class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        ok = self.path != "/alive" or (alive and os.path.exists(alive))
        self.send_response(200 if ok else 500)
        self.end_headers()
    def log_message(self, *a):
        pass
http.server.HTTPServer(("0.0.0.0", int(opts.get("--port", "0"))), H).serve_forever()
'''

NVIDIA_CONTAINERD = '''version = 3
[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.'runc']
  runtime_type = "io.containerd.runc.v2"
[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.'nvidia']
  runtime_type = "io.containerd.runc.v2"
[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.'nvidia'.options]
  BinaryName = "/usr/bin/nvidia-container-runtime"
'''
PLAIN_CONTAINERD = '''version = 3
[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.'runc']
  runtime_type = "io.containerd.runc.v2"
'''


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_proc(proc, timeout=10):
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(5)


def wait_for(fn, timeout=20, what="condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(0.2)
    pytest.fail("timed out waiting for %s (last: %r)" % (what, last))


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open("/proc/%d/stat" % pid) as f:
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


class Cluster:
    def __init__(self, tmp, shared):
        self.tmp, self.shared = tmp, shared
        self.port = free_port()
        self.url = "https://127.0.0.1:%d" % self.port
        self.token = tmp / "token"
        self.token.write_text(TOKEN + "\n")
        self.kubeconfig = tmp / "admin.yaml"
        self.procs = []
        self.images = shared / "images.yaml"
        app = shared / "app.py"
        app.write_text(APP)
        app.chmod(0o644)
        entry = {"entrypoint": [PY, str(app)], "cmd": ["--exit", "0"], "workingDir": "/srv", "workingDirOnNode": str(shared / "workdir"),
                 "users": {0: {"name": "root", "home": "/root"}}, "env": {"IMAGE_ENV": "from-image"},
                 "path": "/usr/local/bin:/usr/bin:/bin", "programs": {"python3": PY}}
        # An entry naming a program the agent was not given (--set): its containers cannot be configured.
        unset = dict(entry, match="example.test/needs-a-setting:*", programs={"python3": "${NOT_SET}"})
        self.images.write_text(yaml.safe_dump({"images": [dict(entry, match="example.test/app:*"), unset]}))

    def start(self):
        log = open(self.tmp / "api.log", "a")
        cmd = [sys.executable, "-m", "kube_api_double", "serve", "--data-dir", str(self.tmp / "api"), "--listen", "127.0.0.1:%d" % self.port,
               "--token-file", str(self.token), "--kubeconfig-out", str(self.kubeconfig), "--kubeconfig-server", self.url,
               "--node-grace-s", "3600"]
        self.api_proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONPATH=str(DOUBLES)),
                                         start_new_session=True)
        self.procs.append(self.api_proc)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.api_proc.poll() is not None:
                pytest.fail("API double died:\n" + (self.tmp / "api.log").read_text()[-3000:])
            if self.kubeconfig.exists():
                try:
                    self.client = Client(self.url, str(self.tmp / "tls"), kubeconfig=str(self.kubeconfig))
                    self.client.get("/version")
                    return
                except (OSError, ApiError, ValueError):
                    pass
            time.sleep(0.2)
        pytest.fail("API double did not come up")

    def stop(self):
        for p in reversed(self.procs):
            stop_proc(p)
        # Whatever an agent that died hard left running: its pidfiles name the process groups.
        for f in self.shared.glob("agent-*/pids/*.pid"):
            try:
                os.killpg(int(f.read_text().split()[0]), signal.SIGKILL)
            except (ValueError, OSError):
                pass

    # ------------------------------------------------------------------ objects

    def node(self, name, allocatable=None, runtimes=PLAIN_CONTAINERD):
        alloc = {"cpu": "4", "memory": "8Gi", "pods": "110"}
        alloc.update(allocatable or {})
        info = {"labels": {}, "capacity": alloc, "allocatable": alloc, "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}]}
        agent_client = Client(self.url, str(self.tmp / "tls-node"), token_file=str(self.token))
        agent_client.request("POST", "/v1-k3s-double/nodes/" + name, info)
        cfg = self.tmp / ("containerd-%s.toml" % name)
        cfg.write_text(runtimes)
        return cfg

    def agent(self, node, containerd_config, kubeconfig=False):
        root = self.shared / ("agent-" + node)   # volumes are linked from here: uid 1000 must be able to walk it
        cred = ["--kubeconfig", str(self.kubeconfig)] if kubeconfig else ["--token-file", str(self.token)]
        cmd = [sys.executable, "-m", "node_agent_double", "run", "--node", node, "--api", self.url, *cred, "--images", str(self.images),
               "--root", str(root), "--node-address", "127.0.0.1", "--poll-s", "0.3", "--containerd-config", str(containerd_config)]
        log = open(self.tmp / ("agent-%s.log" % node), "a")
        env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(DOUBLES), "AGENT_SECRET": "must-not-leak"}
        p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self.procs.append(p)
        return p

    def namespace(self, name):
        self.client.request("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        return name

    def create(self, path, body):
        return self.client.request("POST", path, body)

    def pod(self, ns, name):
        try:
            return self.client.get("/api/v1/namespaces/%s/pods/%s" % (ns, name))
        except ApiError as e:
            if e.code == 404:
                return None
            raise

    def events(self, ns):
        return self.client.get("/api/v1/namespaces/%s/events" % ns)["items"]

    def agent_log(self, node):
        return (self.tmp / ("agent-%s.log" % node)).read_text()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    shared = Path(tempfile.mkdtemp(prefix="node-agent-double-", dir="/tmp"))
    shared.chmod(0o755)
    c = Cluster(tmp_path_factory.mktemp("nad"), shared)
    try:
        c.start()
        yield c
    finally:
        c.stop()
        shutil.rmtree(shared, ignore_errors=True)


@pytest.fixture
def world(cluster, request):
    """A namespace, a node and its agent for one test; a 0777 folder for what uid 1000 writes."""
    name = request.node.name.replace("test_", "").replace("_", "-")[:30].strip("-")
    out = cluster.shared / name
    out.mkdir(mode=0o777)
    out.chmod(0o777)
    return name, out


def pod_body(name, args, image="example.test/app:1", node=None, **spec):
    c = {"name": "app", "image": image, "args": args}
    c.update(spec.pop("container", {}))
    body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [c], "restartPolicy": spec.pop("restartPolicy", "Never"), "terminationGracePeriodSeconds": 5}}
    if node:
        body["spec"]["nodeName"] = node
    body["spec"].update(spec)
    return body


def phase(cluster, ns, name):
    p = cluster.pod(ns, name)
    return p and (p.get("status") or {}).get("phase")


def cstatus(cluster, ns, name):
    p = cluster.pod(ns, name) or {}
    return ((p.get("status") or {}).get("containerStatuses") or [{}])[0]


def run_module(kubeconfig, module, args):
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
               ANSIBLE_STDOUT_CALLBACK="json", ANSIBLE_NOCOLOR="1")
    cmd = [str(Path(sys.executable).with_name("ansible")), "localhost", "-m", module, "-a", json.dumps(dict(args, kubeconfig=str(kubeconfig))),
           "-e", "ansible_python_interpreter=%s" % sys.executable]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    doc, _end = json.JSONDecoder().raw_decode(proc.stdout[proc.stdout.index("{"):])
    return doc["plays"][0]["tasks"][0]["hosts"]["localhost"]


# --------------------------------------------------------------------------- tests


def test_deployment_rolls_out_as_uid_1000_with_env_volumes_and_probes(cluster, world):
    name, out = world
    ns = cluster.namespace(name)
    cfg = cluster.node(name)
    cluster.agent(name, cfg, kubeconfig=True)
    hostdir = out / "models"
    hostdir.mkdir()
    port = free_port()
    cluster.create("/api/v1/namespaces/%s/configmaps" % ns, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"},
                                                             "data": {"config.yaml": "model: tiny\n", "LEVEL": "debug", "other": "x"}})
    cluster.create("/api/v1/namespaces/%s/secrets" % ns, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "keys"},
                                                          "stringData": {"MASTER_KEY": "sk-123"}})
    etc = out / "etc-app"
    sec = out / "secret"
    report = out / "report.json"
    container = {
        "name": "app", "image": "example.test/app:v1",
        "args": ["--port", "$(PORT)", "--report", str(report), "--read", "%s/config.yaml,%s/MASTER_KEY" % (etc, sec), "--esc", "$$(PORT)"],
        "ports": [{"name": "http", "containerPort": port}],
        "env": [{"name": "PORT", "value": str(port)}, {"name": "URL", "value": "http://x:$(PORT)/$(UNKNOWN)"},
                {"name": "KEY", "valueFrom": {"secretKeyRef": {"name": "keys", "key": "MASTER_KEY"}}},
                {"name": "LVL", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "LEVEL"}}},
                {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
        "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CM_"}],
        "volumeMounts": [{"name": "cfg", "mountPath": str(etc)}, {"name": "keys", "mountPath": str(sec)},
                         {"name": "models", "mountPath": str(hostdir)}, {"name": "scratch", "mountPath": str(out / "scratch")}],
        "startupProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1, "failureThreshold": 30},
        "readinessProbe": {"exec": {"command": ["python3", "-c", "import os, sys; sys.exit(0 if os.path.exists(%r) else 1)" % str(report)]},
                           "periodSeconds": 1},
        "livenessProbe": {"tcpSocket": {"port": port}, "periodSeconds": 2},
    }
    dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": ns},
           "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                    "template": {"metadata": {"labels": {"app": "web"}},
                                 "spec": {"nodeSelector": {"kubernetes.io/hostname": name}, "terminationGracePeriodSeconds": 5,
                                          "securityContext": {"runAsUser": 1000, "runAsGroup": 3000, "fsGroup": 2000},
                                          "containers": [container],
                                          "volumes": [{"name": "cfg", "configMap": {"name": "cfg", "items": [{"key": "config.yaml",
                                                                                                             "path": "config.yaml"}]}},
                                                      {"name": "keys", "secret": {"secretName": "keys"}},
                                                      {"name": "models", "hostPath": {"path": str(hostdir), "type": "Directory"}},
                                                      {"name": "scratch", "emptyDir": {"medium": "Memory"}}]}}}}
    res = run_module(cluster.kubeconfig, "kubernetes.core.k8s", {"definition": dep, "wait": True, "wait_timeout": 40})
    assert not res.get("failed"), res.get("msg")
    assert res["result"]["status"].get("readyReplicas") == 1, res["result"]["status"]

    r = json.loads(report.read_text())
    assert r["uid"] == 1000 and r["gid"] == 3000 and r["groups"] == [2000]
    assert "KeyError" in r["user_error"]   # no passwd entry for 1000: the image defines only root
    pod = next(p for p in cluster.client.get("/api/v1/namespaces/%s/pods" % ns)["items"])
    want_env = {"PORT": str(port), "URL": "http://x:%d/$(UNKNOWN)" % port, "KEY": "sk-123", "LVL": "debug",
                "POD": pod["metadata"]["name"], "NS": ns, "IP": "127.0.0.1", "NODE": name,
                "CM_config.yaml": "model: tiny\n", "CM_LEVEL": "debug", "CM_other": "x",
                "IMAGE_ENV": "from-image", "PATH": "/usr/local/bin:/usr/bin:/bin", "HOSTNAME": pod["metadata"]["name"], "HOME": "/"}
    assert r["env"] == want_env
    assert r["argv"][1:] == ["--port", str(port), "--report", str(report), "--read", "%s/config.yaml,%s/MASTER_KEY" % (etc, sec),
                             "--esc", "$(PORT)"]
    assert r["cwd"] == str(cluster.shared / "workdir")
    assert r["files"][str(etc / "config.yaml")] == {"text": "model: tiny\n", "mode": "0o644", "gid": 2000}
    assert r["files"][str(sec / "MASTER_KEY")] == {"text": "sk-123", "mode": "0o644", "gid": 2000}
    assert os.path.islink(out / "scratch") and (os.stat(out / "scratch").st_mode & 0o7777) == 0o2777

    st = pod["status"]
    assert st["phase"] == "Running" and st["podIP"] == "127.0.0.1" and st["hostIP"] == "127.0.0.1"
    conds = {c["type"]: c["status"] for c in st["conditions"]}
    assert conds["Ready"] == conds["ContainersReady"] == conds["Initialized"] == conds["PodScheduled"] == "True"
    cs = st["containerStatuses"][0]
    assert cs["ready"] and cs["started"] and cs["restartCount"] == 0 and "running" in cs["state"]
    assert cs["containerID"].startswith("containerd://") and cs["imageID"].startswith("sha256:")
    log = cluster.shared / ("agent-" + name) / "logs" / ("%s_%s_app.log" % (ns, pod["metadata"]["name"]))
    assert log.exists()
    # Status is written only on change: a quiet pod's resourceVersion stays put.
    rv = pod["metadata"]["resourceVersion"]
    time.sleep(2)
    assert cluster.pod(ns, pod["metadata"]["name"])["metadata"]["resourceVersion"] == rv


def test_a_program_that_looks_up_uid_1000_fails_as_in_the_image(cluster, world):
    name, out = world
    ns = cluster.namespace(name)
    cluster.agent(name, cluster.node(name))
    base = ["--lookup-user", "1", "--exit", "0"]
    cluster.create("/api/v1/namespaces/%s/pods" % ns, pod_body("as-1000", base, node=name, securityContext={"runAsUser": 1000}))
    cluster.create("/api/v1/namespaces/%s/pods" % ns, pod_body("as-root", base, node=name))
    cluster.create("/api/v1/namespaces/%s/pods" % ns, pod_body("no-lookup", ["--exit", "0"], node=name, securityContext={"runAsUser": 1000}))
    wait_for(lambda: phase(cluster, ns, "as-1000") == "Failed", what="as-1000 Failed")
    assert cstatus(cluster, ns, "as-1000")["state"]["terminated"]["exitCode"] == 1
    wait_for(lambda: phase(cluster, ns, "as-root") == "Succeeded", what="as-root Succeeded")
    wait_for(lambda: phase(cluster, ns, "no-lookup") == "Succeeded", what="no-lookup Succeeded")
    logs = cluster.shared / ("agent-" + name) / "logs"
    assert "I am root" in (logs / ("%s_as-root_app.log" % ns)).read_text()
    assert "KeyError" in (logs / ("%s_as-1000_app.log" % ns)).read_text()


def test_unknown_image_is_err_image_pull_and_pending(cluster, world):
    name, out = world
    ns = cluster.namespace(name)
    cluster.agent(name, cluster.node(name))
    cluster.create("/api/v1/namespaces/%s/pods" % ns, pod_body("nope", [], image="registry.example/nope:1", node=name))
    w = wait_for(lambda: cstatus(cluster, ns, "nope").get("state", {}).get("waiting", {}).get("reason") == "ErrImagePull"
                 and cstatus(cluster, ns, "nope")["state"]["waiting"], what="ErrImagePull")
    assert "registry.example/nope:1" in w["message"]
    assert phase(cluster, ns, "nope") == "Pending"


def test_an_image_entry_missing_a_setting_is_create_container_config_error(cluster, world):
    name, out = world
    ns = cluster.namespace(name)
    cluster.agent(name, cluster.node(name))
    cluster.create("/api/v1/namespaces/%s/pods" % ns, pod_body("unset", [], image="example.test/needs-a-setting:1", node=name))
    w = wait_for(lambda: cstatus(cluster, ns, "unset").get("state", {}).get("waiting", {}).get("reason") == "CreateContainerConfigError"
                 and cstatus(cluster, ns, "unset")["state"]["waiting"], what="CreateContainerConfigError")
    assert "--set NOT_SET=" in w["message"]
    assert phase(cluster, ns, "unset") == "Pending"


def test_runtime_class_needs_the_handler_in_containerd_config(cluster, world):
    name, out = world
    ns = cluster.namespace(name)
    try:
        cluster.create("/apis/node.k8s.io/v1/runtimeclasses", {"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass",
                                                               "metadata": {"name": "nvidia"}, "handler": "nvidia"})
    except ApiError as e:
        assert e.code == 409
    plain, gpu = name + "-plain", name + "-gpu"
    cluster.agent(plain, cluster.node(plain, runtimes=PLAIN_CONTAINERD))
    cluster.agent(gpu, cluster.node(gpu, runtimes=NVIDIA_CONTAINERD))
    for node in (plain, gpu):
        cluster.create("/api/v1/namespaces/%s/pods" % ns, pod_body(node, ["--port", str(free_port())], node=node,
                                                                   runtimeClassName="nvidia", restartPolicy="Always"))
    wait_for(lambda: phase(cluster, ns, gpu) == "Running", what="the pod on the node with the nvidia runtime Running")
    msgs = wait_for(lambda: [e["message"] for e in cluster.events(ns) if e["reason"] == "FailedCreatePodSandBox"
                             and e["involvedObject"]["name"] == plain], what="FailedCreatePodSandBox")
    assert 'no runtime for "nvidia" is configured' in msgs[0]
    assert phase(cluster, ns, plain) == "Pending"
    assert cstatus(cluster, ns, plain)["state"]["waiting"]["reason"] == "ContainerCreating"


def test_gpu_limit_beyond_allocatable_is_refused_by_admission(cluster, world):
    name, out = world
    ns = cluster.namespace(name)
    none, one = name + "-0", name + "-1"
    cluster.agent(none, cluster.node(none, allocatable={"nvidia.com/gpu": "0"}))
    cluster.agent(one, cluster.node(one, allocatable={"nvidia.com/gpu": "1"}))
    gpu = {"resources": {"limits": {"nvidia.com/gpu": 1}}}
    for node in (none, one):
        # Bound by nodeName, past the scheduler, as a pod that reaches the kubelet anyway.
        cluster.create("/api/v1/namespaces/%s/pods" % ns, pod_body(node, ["--port", str(free_port())], node=node, container=gpu,
                                                                   restartPolicy="Always"))
    wait_for(lambda: phase(cluster, ns, none) == "Failed", what="admission failure")
    st = cluster.pod(ns, none)["status"]
    assert st["reason"] == "UnexpectedAdmissionError" and "Requested: 1, Available: 0" in st["message"]
    wait_for(lambda: phase(cluster, ns, one) == "Running", what="the pod on the node with a GPU Running")


def test_liveness_failure_restarts_the_container(cluster, world):
    name, out = world
    ns = cluster.namespace(name)
    cluster.agent(name, cluster.node(name))
    alive = out / "alive"
    port = free_port()
    probe = {"httpGet": {"path": "/alive", "port": port}, "periodSeconds": 1, "failureThreshold": 2}
    cluster.create("/api/v1/namespaces/%s/pods" % ns, pod_body("live", ["--port", str(port), "--alive", str(alive)], node=name,
                                                               restartPolicy="Always", container={"livenessProbe": probe}))
    wait_for(lambda: phase(cluster, ns, "live") == "Running" and alive.exists(), what="Running")
    first_id = cstatus(cluster, ns, "live")["containerID"]
    alive.unlink()
    cs = wait_for(lambda: cstatus(cluster, ns, "live").get("restartCount") == 1 and "running" in cstatus(cluster, ns, "live")["state"]
                  and cstatus(cluster, ns, "live"), timeout=20, what="restartCount 1")
    assert cs["containerID"] != first_id and "terminated" in cs["lastState"]
    assert any(e["reason"] == "Unhealthy" and "Liveness probe failed" in e["message"] for e in cluster.events(ns))
    time.sleep(3)   # the restarted process made its file again: no second restart
    assert cstatus(cluster, ns, "live")["restartCount"] == 1


def test_deletion_stops_the_process_and_the_pod_goes(cluster, world):
    name, out = world
    ns = cluster.namespace(name)
    agent = cluster.agent(name, cluster.node(name))
    reports = {}
    for pod in ("doomed", "survivor"):
        reports[pod] = out / (pod + ".json")
        cluster.create("/api/v1/namespaces/%s/pods" % ns, pod_body(pod, ["--port", str(free_port()), "--report", str(reports[pod])],
                                                                   node=name, restartPolicy="Always"))
    pids = {p: wait_for(lambda p=p: r.exists() and json.loads(r.read_text())["pid"], what=p + " started") for p, r in reports.items()}
    assert all(pid_alive(p) for p in pids.values())
    cluster.client.request("DELETE", "/api/v1/namespaces/%s/pods/doomed" % ns)
    wait_for(lambda: not pid_alive(pids["doomed"]), timeout=10, what="the deleted pod's process gone")
    wait_for(lambda: cluster.pod(ns, "doomed") is None, timeout=10, what="the pod gone from the API")
    assert pid_alive(pids["survivor"])
    # The agent's own SIGTERM stops every container it runs.
    stop_proc(agent)
    assert agent.returncode == 0
    assert not pid_alive(pids["survivor"])


def test_refusals_port_clash_hostpath_type_and_foreign_node_path(cluster, world):
    name, out = world
    ns = cluster.namespace(name)
    cluster.agent(name, cluster.node(name))
    port = free_port()
    ports = {"ports": [{"containerPort": port}]}
    cluster.create("/api/v1/namespaces/%s/pods" % ns, pod_body("first", ["--port", str(port)], node=name, container=ports,
                                                               restartPolicy="Always"))
    wait_for(lambda: phase(cluster, ns, "first") == "Running", what="first Running")
    cluster.create("/api/v1/namespaces/%s/pods" % ns, pod_body("second", ["--port", str(port)], node=name, container=ports,
                                                               restartPolicy="Always"))
    w = wait_for(lambda: cstatus(cluster, ns, "second").get("state", {}).get("waiting", {}).get("reason") == "CreateContainerError"
                 and cstatus(cluster, ns, "second")["state"]["waiting"], what="port clash refused")
    assert "port %d/TCP is already used by pod %s/first" % (port, ns) in w["message"]

    missing = out / "no-such-dir"
    cluster.create("/api/v1/namespaces/%s/pods" % ns, pod_body(
        "hostpath", [], node=name, container={"volumeMounts": [{"name": "m", "mountPath": str(missing)}]},
        volumes=[{"name": "m", "hostPath": {"path": str(missing), "type": "Directory"}}]))
    msgs = wait_for(lambda: [e["message"] for e in cluster.events(ns) if e["reason"] == "FailedMount"
                             and e["involvedObject"]["name"] == "hostpath"], what="FailedMount")
    assert "hostPath type check failed: %s is not a directory" % missing in msgs[0]
    assert phase(cluster, ns, "hostpath") == "Pending"

    taken = out / "node-file"
    taken.write_text("the node's own\n")
    cluster.create("/api/v1/namespaces/%s/pods" % ns, pod_body(
        "clobber", [], node=name, container={"volumeMounts": [{"name": "e", "mountPath": str(taken)}]},
        volumes=[{"name": "e", "emptyDir": {}}]))
    wait_for(lambda: phase(cluster, ns, "clobber") == "Failed", what="NodePathConflict")
    assert cluster.pod(ns, "clobber")["status"]["reason"] == "NodePathConflict"
    assert taken.read_text() == "the node's own\n"


GATE = "gpu-stack.homelab/awake"


def test_the_agent_patches_only_its_own_conditions_so_a_gate_set_meanwhile_stays():
    """No processes: a worker whose copy of the pod predates a gate condition someone set writes its status.
    Its strategic merge patch carries only the kubelet's conditions, so the server keeps the gate's; the
    merge patch of the whole list it sent before replaced the list and wiped it."""
    from kube_api_double import merge
    from node_agent_double.agent import KUBELET_CONDITIONS, PodWorker

    sent = []

    class FakeClient:
        def request(self, method, path, body=None, query=None, ctype="application/json"):
            sent.append((method, path, body, ctype))
            return None

    class ReadyContainer:
        restart_count, done = 0, False

        def status(self):
            return {"name": "app", "image": "example.test/app:1", "imageID": "", "ready": True, "started": True, "restartCount": 0,
                    "state": {"running": {"startedAt": "2025-01-01T00:00:01Z"}}, "lastState": {}}

    stale = {"metadata": {"name": "p", "namespace": "ns", "uid": "u", "resourceVersion": "5"},
             "spec": {"containers": [{"name": "app", "image": "example.test/app:1"}], "readinessGates": [{"conditionType": GATE}]},
             "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True",
                                                            "lastTransitionTime": "2025-01-01T00:00:00Z"}],
                        "containerStatuses": [{"name": "app", "ready": False, "state": {"waiting": {"reason": "ContainerCreating"}}}]}}
    w = PodWorker(types.SimpleNamespace(node_ip="127.0.0.1", client=FakeClient()), copy.deepcopy(stale))
    w.runners, w.sandbox_ready = {"app": ReadyContainer()}, True
    w.write_status()
    method, path, body, ctype = sent[-1]
    assert (method, path, ctype) == ("PATCH", "/api/v1/namespaces/ns/pods/p/status", "application/strategic-merge-patch+json")
    conds = {c["type"]: c for c in body["status"]["conditions"]}
    assert list(conds) == list(KUBELET_CONDITIONS)
    assert conds["ContainersReady"]["status"] == "True"
    assert (conds["Ready"]["status"], conds["Ready"]["reason"], conds["Ready"]["message"]) == (
        "False", "ReadinessGatesNotReady", 'corresponding condition of pod readiness gate "%s" does not exist.' % GATE)

    # Meanwhile on the server: the gate condition set True. The stale patch leaves it, and a stale waiting state goes.
    server = copy.deepcopy(stale)
    server["status"]["conditions"].append({"type": GATE, "status": "True"})
    merged = merge.strategic_merge_patch(server, body)
    assert {c["type"]: c["status"] for c in merged["status"]["conditions"]}[GATE] == "True"
    assert merged["status"]["containerStatuses"][0]["state"] == {"running": {"startedAt": "2025-01-01T00:00:01Z"}}

    # The agent reads the pod again (the gate True): Ready now, and still no gate condition in its patch.
    w.update(dict(merged, metadata=dict(merged["metadata"], resourceVersion="6")))
    w.write_status()
    conds = {c["type"]: c for c in sent[-1][2]["status"]["conditions"]}
    assert GATE not in conds and (conds["Ready"]["status"], conds["Ready"]["reason"], conds["Ready"]["message"]) == ("True", None, None)
    merged = merge.strategic_merge_patch(merged, sent[-1][2])
    ready = next(c for c in merged["status"]["conditions"] if c["type"] == "Ready")
    assert "reason" not in ready and "message" not in ready   # the old reason and message are gone, not left beside True


def test_a_readiness_gate_holds_ready_and_the_pods_service_until_set(cluster, world):
    name, out = world
    ns = cluster.namespace(name)
    cluster.agent(name, cluster.node(name))
    port = free_port()
    cluster.create("/api/v1/namespaces/%s/services" % ns, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "gated"},
                                                           "spec": {"selector": {"app": "gated"}, "ports": [{"port": port}]}})
    body = pod_body("gated", ["--port", str(port)], node=name, restartPolicy="Always", readinessGates=[{"conditionType": GATE}],
                    container={"ports": [{"containerPort": port}]})
    body["metadata"]["labels"] = {"app": "gated"}
    cluster.create("/api/v1/namespaces/%s/pods" % ns, body)

    def conds():
        return {c["type"]: c for c in ((cluster.pod(ns, "gated") or {}).get("status") or {}).get("conditions") or []}

    def endpoints():
        ep = cluster.client.get_or_none("/api/v1/namespaces/%s/endpoints/gated" % ns) or {}
        subset = (ep.get("subsets") or [{}])[0]
        return [a["ip"] for a in subset.get("addresses") or []], [a["ip"] for a in subset.get("notReadyAddresses") or []]

    def set_gate(status):
        cluster.client.request("PATCH", "/api/v1/namespaces/%s/pods/gated/status" % ns,
                               {"status": {"conditions": [{"type": GATE, "status": status}]}}, ctype="application/strategic-merge-patch+json")

    wait_for(lambda: conds().get("ContainersReady", {}).get("status") == "True", what="containers ready")
    ready = conds()["Ready"]
    assert (ready["status"], ready["reason"], ready["message"]) == (
        "False", "ReadinessGatesNotReady", 'corresponding condition of pod readiness gate "%s" does not exist.' % GATE)
    wait_for(lambda: endpoints() == ([], ["127.0.0.1"]), what="not-ready address")
    # The API double's pod proxy reaches the agent's pod (in its node's network, on a loopback node).
    assert cluster.client.request("GET", "/api/v1/namespaces/%s/pods/gated/proxy/" % ns) is None

    set_gate("True")
    wait_for(lambda: conds()["Ready"]["status"] == "True", what="Ready")
    assert conds()[GATE]["status"] == "True"   # the agent's Ready write kept it
    wait_for(lambda: endpoints() == (["127.0.0.1"], []), what="ready address")

    set_gate("False")
    wait_for(lambda: conds()["Ready"]["status"] == "False", what="not Ready")
    c = conds()
    assert c["Ready"]["message"] == 'the status of pod readiness gate "%s" is not "True", but False' % GATE
    assert c[GATE]["status"] == "False" and c["ContainersReady"]["status"] == "True"
    wait_for(lambda: endpoints() == ([], ["127.0.0.1"]), what="back among the not-ready addresses")
