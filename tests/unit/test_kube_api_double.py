"""The Kubernetes API server double (tests/doubles/kube_api_double), driven
the way the roles drive a real one: kubernetes.core modules run ad hoc by
ansible, and the `kubernetes` Python client's dynamic client and watch.

The double runs as a real subprocess on a free loopback port with
--fake-kubelet (bound pods become Running/Ready on paper, deletions finish),
and is stopped by PID (SIGTERM, then SIGKILL) whatever the outcome."""

import base64
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

kubernetes = pytest.importorskip("kubernetes")
from kubernetes import client as k8s_client, config as k8s_config, dynamic, watch  # noqa: E402
from kubernetes.client.rest import ApiException  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
DOUBLES = ROOT / "tests" / "doubles"
TOKEN = "K10deadbeef::server:s3cret"
NS = "default"


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Double:
    def __init__(self, tmp, grace=3600):
        self.tmp, self.grace = tmp, grace
        self.port = _free_port()
        self.url = "https://127.0.0.1:%d" % self.port
        self.data = tmp / "data"
        self.kubeconfig = tmp / "k3s.yaml"
        (tmp / "token").write_text(TOKEN + "\n")
        self.proc = None

    def start(self):
        crd = self.tmp / "certificate-crd.yaml"
        if not crd.exists():
            crd.write_text(json.dumps(_certificate_crd()))
        cmd = [sys.executable, "-m", "kube_api_double", "serve", "--data-dir", str(self.data), "--listen", "127.0.0.1:%d" % self.port,
               "--tls-san", "server.example", "--token-file", str(self.tmp / "token"), "--kubeconfig-out", str(self.kubeconfig),
               "--kubeconfig-server", self.url, "--node-grace-s", str(self.grace), "--fake-kubelet", "--crd-schema", str(crd)]
        self.log = open(self.tmp / "double.log", "a")
        env = dict(os.environ, PYTHONPATH=str(DOUBLES))
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail("double died:\n" + (self.tmp / "double.log").read_text()[-3000:])
            try:
                urllib.request.urlopen(self.url + "/healthz", context=self.ssl_ctx(), timeout=2).read()
                return
            except (OSError, urllib.error.URLError):
                time.sleep(0.1)
        pytest.fail("double did not come up")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.log.close()

    def ssl_ctx(self):
        ctx = ssl.create_default_context(cafile=str(self.data / "tls" / "ca.crt"))
        return ctx

    def raw(self, method, path, body=None, auth=None):
        req = urllib.request.Request(self.url + path, method=method, data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Content-Type": "application/json"})
        if auth:
            req.add_header("Authorization", auth)
        try:
            with urllib.request.urlopen(req, context=self.ssl_ctx(), timeout=10) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def register(self, name, labels=None, taints=None, allocatable=None):
        info = {"labels": labels or {}, "taints": taints or [],
                "capacity": allocatable or {"cpu": "4", "memory": "8Gi", "pods": "110"},
                "allocatable": allocatable or {"cpu": "4", "memory": "8Gi", "pods": "110"},
                "addresses": [{"type": "InternalIP", "address": "10.0.0.%d" % (len(name) + 10)}, {"type": "Hostname", "address": name}],
                "kubeletVersion": "v1.33.5+k3s1", "containerRuntimeVersion": "containerd://2.0.0-k3s1"}
        code, body = self.raw("POST", "/v1-k3s-double/nodes/" + name, info, basic(TOKEN))
        assert code == 200, body
        return json.loads(body)


def basic(token):
    return "Basic " + base64.b64encode(("node:" + token).encode()).decode()


def _certificate_crd():
    import yaml
    schema = yaml.safe_load((ROOT / "tests/render/fixtures/cert-manager/certificate-v1-openapiv3.yaml").read_text())
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "certificates.cert-manager.io"},
            "spec": {"group": "cert-manager.io", "scope": "Namespaced",
                     "names": {"plural": "certificates", "singular": "certificate", "kind": "Certificate", "listKind": "CertificateList"},
                     "versions": [{"name": "v1", "served": True, "storage": True, "subresources": {"status": {}},
                                   "schema": {"openAPIV3Schema": schema}}]}}


