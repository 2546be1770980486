"""The switch path's cluster calls (module_utils/gpu_switch_k8s.py), the
gpu_mode_switch module and the gpu-mode command, against the API double and
two vLLM sleep-endpoint doubles (tests/doubles/vllm_sleep_double: the CPU
vLLM has no sleep mode).

What runs: the API double (real HTTPS, RBAC for ServiceAccount tokens, pod
readiness gates, Endpoints, the pod proxy, --fake-kubelet) with the vLLM
Deployments as the vllm role renders them for switch: sleep (readiness gate,
replicas 0 on creation), the gpu-mode ServiceAccount with the Role the
gpu_mode_cli role renders, and two sleep doubles the pods' IPs point at.
Every process is stopped by PID at the end, whatever the outcome."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("kubernetes")

from test_kube_api_double import TOKEN, Double, basic, run_module, wait_for  # noqa: E402

from ansible_collections.homelab.gpu_stack.plugins.module_utils import gpu_switch as gs  # noqa: E402
from ansible_collections.homelab.gpu_stack.plugins.module_utils.gpu_switch_k8s import (  # noqa: E402
    KubeError, KubeSwitchIO, UrllibTransport)

ROOT = Path(__file__).resolve().parents[2]
NS = "llm"
GATE = "gpu-stack.homelab/awake"
# Two loopback addresses, one per node: the API server's proxy refuses a
# loopback pod address unless it is the node's own (the double's one exception).
NODES = {"node-a": "127.0.0.2", "node-b": "127.0.0.3"}


def _port_free_on_both():
    """The pods' port: one both sleep doubles can bind (each xdist worker runs its own cluster)."""
    while True:
        with socket.socket() as a, socket.socket() as b:
            a.bind((NODES["node-a"], 0))
            port = a.getsockname()[1]
            try:
                b.bind((NODES["node-b"], port))
            except OSError:
                continue
            return port


PORT = _port_free_on_both()
MODELS = [("chat", "node-a", ["ml"], 1), ("reason", "node-b", ["r1"], 2)]


def stack_models():
    return [{"name": name, "node": "nuc", "node_name": node, "spec": {"served_name": name + "-served", "modes": modes},
             "switch": "sleep", "sleep_level": level, "plan": {"sleep_residual_bytes": 2 ** 30},
             "service": {"name": name}} for name, node, modes, level in MODELS]


def objects():
    out = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}]
    for name, node, _modes, _level in MODELS:
        labels = {"app.kubernetes.io/name": "vllm", "app.kubernetes.io/instance": name}
        out.append({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": NS, "labels": labels},
                    "spec": {"replicas": 0, "strategy": {"type": "Recreate"}, "selector": {"matchLabels": labels},
                             "template": {"metadata": {"labels": labels}, "spec": {
                                 "readinessGates": [{"conditionType": GATE}],
                                 "nodeSelector": {"kubernetes.io/hostname": node},
                                 "containers": [{"name": "vllm", "image": "vllm/vllm-openai:v0.32.0",
                                                 "ports": [{"name": "http", "containerPort": PORT}]}]}}}})
        out.append({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": NS, "labels": labels},
                    "spec": {"selector": labels, "ports": [{"name": "http", "port": PORT, "targetPort": "http"}]}})
    return out


