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


# --------------------------------------------------------------------------- readiness gates, pod proxy, RBAC

GATE = "gpu-stack.homelab/awake"


def call(kad, method, path, body=None, auth=None, ctype="application/json", admin=False):
    """One raw HTTPS request: (status, body bytes, Content-Type). admin: with the admin client cert."""
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    req = urllib.request.Request(kad.url + path, method=method, data=data)
    if data is not None:
        req.add_header("Content-Type", ctype)
    if auth:
        req.add_header("Authorization", auth)
    ctx = kad.ssl_ctx()
    if admin:
        ctx.load_cert_chain(str(kad.data / "tls" / "admin.crt"), str(kad.data / "tls" / "admin.key"))
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=20) as r:
            return r.status, r.read(), r.headers.get("Content-Type")
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers.get("Content-Type")


@pytest.fixture(scope="module")
def backend():
    """A loopback HTTP server standing in for what runs in a pod: it records each request it gets."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    seen = []

    class Handler(BaseHTTPRequestHandler):
        def answer(self):
            n = int(self.headers.get("Content-Length") or 0)
            seen.append({"method": self.command, "path": self.path, "body": self.rfile.read(n).decode() if n else "",
                         "ctype": self.headers.get("Content-Type"), "auth": self.headers.get("Authorization")})
            if self.path.startswith("/teapot"):
                code, ctype, out = 418, "text/plain", b"short and stout"
            else:
                code, ctype = 201 if self.command == "POST" else 200, "application/json"
                out = json.dumps({"method": self.command, "path": self.path}).encode()
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = answer

        def log_message(self, *args):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv.server_address[1], seen
    srv.shutdown()
    srv.server_close()


def pod_manifest(name, port=80, labels=None, **spec):
    body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels or {"app": name}},
            "spec": {"containers": [{"name": "app", "image": "nginx:1.27", "ports": [{"name": "http", "containerPort": port}]}]}}
    body["spec"].update(spec)
    return body


def running_pod(dyn, ns, name, port, on_loopback=True, **spec):
    """A pod the fake kubelet runs; on_loopback: then given 127.0.0.1 as its IP and its node's, as the
    node-agent double reports a pod on a node whose address is loopback (the fake kubelet's 10.42.0.x
    reaches nothing here)."""
    pods = dyn.resources.get(api_version="v1", kind="Pod")
    pods.create(body=pod_manifest(name, port, **spec), namespace=ns)
    wait_for(lambda: pods.get(name=name, namespace=ns).status.phase == "Running", what="%s running" % name)
    if on_loopback:
        st = {"podIP": "127.0.0.1", "podIPs": [{"ip": "127.0.0.1"}], "hostIP": "127.0.0.1", "hostIPs": [{"ip": "127.0.0.1"}]}
        pods.status.patch(body={"status": st}, name=name, namespace=ns, content_type="application/merge-patch+json")
    return pods.get(name=name, namespace=ns)


def test_a_readiness_gate_keeps_a_pod_out_of_its_service_until_its_condition_is_true(dyn):
    v1 = k8s_client.CoreV1Api(dyn.client)
    pods = dyn.resources.get(api_version="v1", kind="Pod")
    v1.create_namespaced_service(NS, {"metadata": {"name": "gated"}, "spec": {"selector": {"app": "gated"}, "ports": [{"port": 80}]}})
    pod = running_pod(dyn, NS, "gated", 80, on_loopback=False, readinessGates=[{"conditionType": GATE}])
    ip = pod.status.podIP

    def conditions():
        return {c.type: c for c in pods.get(name="gated", namespace=NS).status.conditions}

    def endpoints():
        subset = (v1.read_namespaced_endpoints("gated", NS).subsets or [None])[0]
        return ([a.ip for a in subset.addresses or []], [a.ip for a in subset.not_ready_addresses or []]) if subset else ([], [])

    c = conditions()
    assert c["ContainersReady"].status == "True"   # the gate does not hold the containers back
    assert (c["Ready"].status, c["Ready"].reason, c["Ready"].message) == (
        "False", "ReadinessGatesNotReady", 'corresponding condition of pod readiness gate "%s" does not exist.' % GATE)
    wait_for(lambda: endpoints() == ([], [ip]), what="the pod among the not-ready addresses")

    def set_gate(status, **extra):
        body = {"status": {"conditions": [dict({"type": GATE, "status": status}, **extra)]}}
        pods.status.patch(body=body, name="gated", namespace=NS, content_type="application/strategic-merge-patch+json")

    set_gate("True")
    wait_for(lambda: conditions()["Ready"].status == "True", what="Ready after the gate")
    c = conditions()
    assert c[GATE].status == "True" and c["Ready"].reason is None and c["Ready"].message is None   # the kubelet's write kept it
    wait_for(lambda: endpoints() == ([ip], []), what="the pod among the ready addresses")

    set_gate("False", reason="Asleep", message="the model sleeps")
    wait_for(lambda: conditions()["Ready"].status == "False", what="not Ready again")
    c = conditions()
    assert (c["Ready"].reason, c["Ready"].message) == ("ReadinessGatesNotReady", 'the status of pod readiness gate "%s" is not "True", but False' % GATE)
    assert (c[GATE].status, c[GATE].reason) == ("False", "Asleep") and c["ContainersReady"].status == "True"
    wait_for(lambda: endpoints() == ([], [ip]), what="the pod out of the ready addresses")


def test_a_readiness_gate_condition_type_must_be_a_qualified_name(dyn):
    pods = dyn.resources.get(api_version="v1", kind="Pod")
    with pytest.raises(ApiException) as e:
        pods.create(body=pod_manifest("bad-gate", readinessGates=[{"conditionType": "gpu_stack.homelab/awake"}]), namespace=NS)
    st = json.loads(e.value.body)
    assert e.value.status == 422 and st["reason"] == "Invalid"
    assert st["message"].startswith('Pod "bad-gate" is invalid: spec.readinessGates[0].conditionType: Invalid value: '
                                    '"gpu_stack.homelab/awake": prefix part a lowercase RFC 1123 subdomain'), st["message"]
    assert st["details"]["causes"][0]["field"] == "spec.readinessGates[0].conditionType"
    d = deployment("bad-gate")
    d["spec"]["template"]["spec"]["readinessGates"] = [{"conditionType": "awake/"}]
    with pytest.raises(ApiException) as e:
        ssa(dyn, d)
    assert e.value.status == 422 and "spec.template.spec.readinessGates[0].conditionType" in e.value.body


def test_pod_proxy_passes_method_query_body_and_answer(kad, dyn, backend):
    port, seen = backend
    running_pod(dyn, NS, "proxied", port)
    base = "/api/v1/namespaces/%s/pods/proxied/proxy" % NS

    code, body, ctype = call(kad, "GET", base + "/v1/models?x=1&y=two%20words", admin=True)
    assert (code, ctype) == (200, "application/json") and json.loads(body) == {"method": "GET", "path": "/v1/models?x=1&y=two%20words"}
    assert seen[-1]["auth"] is None   # the caller's credentials stay with the API server
    code, body, _ctype = call(kad, "POST", base + "/v1/completions?stream=false", {"prompt": "hi"}, admin=True)
    assert code == 201 and json.loads(body)["path"] == "/v1/completions?stream=false"
    assert {k: seen[-1][k] for k in ("method", "path", "body", "ctype")} == {
        "method": "POST", "path": "/v1/completions?stream=false", "body": '{"prompt": "hi"}', "ctype": "application/json"}
    for method in ("PUT", "PATCH", "DELETE"):
        code, _body, _ctype = call(kad, method, base + "/thing", b"x", ctype="text/plain", admin=True)
        assert code == 200 and (seen[-1]["method"], seen[-1]["body"], seen[-1]["ctype"]) == (method, "x", "text/plain")
    assert call(kad, "GET", base + "/teapot", admin=True) == (418, b"short and stout", "text/plain")
    # NAME:PORT (the colon as clients send it), and no path at all.
    assert call(kad, "GET", "/api/v1/namespaces/%s/pods/proxied%%3A%d/proxy/p/" % (NS, port), admin=True)[0] == 200
    assert seen[-1]["path"] == "/p/"
    assert call(kad, "GET", base, admin=True)[0] == 200 and seen[-1]["path"] == "/"

    # The Python client: its generated method (path escaped as one segment) and a raw call with a body.
    v1 = k8s_client.CoreV1Api(dyn.client)
    r = v1.connect_get_namespaced_pod_proxy_with_path("proxied", NS, "v1/models", _preload_content=False)
    assert json.loads(r.data) == {"method": "GET", "path": "/v1/models"}
    req = dyn.client.param_serialize("POST", "/api/v1/namespaces/{namespace}/pods/{name}/proxy/{path}",
                                     path_params={"namespace": NS, "name": "proxied", "path": "wake_up"},
                                     query_params=[("tags", "weights")], header_params={"Content-Type": "application/json"},
                                     body={"a": 1}, auth_settings=["BearerToken"])
    r = dyn.client.call_api(*req)
    r.read()
    assert r.status == 201 and (seen[-1]["method"], seen[-1]["path"], json.loads(seen[-1]["body"])) == ("POST", "/wake_up?tags=weights", {"a": 1})

    # Refusals, as pod.ResourceLocation and the proxy answer them.
    def status(path):
        code, body, _ctype = call(kad, "GET", path, admin=True)
        st = json.loads(body)
        return code, st["reason"], st["message"]
    assert status("/api/v1/namespaces/%s/pods/proxied%%3A1/proxy/x" % NS) == (
        503, "ServiceUnavailable", "error trying to reach service: dial tcp 127.0.0.1:1: connect: connection refused")
    dyn.resources.get(api_version="v1", kind="Pod").create(body=pod_manifest("no-ip", nodeSelector={"nowhere": "x"}), namespace=NS)
    assert status("/api/v1/namespaces/%s/pods/no-ip/proxy/x" % NS) == (400, "BadRequest", "address not allowed")
    running_pod(dyn, NS, "lo-only", port, on_loopback=False)
    dyn.resources.get(api_version="v1", kind="Pod").status.patch(
        body={"status": {"podIP": "127.0.0.1", "podIPs": [{"ip": "127.0.0.1"}]}}, name="lo-only", namespace=NS,
        content_type="application/merge-patch+json")
    assert status("/api/v1/namespaces/%s/pods/lo-only/proxy/x" % NS) == (400, "BadRequest", "address not allowed")
    assert status("/api/v1/namespaces/%s/pods/a:b:c:d/proxy/x" % NS) == (400, "BadRequest", 'invalid pod request "a:b:c:d"')
    assert status("/api/v1/namespaces/%s/pods/nobody/proxy/x" % NS) == (404, "NotFound", 'pods "nobody" not found')


def sa_token(dyn, ns, name):
    """A ServiceAccount and its legacy token Secret (filled by the token controller): the bearer token."""
    v1 = k8s_client.CoreV1Api(dyn.client)
    if ns not in {n.metadata.name for n in v1.list_namespace().items}:
        v1.create_namespace({"metadata": {"name": ns}})
    v1.create_namespaced_service_account(ns, {"metadata": {"name": name}})
    v1.create_namespaced_secret(ns, {"metadata": {"name": name + "-token", "annotations": {"kubernetes.io/service-account.name": name}},
                                     "type": "kubernetes.io/service-account-token"})
    data = wait_for(lambda: v1.read_namespaced_secret(name + "-token", ns).data, what="the token")
    return base64.b64decode(data["token"]).decode()


def rbac(dyn, kind, name, ns=None, **fields):
    body = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind, "metadata": {"name": name}}
    if ns:
        body["metadata"]["namespace"] = ns
    body.update(fields)
    return dyn.resources.get(api_version="rbac.authorization.k8s.io/v1", kind=kind).create(body=body, namespace=ns)


def test_rbac_for_a_service_account_token(kad, dyn, backend):
    port, seen = backend
    token = sa_token(dyn, "llm", "gpu-mode")
    user = "system:serviceaccount:llm:gpu-mode"
    bearer = "Bearer " + token
    running_pod(dyn, "llm", "vllm-0", port)
    rbac(dyn, "Role", "gpu-mode", "llm", rules=[{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]},
                                                {"apiGroups": [""], "resources": ["pods/proxy"], "verbs": ["create"]}])
    rbac(dyn, "RoleBinding", "gpu-mode", "llm", subjects=[{"kind": "ServiceAccount", "name": "gpu-mode", "namespace": "llm"}],
         roleRef={"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "gpu-mode"})

    code, body, _ctype = call(kad, "GET", "/api/v1/namespaces/llm/pods", auth=bearer)
    assert code == 200 and [p["metadata"]["name"] for p in json.loads(body)["items"]] == ["vllm-0"]
    assert call(kad, "GET", "/api/v1/namespaces/llm/pods/vllm-0", auth=bearer)[0] == 200
    code, body, _ctype = call(kad, "POST", "/api/v1/namespaces/llm/pods/vllm-0/proxy/sleep?level=1", {}, auth=bearer)
    assert code == 201 and (seen[-1]["method"], seen[-1]["path"], seen[-1]["auth"]) == ("POST", "/sleep?level=1", None)   # no token passed on
    for path in ("/api", "/api/v1", "/apis", "/apis/apps/v1", "/version"):
        assert call(kad, "GET", path, auth=bearer)[0] == 200, path

    def refused(method, path, body=None, ctype="application/json"):
        code, raw, _ctype = call(kad, method, path, body, auth=bearer, ctype=ctype)
        assert code == 403, (method, path, code, raw[:300])
        st = json.loads(raw)
        assert (st["reason"], st["code"]) == ("Forbidden", 403), st
        return st["message"], st.get("details")

    assert refused("GET", "/api/v1/namespaces/llm/secrets") == (
        'secrets is forbidden: User "%s" cannot list resource "secrets" in API group "" in the namespace "llm"' % user, {"kind": "secrets"})
    assert refused("DELETE", "/api/v1/namespaces/llm/pods/vllm-0") == (
        'pods "vllm-0" is forbidden: User "%s" cannot delete resource "pods" in API group "" in the namespace "llm"' % user,
        {"name": "vllm-0", "kind": "pods"})
    assert refused("PATCH", "/apis/apps/v1/namespaces/llm/deployments/vllm/scale", {"spec": {"replicas": 0}},
                   "application/merge-patch+json") == (
        'deployments.apps "vllm" is forbidden: User "%s" cannot patch resource "deployments/scale" in API group "apps" in the '
        'namespace "llm"' % user, {"name": "vllm", "group": "apps", "kind": "deployments"})
    assert refused("GET", "/api/v1/namespaces/default/pods")[0] == (
        'pods is forbidden: User "%s" cannot list resource "pods" in API group "" in the namespace "default"' % user)
    assert refused("GET", "/api/v1/namespaces/llm/pods/vllm-0/proxy/health")[0] == (
        'pods "vllm-0" is forbidden: User "%s" cannot get resource "pods/proxy" in API group "" in the namespace "llm"' % user)
    assert refused("GET", "/api/v1/nodes")[0] == (
        'nodes is forbidden: User "%s" cannot list resource "nodes" in API group "" at the cluster scope' % user)
    assert refused("GET", "/api/v1/pods?watch=true")[0] == (
        'pods is forbidden: User "%s" cannot watch resource "pods" in API group "" at the cluster scope' % user)
    assert refused("POST", "/v1-k3s-double/nodes/evil", {})[0] == 'forbidden: User "%s" cannot post path "/v1-k3s-double/nodes/evil"' % user
    assert len([s for s in seen if s["path"].startswith("/health")]) == 0   # a refused proxy request never reached the pod
    # A request refused before its body was read leaves the kept-alive connection usable.
    import http.client
    conn = http.client.HTTPSConnection("127.0.0.1", kad.port, context=kad.ssl_ctx(), timeout=10)
    conn.request("POST", "/api/v1/namespaces/llm/configmaps", body=json.dumps({"metadata": {"name": "x" * 2000}}),
                 headers={"Authorization": bearer, "Content-Type": "application/json"})
    answer = conn.getresponse()
    assert (answer.status, json.loads(answer.read())["reason"]) == (403, "Forbidden")
    conn.request("GET", "/api/v1/namespaces/llm/pods", headers={"Authorization": bearer})
    answer = conn.getresponse()
    assert answer.status == 200 and json.loads(answer.read())["kind"] == "PodList"
    conn.close()

    # The Python client with the token.
    conf = k8s_client.Configuration(host=kad.url)
    conf.ssl_ca_cert = str(kad.data / "tls" / "ca.crt")
    conf.api_key = {"authorization": bearer}
    sa_v1 = k8s_client.CoreV1Api(k8s_client.ApiClient(conf))
    assert [p.metadata.name for p in sa_v1.list_namespaced_pod("llm").items] == ["vllm-0"]
    assert json.loads(sa_v1.connect_post_namespaced_pod_proxy_with_path("vllm-0", "llm", "wake_up", _preload_content=False).data) == {
        "method": "POST", "path": "/wake_up"}
    with pytest.raises(ApiException) as e:
        sa_v1.list_namespaced_secret("llm")
    assert e.value.status == 403

    # resourceNames: only the named object, never a list (nor a create) without a name; Group subjects.
    v1 = k8s_client.CoreV1Api(dyn.client)
    for name in ("plan", "other"):
        v1.create_namespaced_config_map("llm", {"metadata": {"name": name}, "data": {"k": "v"}})
    rbac(dyn, "Role", "plan-reader", "llm", rules=[{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["plan"],
                                                    "verbs": ["get", "list", "update"]}])
    rbac(dyn, "RoleBinding", "plan-reader", "llm", subjects=[{"kind": "Group", "name": "system:serviceaccounts:llm",
                                                              "apiGroup": "rbac.authorization.k8s.io"}],
         roleRef={"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "plan-reader"})
    assert call(kad, "GET", "/api/v1/namespaces/llm/configmaps/plan", auth=bearer)[0] == 200
    assert call(kad, "GET", "/api/v1/namespaces/llm/configmaps?fieldSelector=metadata.name%3Dplan", auth=bearer)[0] == 200
    assert refused("GET", "/api/v1/namespaces/llm/configmaps/other")[0].startswith('configmaps "other" is forbidden: ')
    assert refused("GET", "/api/v1/namespaces/llm/configmaps")[0].startswith("configmaps is forbidden: ")
    # A binding to a role that does not exist: the authorizer says so.
    rbac(dyn, "RoleBinding", "dangling", "llm", subjects=[{"kind": "ServiceAccount", "name": "gpu-mode"}],
         roleRef={"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "missing"})
    assert refused("GET", "/api/v1/namespaces/llm/services")[0] == (
        'services is forbidden: User "%s" cannot list resource "services" in API group "" in the namespace "llm": '
        'RBAC: role.rbac.authorization.k8s.io "missing" not found' % user)

    # A ClusterRoleBinding to a ClusterRole holds in every namespace and for cluster-scoped objects.
    rbac(dyn, "ClusterRole", "pod-watcher", rules=[{"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch"]},
                                                   {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]}])
    rbac(dyn, "ClusterRoleBinding", "gpu-mode-pod-watcher", subjects=[{"kind": "ServiceAccount", "name": "gpu-mode", "namespace": "llm"}],
         roleRef={"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "pod-watcher"})
    for path in ("/api/v1/pods", "/api/v1/namespaces/default/pods", "/api/v1/nodes/server-1"):
        assert call(kad, "GET", path, auth=bearer)[0] == 200, path
    assert refused("GET", "/api/v1/nodes")[0].endswith('cannot list resource "nodes" in API group "" at the cluster scope')
    assert refused("DELETE", "/api/v1/namespaces/default/pods/proxied")[0].startswith('pods "proxied" is forbidden: ')
    # cluster-admin exists, as the API server's bootstrap policy makes it.
    rbac(dyn, "ClusterRoleBinding", "gpu-mode-admin", subjects=[{"kind": "ServiceAccount", "name": "gpu-mode", "namespace": "llm"}],
         roleRef={"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"})
    assert call(kad, "GET", "/api/v1/namespaces/llm/secrets", auth=bearer)[0] == 200