@pytest.fixture(scope="module")
def kad(tmp_path_factory):
    d = Double(tmp_path_factory.mktemp("kad"))
    d.start()
    d.register("server-1", labels={"node-role.kubernetes.io/control-plane": "true"})
    d.register("agent-1", labels={"role": "cpu"})
    yield d
    d.stop()


@pytest.fixture
def dyn(kad):
    return dynamic.DynamicClient(k8s_config.new_client_from_config(str(kad.kubeconfig)))


def run_module(kad, module, args, check=False):
    args = dict(args, kubeconfig=str(kad.kubeconfig))
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
               ANSIBLE_STDOUT_CALLBACK="json", ANSIBLE_NOCOLOR="1")
    cmd = [str(Path(sys.executable).with_name("ansible")), "localhost", "-m", module, "-a", json.dumps(args),
           "-e", "ansible_python_interpreter=%s" % sys.executable]
    if check:
        cmd.append("--check")
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    try:
        doc, _end = json.JSONDecoder().raw_decode(proc.stdout[proc.stdout.index("{"):])
    except ValueError:
        pytest.fail("no JSON from ansible:\n%s" % (proc.stdout + proc.stderr)[-4000:])
    return doc["plays"][0]["tasks"][0]["hosts"]["localhost"]


def deployment(name, replicas=1, labels=None, extra_spec=None, node_selector=None):
    labels = labels or {"app": name}
    d = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": NS},
         "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                  "template": {"metadata": {"labels": labels},
                               "spec": {"containers": [{"name": "app", "image": "nginx:1.27", "ports": [{"containerPort": 80}]}]}}}}
    if node_selector:
        d["spec"]["template"]["spec"]["nodeSelector"] = node_selector
    d["spec"].update(extra_spec or {})
    return d


def wait_for(fn, timeout=15, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.2)
    pytest.fail("timed out waiting for " + what)


def ssa(dyn, body, manager="test", force=None):
    res = dyn.resources.get(api_version=body["apiVersion"], kind=body["kind"])
    return res.server_side_apply(body=body, field_manager=manager, force_conflicts=force)


# --------------------------------------------------------------------------- auth, TLS, discovery

def test_auth_needs_client_cert_or_node_token(kad):
    code, body = kad.raw("GET", "/api/v1/namespaces")
    assert code == 401
    assert json.loads(body)["reason"] == "Unauthorized"
    assert kad.raw("GET", "/api/v1/namespaces", auth=basic("wrong"))[0] == 401
    assert kad.raw("POST", "/v1-k3s-double/nodes/x", {}, basic("wrong"))[0] == 401
    assert kad.raw("GET", "/api/v1/namespaces", auth=basic(TOKEN))[0] == 200
    code, ca = kad.raw("GET", "/cacerts")
    assert code == 200 and ca.startswith(b"-----BEGIN CERTIFICATE-----")
    assert (kad.kubeconfig.stat().st_mode & 0o777) == 0o600


def test_discovery_and_default_namespaces(dyn):
    v1 = k8s_client.CoreV1Api(dyn.client)
    names = {n.metadata.name: n.metadata.labels for n in v1.list_namespace().items}
    for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
        assert names[ns]["kubernetes.io/metadata.name"] == ns
    dep = dyn.resources.get(api_version="apps/v1", kind="Deployment")
    assert "scale" in dep.subresources and "status" in dep.subresources
    assert "eviction" in dyn.resources.get(api_version="v1", kind="Pod").subresources
    assert dyn.resources.get(api_version="helm.cattle.io/v1", kind="HelmChart").namespaced
    assert dyn.resources.get(api_version="cert-manager.io/v1", kind="Certificate")   # given by --crd-schema
    with pytest.raises(kubernetes.dynamic.exceptions.ResourceNotFoundError):
        dyn.resources.get(api_version="cert-manager.io/v1", kind="ClusterIssuer")
    assert dyn.version["kubernetes"]["gitVersion"] == "v1.33.5+k3s1"