def gpu_mode_objects():
    """The gpu_mode_cli role's template, rendered by Ansible for this stack."""
    stack = {"labels": {"gpu-mode": {"app.kubernetes.io/name": "gpu-mode"}}, "namespace": NS, "mode": "ml",
             "modes": ["ml", "r1", "gaming"], "awake_condition": GATE, "vllm_port": PORT,
             "models": [dict(m, spec=dict(m["spec"]), plan=m["plan"]) for m in stack_models()],
             "gateway": {"chains": {"chat": ["cpu", "cloud"], "reason": ["cpu", "cloud"]}}, "chat_through_proxy": True}
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_STDOUT_CALLBACK="json",
               ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_NOCOLOR="1")
    extra = {"gpu_mode_cli_stack": stack, "gpu_mode_cli_account": "gpu-mode", "gpu_mode_cli_configmap": "gpu-modes"}
    proc = subprocess.run([str(Path(sys.executable).with_name("ansible")), "localhost", "-m", "ansible.builtin.debug",
                           "-a", "msg={{ lookup('homelab.gpu_stack.template', '%s', yaml=true) }}"
                           % (ROOT / "roles/gpu_mode_cli/templates/objects.yaml.j2"),
                           "-e", json.dumps(extra)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    doc, _end = json.JSONDecoder().raw_decode(proc.stdout[proc.stdout.index("{"):])
    return doc["plays"][0]["tasks"][0]["hosts"]["localhost"]["msg"]


def apply(kad, obj):
    kind = obj["kind"]
    base = "/apis/%s" % obj["apiVersion"] if "/" in obj["apiVersion"] else "/api/v1"
    plural = {"Namespace": "namespaces", "Deployment": "deployments", "Service": "services", "ConfigMap": "configmaps",
              "ServiceAccount": "serviceaccounts", "Role": "roles", "RoleBinding": "rolebindings", "Secret": "secrets"}[kind]
    path = base + ("" if kind == "Namespace" else "/namespaces/%s" % obj["metadata"]["namespace"]) + "/" + plural
    code, body = admin(kad, "POST", path, obj)
    assert code == 201, body


def admin(kad, method, path, body=None, ctype="application/json"):
    transport = AdminTransport(kad)
    try:
        return 201 if method == "POST" else 200, transport.request(method, path, body, ctype)
    except KubeError as exc:
        return exc.status, str(exc)


class AdminTransport(UrllibTransport):
    """The admin client certificate of the double's kubeconfig (what the module's kubeconfig holds)."""

    def __init__(self, kad):
        import ssl
        UrllibTransport.__init__(self, kad.url, token="unused")
        self.context = ssl.create_default_context(cafile=str(kad.data / "tls" / "ca.crt"))
        self.context.load_cert_chain(str(kad.data / "tls" / "admin.crt"), str(kad.data / "tls" / "admin.key"))

    def request(self, method, path, body=None, ctype="application/json", timeout=30):
        from urllib.error import HTTPError
        from urllib.request import Request, urlopen
        req = Request(self.server + path, data=json.dumps(body).encode() if body is not None else None, method=method,
                      headers={"Content-Type": ctype, "Accept": "application/json"})
        try:
            with urlopen(req, timeout=timeout, context=self.context) as resp:
                return resp.read().decode()
        except HTTPError as exc:
            raise KubeError(exc.code, exc.read().decode())


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("switch")
    kad = Double(tmp)
    procs = []
    kad.start()
    try:
        if not (tls := kad.data / "tls" / "admin.crt").exists():
            pytest.fail("the double wrote no admin certificate at %s" % tls)
        for node, addr in NODES.items():
            info = {"labels": {}, "taints": [], "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                    "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                    "addresses": [{"type": "InternalIP", "address": addr}, {"type": "Hostname", "address": node}],
                    "kubeletVersion": "v1.33.5+k3s1", "containerRuntimeVersion": "containerd://2.0.0-k3s1"}
            code, body = kad.raw("POST", "/v1-k3s-double/nodes/" + node, info, basic(TOKEN))
            assert code == 200, body
        for name, node, _modes, _level in MODELS:
            log = open(tmp / ("%s.log" % name), "w")
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "vllm_sleep_double", "--listen", "%s:%d" % (NODES[node], PORT),
                 "--served-name", name + "-served", "--hold-s", "5"],
                env=dict(os.environ, PYTHONPATH=str(ROOT / "tests" / "doubles")), stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True))
        for obj in objects() + gpu_mode_objects():
            apply(kad, obj)
        secret = wait_for(lambda: json.loads(admin(kad, "GET", "/api/v1/namespaces/%s/secrets/gpu-mode-token" % NS)[1])
                          .get("data", {}).get("token"), what="the token controller")
        import base64
        token = base64.b64decode(secret).decode()
        kad_ca = (kad.data / "tls" / "ca.crt").read_text()
        yield {"kad": kad, "token": token, "ca": kad_ca, "tmp": tmp}
    finally:
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(5)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(p.pid, signal.SIGKILL)
        kad.stop()