# --------------------------------------------------------------------------- apply, validation

def test_module_ssa_reapply_is_unchanged(kad, dyn):
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa-cm", "namespace": NS, "labels": {"a": "1", "b": "2"}},
          "data": {"k": "v"}}
    args = {"definition": cm, "apply": True, "server_side_apply": {"field_manager": "ansible"}}
    r1 = run_module(kad, "kubernetes.core.k8s", args)
    assert r1.get("changed") is True, r1
    rv = r1["result"]["metadata"]["resourceVersion"]
    r2 = run_module(kad, "kubernetes.core.k8s", args)
    assert r2.get("changed") is False, r2
    assert r2["result"]["metadata"]["resourceVersion"] == rv
    # Check mode goes through dryRun=All and changes nothing.
    cm2 = json.loads(json.dumps(cm))
    cm2["data"]["k"] = "w"
    r3 = run_module(kad, "kubernetes.core.k8s", dict(args, definition=cm2), check=True)
    assert r3.get("changed") is True and r3["result"]["data"]["k"] == "w", r3
    assert dyn.resources.get(api_version="v1", kind="ConfigMap").get(name="ssa-cm", namespace=NS).data.k == "v"
    # A label the manager stops applying goes away; one another manager owns stays.
    ssa(dyn, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa-cm", "namespace": NS, "labels": {"c": "3"}}}, manager="other")
    del cm["metadata"]["labels"]["b"]
    r4 = run_module(kad, "kubernetes.core.k8s", dict(args, definition=cm))
    assert r4.get("changed") is True
    assert r4["result"]["metadata"]["labels"] == {"a": "1", "c": "3"}


def test_ssa_conflict_and_force(dyn):
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "conflict-cm", "namespace": NS}, "data": {"k": "one"}}
    ssa(dyn, body, manager="first")
    body["data"]["k"] = "two"
    with pytest.raises(ApiException) as e:
        ssa(dyn, body, manager="second")
    assert e.value.status == 409
    msg = json.loads(e.value.body)["message"]
    assert msg == 'Apply failed with 1 conflict: conflict with "first" using v1: .data.k', msg
    assert ssa(dyn, body, manager="second", force=True).data.k == "two"
    mf = {m.manager: m for m in dyn.resources.get(api_version="v1", kind="ConfigMap").get(name="conflict-cm", namespace=NS).metadata.managedFields}
    assert mf["second"].fieldsV1.to_dict() == {"f:data": {"f:k": {}}} and "first" not in mf


def test_unknown_field_rejected(kad, dyn):
    d = deployment("strict")
    d["spec"]["foo"] = 1
    r = run_module(kad, "kubernetes.core.k8s", {"definition": d, "apply": True, "server_side_apply": {"field_manager": "ansible"}})
    assert r.get("failed") and 'unknown field \\"spec.foo\\"' in r["msg"], r
    with pytest.raises(ApiException) as e:
        dyn.resources.get(api_version="apps/v1", kind="Deployment").create(body=d, namespace=NS)
    assert e.value.status == 422
    st = json.loads(e.value.body)
    assert st["reason"] == "Invalid" and st["details"]["causes"][0]["field"] == "spec.foo"
    assert st["message"].startswith('Deployment.apps "strict" is invalid: spec.foo: strict decoding error: unknown field "spec.foo"')


def test_helmchart_custom_resource_is_validated(dyn):
    """k3s serves helm.cattle.io/v1 HelmChart from start; the CRD schema must resolve ObjectMeta."""
    charts = dyn.resources.get(api_version="helm.cattle.io/v1", kind="HelmChart")
    chart = {"apiVersion": "helm.cattle.io/v1", "kind": "HelmChart", "metadata": {"name": "plugin", "namespace": "kube-system"},
             "spec": {"chart": "nvidia-device-plugin", "repo": "https://nvidia.github.io/k8s-device-plugin", "version": "0.17.1"}}
    charts.create(body=chart, namespace="kube-system")
    assert charts.get(name="plugin", namespace="kube-system").spec.version == "0.17.1"
    chart["metadata"]["name"] = "bad"
    chart["spec"]["bogus"] = True
    with pytest.raises(ApiException) as e:
        charts.create(body=chart, namespace="kube-system")
    assert e.value.status == 422 and "spec.bogus" in e.value.body


def test_immutable_fields(dyn):
    d = deployment("immut")
    ssa(dyn, d)
    d["spec"]["selector"]["matchLabels"] = {"app": "immut", "tier": "x"}
    d["spec"]["template"]["metadata"]["labels"] = {"app": "immut", "tier": "x"}
    with pytest.raises(ApiException) as e:
        ssa(dyn, d)
    assert e.value.status == 422 and "spec.selector" in e.value.body and "field is immutable" in e.value.body
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "immut", "namespace": NS},
           "spec": {"selector": {"app": "immut"}, "ports": [{"port": 80}]}}
    got = ssa(dyn, svc)
    ip = got.spec.clusterIP
    assert ip.startswith("10.43.") and got.spec.ports[0].targetPort == 80 and got.spec.ports[0].protocol == "TCP"
    assert ssa(dyn, svc).metadata.resourceVersion == got.metadata.resourceVersion
    svc["spec"]["clusterIP"] = "10.43.99.99" if ip != "10.43.99.99" else "10.43.99.98"
    with pytest.raises(ApiException) as e:
        ssa(dyn, svc)
    assert e.value.status == 422 and "may not change once set" in e.value.body
    with pytest.raises(ApiException) as e:
        ssa(dyn, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "nope"}})
    assert e.value.status == 404 and json.loads(e.value.body)["message"] == 'namespaces "nope" not found'
    with pytest.raises(ApiException) as e:
        ssa(dyn, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "Bad_Name", "namespace": NS}})
    assert e.value.status == 422 and "RFC 1123 subdomain" in e.value.body


def test_label_and_annotation_keys_are_qualified_names(dyn):
    """A real API server refuses a key whose prefix is no DNS subdomain ('_' in homelab.gpu_stack/...)."""
    for meta in ({"labels": {"homelab.gpu_stack/gpu-worker": "true"}},
                 {"annotations": {"homelab.gpu_stack/plan": "{}"}},
                 {"labels": {"ok": "not a value"}}):
        with pytest.raises(ApiException) as e:
            ssa(dyn, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": dict(meta, name="keys", namespace=NS)})
        assert e.value.status == 422 and "Invalid value" in e.value.body, meta
    d = deployment("keys")
    d["spec"]["template"]["metadata"]["annotations"] = {"bad_prefix.example/x": "1"}
    with pytest.raises(ApiException) as e:
        ssa(dyn, d)
    assert e.value.status == 422 and "spec.template.metadata.annotations" in e.value.body
    ok = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
        "name": "keys", "namespace": NS, "labels": {"gpu-stack.homelab/gpu-worker": "true", "a_b.c": ""},
        "annotations": {"gpu-stack.homelab/plan": "{}", "Upper/Case": "annotations are checked lowercased"}}}
    assert ssa(dyn, ok).metadata.labels["gpu-stack.homelab/gpu-worker"] == "true"


# --------------------------------------------------------------------------- controllers