class PodIPs:
    """The fake kubelet's pods get 10.42.0.N; point each at its node's loopback address,
    where its sleep double listens (what a CNI would route)."""

    def __init__(self, kad):
        self.kad = kad

    def fix(self):
        pods = json.loads(admin(self.kad, "GET", "/api/v1/namespaces/%s/pods" % NS)[1])["items"]
        for pod in pods:
            host = pod.get("status", {}).get("hostIP")
            if pod["status"].get("phase") == "Running" and host and pod["status"].get("podIP") != host:
                admin(self.kad, "PATCH", "/api/v1/namespaces/%s/pods/%s/status" % (NS, pod["metadata"]["name"]),
                      {"status": {"podIP": host, "podIPs": [{"ip": host}]}}, "application/strategic-merge-patch+json")


class DoubleIO(KubeSwitchIO):
    """The command's I/O (the ServiceAccount token over HTTPS), with the pods' addresses fixed as they start."""

    def __init__(self, cluster, **kw):
        KubeSwitchIO.__init__(self, UrllibTransport(cluster["kad"].url, cluster["token"], cluster["ca"]), NS, GATE,
                              PORT, wait_s=30, pause=self._pause, **kw)
        self.ips = PodIPs(cluster["kad"])

    def _pause(self, seconds):
        self.ips.fix()
        time.sleep(min(seconds, 0.2))

    def ready_pod(self, step, terminating=False):
        self.ips.fix()
        return KubeSwitchIO.ready_pod(self, step, terminating)


def endpoints(cluster, name):
    ep = json.loads(admin(cluster["kad"], "GET", "/api/v1/namespaces/%s/endpoints/%s" % (NS, name))[1])
    return [a["ip"] for s in ep.get("subsets") or [] for a in s.get("addresses") or []]


def test_bring_up_then_switch_both_ways_with_the_gateway_first(cluster):
    io = DoubleIO(cluster)
    first = gs.switch(stack_models(), "ml", io)
    # A sleep model never started starts alone and sleeps; the mode's starts and is routed.
    assert [e[1:] for e in first["events"]] == [("reason", "started asleep"), ("chat", "started"), ("chat", "routed")]
    assert endpoints(cluster, "chat") == [NODES["node-a"]] and endpoints(cluster, "reason") == []

    to_r1 = gs.switch(stack_models(), "r1", io)
    assert [e[1:] for e in to_r1["events"]] == [
        ("chat", "unrouted"), ("chat", "asleep"), ("reason", "awake"), ("reason", "routed")]
    assert endpoints(cluster, "chat") == [] and endpoints(cluster, "reason") == [NODES["node-b"]]
    # Level 2: the weights reloaded before the KV cache, through the pod proxy.
    calls = [line.split(" ", 2)[2] for line in (cluster["tmp"] / "reason.log").read_text().splitlines()
             if line.startswith("vllm-sleep-double: POST") and "/v1/" not in line]
    assert calls[-3:] == ["/wake_up?tags=weights", "/collective_rpc", "/wake_up?tags=kv_cache"]

    gaming = gs.switch(stack_models(), "gaming", io)
    assert [e[1:] for e in gaming["events"]] == [("reason", "unrouted"), ("reason", "asleep")]
    assert endpoints(cluster, "chat") == [] and endpoints(cluster, "reason") == []
    assert [io.state(s) for s in gs.plan_switch(stack_models(), "gaming")] == [gs.ASLEEP, gs.ASLEEP]

    back = gs.switch(stack_models(), "ml", io)
    assert [e[1:] for e in back["events"]] == [("chat", "awake"), ("chat", "routed")]
    again = gs.switch(stack_models(), "ml", io)
    assert not again["changed"]