def test_deployment_wait_and_scale(kad, dyn):
    d = deployment("web", replicas=2)
    r = run_module(kad, "kubernetes.core.k8s", {"definition": d, "apply": True, "server_side_apply": {"field_manager": "ansible"},
                                                "wait": True, "wait_timeout": 30, "wait_sleep": 1})
    assert r.get("changed") and not r.get("failed"), r
    st = r["result"]["status"]
    assert st["availableReplicas"] == 2 and st["observedGeneration"] == 1
    conds = {c["type"]: c["reason"] for c in st["conditions"]}
    assert conds == {"Available": "MinimumReplicasAvailable", "Progressing": "NewReplicaSetAvailable"}
    pods = k8s_client.CoreV1Api(dyn.client).list_namespaced_pod(NS, label_selector="app=web").items
    assert len(pods) == 2 and all(p.metadata.owner_references[0].controller for p in pods)
    h = pods[0].metadata.labels["pod-template-hash"]
    assert pods[0].metadata.name.startswith("web-%s-" % h) and len(h) == 10
    for n in (0, 2):
        r = run_module(kad, "kubernetes.core.k8s_scale", {"kind": "Deployment", "name": "web", "namespace": NS, "replicas": n,
                                                          "wait": True, "wait_timeout": 30, "wait_sleep": 1})
        assert r.get("changed") and not r.get("failed"), r
        assert r["result"]["spec"]["replicas"] == n and r["result"]["status"].get("availableReplicas", 0) == n
    # Rolling update: a new template gets a new ReplicaSet and the old one drains.
    d["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:1.28"
    r = run_module(kad, "kubernetes.core.k8s", {"definition": d, "apply": True, "server_side_apply": {"field_manager": "ansible",
                                                                                                      "force_conflicts": True},
                                                "wait": True, "wait_timeout": 30, "wait_sleep": 1})
    assert not r.get("failed") and r["result"]["status"]["updatedReplicas"] == 2, r
    wait_for(lambda: {p.spec.containers[0].image for p in k8s_client.CoreV1Api(dyn.client)
                      .list_namespaced_pod(NS, label_selector="app=web").items} == {"nginx:1.28"}, what="old pods gone")


def test_drain_evicts_and_pdb_blocks(kad, dyn):
    v1 = k8s_client.CoreV1Api(dyn.client)
    ssa(dyn, deployment("drainme", replicas=1))

    def node_of():
        pods = [p for p in v1.list_namespaced_pod(NS, label_selector="app=drainme").items
                if not p.metadata.deletion_timestamp and p.status.phase == "Running"]
        return pods[0].spec.node_name if len(pods) == 1 else None
    first = wait_for(node_of, what="drainme running")
    r = run_module(kad, "kubernetes.core.k8s_drain", {"name": first, "state": "drain",
                                                      "delete_options": {"wait_timeout": 10, "wait_sleep": 1, "ignore_daemonsets": True}})
    assert r.get("changed") and not r.get("failed"), r
    assert v1.read_node(first).spec.unschedulable is True

    def rescheduled():
        n = node_of()
        return n if n and n != first else None

    second = wait_for(rescheduled, what="pod rescheduled elsewhere")
    r = run_module(kad, "kubernetes.core.k8s_drain", {"name": first, "state": "uncordon"})
    assert r.get("changed") and not v1.read_node(first).spec.unschedulable
    ssa(dyn, {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "drainme-pdb", "namespace": NS},
              "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "drainme"}}}})
    pdb_rt = dyn.resources.get(api_version="policy/v1", kind="PodDisruptionBudget")
    wait_for(lambda: (pdb_rt.get(name="drainme-pdb", namespace=NS).status or {}).get("currentHealthy") == 1, what="pdb status")
    st = pdb_rt.get(name="drainme-pdb", namespace=NS).status
    assert (st.desiredHealthy, st.disruptionsAllowed, st.expectedPods) == (1, 0, 1)
    r = run_module(kad, "kubernetes.core.k8s_drain", {"name": second, "state": "drain",
                                                      "delete_options": {"wait_timeout": 3, "wait_sleep": 1}})
    assert r.get("failed"), r
    assert "Cannot evict pod as it would violate the pod's disruption budget." in r["msg"], r
    with pytest.raises(ApiException) as e:
        name = [p.metadata.name for p in v1.list_namespaced_pod(NS, label_selector="app=drainme").items][0]
        v1.create_namespaced_pod_eviction(name, NS, k8s_client.V1Eviction(metadata=k8s_client.V1ObjectMeta(name=name, namespace=NS)))
    assert e.value.status == 429
    cause = json.loads(e.value.body)["details"]["causes"][0]
    assert cause == {"reason": "DisruptionBudget", "message": "The disruption budget drainme-pdb needs 1 healthy pods and has 1 currently"}
    run_module(kad, "kubernetes.core.k8s_drain", {"name": second, "state": "uncordon"})


def test_gpu_pod_stays_pending(dyn):
    v1 = k8s_client.CoreV1Api(dyn.client)
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "gpu", "namespace": NS},
           "spec": {"containers": [{"name": "c", "image": "vllm/vllm-openai:v0.10.1", "resources": {"limits": {"nvidia.com/gpu": 1}}}]}}
    ssa(dyn, pod)

    def unsched():
        c = [c for c in (v1.read_namespaced_pod("gpu", NS).status.conditions or []) if c.type == "PodScheduled"]
        return c[0] if c and c[0].status == "False" else None
    c = wait_for(unsched, what="PodScheduled False")
    assert c.reason == "Unschedulable"
    assert c.message.startswith("0/2 nodes are available: 2 Insufficient nvidia.com/gpu."), c.message
    p = v1.read_namespaced_pod("gpu", NS)
    assert p.status.phase == "Pending" and not p.spec.node_name
    assert p.spec.containers[0].resources.requests == {"nvidia.com/gpu": "1"}
    with pytest.raises(ApiException) as e:
        ssa(dyn, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "rc", "namespace": NS},
                  "spec": {"runtimeClassName": "nvidia", "containers": [{"name": "c", "image": "x:1"}]}})
    assert e.value.status == 403
    assert json.loads(e.value.body)["message"] == 'pods "rc" is forbidden: pod rejected: RuntimeClass "nvidia" not found'


def test_a_host_port_fits_once_per_node(dyn):
    v1 = k8s_client.CoreV1Api(dyn.client)
    for i in range(3):
        ssa(dyn, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "hp-%d" % i, "namespace": NS},
                  "spec": {"containers": [{"name": "c", "image": "x:1", "ports": [{"containerPort": 80, "hostPort": 9000}]}]}})

    def placed():
        pods = [v1.read_namespaced_pod("hp-%d" % i, NS) for i in range(3)]
        return pods if sum(1 for p in pods if p.spec.node_name) == 2 and any(
            c.type == "PodScheduled" and c.status == "False" for p in pods for c in p.status.conditions or []) else None
    pods = wait_for(placed, what="two pods placed, one unschedulable")
    assert len({p.spec.node_name for p in pods if p.spec.node_name}) == 2
    left = next(p for p in pods if not p.spec.node_name)
    msg = next(c.message for c in left.status.conditions if c.type == "PodScheduled")
    assert msg.startswith("0/2 nodes are available: 2 node(s) didn't have free ports for the requested pod ports."), msg
    for i in range(3):
        v1.delete_namespaced_pod("hp-%d" % i, NS, grace_period_seconds=0)


def test_watch_sees_add_modify_delete(dyn):
    v1 = k8s_client.CoreV1Api(dyn.client)
    rv = v1.list_namespaced_config_map(NS).metadata.resource_version
    seen = []
    w = watch.Watch()

    def consume():
        for ev in w.stream(v1.list_namespaced_config_map, NS, resource_version=rv, timeout_seconds=10, label_selector="w=1"):
            seen.append((ev["type"], ev["object"].metadata.name))
            if ev["type"] == "DELETED":
                w.stop()
    t = threading.Thread(target=consume)
    t.start()
    time.sleep(0.3)
    v1.create_namespaced_config_map(NS, {"metadata": {"name": "watched", "labels": {"w": "1"}}, "data": {"a": "1"}})
    v1.patch_namespaced_config_map("watched", NS, {"data": {"a": "2"}})
    v1.delete_namespaced_config_map("watched", NS)
    t.join(15)
    assert seen == [("ADDED", "watched"), ("MODIFIED", "watched"), ("DELETED", "watched")]