def test_the_token_can_do_nothing_but_the_switch(cluster):
    t = UrllibTransport(cluster["kad"].url, cluster["token"], cluster["ca"])
    for method, path, body, ctype in [
            ("GET", "/api/v1/namespaces/%s/secrets" % NS, None, "application/json"),
            ("GET", "/api/v1/namespaces/kube-system/pods", None, "application/json"),
            ("DELETE", "/apis/apps/v1/namespaces/%s/deployments/chat" % NS, None, "application/json"),
            ("PATCH", "/apis/apps/v1/namespaces/%s/deployments/chat" % NS, {"spec": {"replicas": 3}},
             "application/merge-patch+json"),
            ("GET", "/api/v1/namespaces/%s/configmaps/other" % NS, None, "application/json")]:
        with pytest.raises(KubeError) as info:
            t.request(method, path, body, ctype)
        assert info.value.status == 403, (method, path)
        assert 'User "system:serviceaccount:llm:gpu-mode" cannot' in str(info.value)
    # ... and what the switch needs is allowed.
    assert json.loads(t.request("GET", "/api/v1/namespaces/%s/configmaps/gpu-modes" % NS))["data"]["modes.json"]


def test_the_gpu_mode_command(cluster, tmp_path):
    conf = tmp_path / "gpu-mode.json"
    conf.write_text(json.dumps({"server": cluster["kad"].url, "ca_data": cluster["ca"], "token": cluster["token"],
                                "namespace": NS, "configmap": "gpu-modes"}))
    conf.chmod(0o600)
    env = dict(os.environ, GPU_MODE_CONFIG=str(conf), PYTHONPATH=str(ROOT / ".ansible" / "collections"))
    cli = [sys.executable, str(ROOT / "roles/gpu_mode_cli/files/gpu-mode.py")]
    PodIPs(cluster["kad"]).fix()
    t0 = time.monotonic()
    out = subprocess.run(cli + ["status"], env=env, capture_output=True, text=True, timeout=30, check=False)
    took = time.monotonic() - t0
    assert out.returncode == 0, out.stderr
    assert "chat" in out.stdout and "reason" in out.stdout and "the gateway answers" in out.stdout
    print("gpu-mode status took %.2f s:\n%s" % (took, out.stdout))
    bad = subprocess.run(cli + ["nope"], env=env, capture_output=True, text=True, timeout=30, check=False)
    assert bad.returncode == 2 and "'nope' is not a mode (modes: ml, r1, gaming)" in bad.stderr


def test_the_module_through_its_kubeconfig(cluster):
    """gpu_mode_switch (the kubernetes client's transport, the admin kubeconfig): check mode
    reads and changes nothing; a switch to the mode the models are in changes nothing."""
    kad = cluster["kad"]
    gs.switch(stack_models(), "ml", DoubleIO(cluster))  # xdist may run this test first, in its own cluster
    args = {"mode": "r1", "models": stack_models(), "namespace": NS, "awake_condition": GATE, "vllm_port": PORT,
            "wait_s": 30}
    checked = run_module(kad, "homelab.gpu_stack.gpu_mode_switch", args, check=True)
    assert checked["changed"] is True, json.dumps(checked)[:3000]
    assert [(s["name"], s["before"], s["arrive"]) for s in checked["steps"]] == [
        ("chat", "awake", False), ("reason", "asleep", True)]
    assert endpoints(cluster, "chat") == [NODES["node-a"]]
    same = run_module(kad, "homelab.gpu_stack.gpu_mode_switch", dict(args, mode="ml"))
    assert same["changed"] is False and same["events"] == [], same