def test_restart_keeps_state(kad, dyn):
    cm = ssa(dyn, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "persist", "namespace": NS}, "data": {"x": "1"}})
    ca = (kad.data / "tls" / "ca.crt").read_bytes()
    kad.stop()
    kad.start()
    assert (kad.data / "tls" / "ca.crt").read_bytes() == ca
    dyn2 = dynamic.DynamicClient(k8s_config.new_client_from_config(str(kad.kubeconfig)))
    got = dyn2.resources.get(api_version="v1", kind="ConfigMap").get(name="persist", namespace=NS)
    assert got.metadata.uid == cm.metadata.uid and got.metadata.resourceVersion == cm.metadata.resourceVersion
    again = ssa(dyn2, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "persist", "namespace": NS}, "data": {"x": "2"}})
    assert int(again.metadata.resourceVersion) > int(cm.metadata.resourceVersion)


def test_node_goes_unknown_without_heartbeat(tmp_path):
    d = Double(tmp_path, grace=1)
    d.start()
    try:
        node = d.register("quiet", taints=[{"key": "gpu", "value": "true", "effect": "NoSchedule"}])
        assert node["spec"]["taints"] == [{"key": "gpu", "value": "true", "effect": "NoSchedule"}]

        def node_state():
            n = json.loads(d.raw("GET", "/api/v1/nodes/quiet", auth=basic(TOKEN))[1])
            return {c["type"]: (c["status"], c["reason"], c["message"]) for c in n["status"]["conditions"]}["Ready"], n["spec"]

        def ready_unknown():
            r = node_state()
            return r if r[0][0] == "Unknown" else None

        ready, spec = wait_for(ready_unknown, what="Ready=Unknown")
        assert ready == ("Unknown", "NodeStatusUnknown", "Kubelet stopped posting node status.")
        assert {t["key"] for t in spec["taints"]} == {"gpu", "node.kubernetes.io/unreachable"}
        d.register("quiet", taints=[{"key": "other", "effect": "NoSchedule"}])   # taints only at registration
        # The node lifecycle loop lifts the unreachable taints on its next pass.

        def taints_lifted():
            r = node_state()
            return r if len(r[1]["taints"]) == 1 else None

        ready, spec = wait_for(taints_lifted, what="taints lifted")
        assert ready[0] == "True" and spec["taints"] == [{"key": "gpu", "value": "true", "effect": "NoSchedule"}]
    finally:
        d.stop()


def test_a_failed_pod_of_a_replicaset_is_replaced(dyn):
    """A pod its kubelet refused (Failed, e.g. UnexpectedAdmissionError) no longer counts as a replica."""
    pods = dyn.resources.get(api_version="v1", kind="Pod")
    ssa(dyn, deployment("replace-failed"))

    def running():
        items = [p for p in pods.get(namespace=NS, label_selector="app=replace-failed").items if p.status.phase == "Running"]
        return items[0] if items else None
    first = wait_for(running, what="a running pod")
    body = {"status": {"phase": "Failed", "reason": "UnexpectedAdmissionError"}}
    pods.status.patch(body=body, name=first.metadata.name, namespace=NS, content_type="application/merge-patch+json")

    def replaced():
        p = running()
        return p if p and p.metadata.name != first.metadata.name else None
    wait_for(replaced, what="a replacement pod")
