# Copyright: homelab.gpu_stack contributors
# Apache License 2.0 (see LICENSE)
"""Render tests for the gpu_addons objects.

The role's own tasks build the objects from the inventories (no cluster);
HelmCharts are checked against helm-controller's CRD schema, core objects
against the Kubernetes OpenAPI schema of the pinned k3s (kubernetes-validate,
strict), then what the objects mean is checked: the NetworkPolicy, the
taint/toleration pairing with the k3s roles, time-slicing, TLS (the dashboards
are the monitoring role's: test_monitoring.py).
"""

import base64
import copy
import json
import os
import re
import stat
import struct
import subprocess
import sys
import xml.etree.ElementTree as ET

import jsonschema
import kubernetes_validate
import pytest
import yaml
from cryptography import x509
from serving_checks import inventory_stack

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# the checkout is linked there as ansible_collections/homelab/gpu_stack (scripts/bootstrap.sh)
if os.path.join(ROOT, ".ansible", "collections") not in sys.path:
    sys.path.insert(0, os.path.join(ROOT, ".ansible", "collections"))
FIXTURES = os.path.join(ROOT, "tests", "render", "fixtures")
PLAYBOOK = os.path.join(FIXTURES, "addons-render.yml")
ANSIBLE_PLAYBOOK = os.path.join(ROOT, ".venv", "bin", "ansible-playbook")
# No Hugging Face Hub from tests: shapes come from the inventories' config folders.
OFFLINE = dict(os.environ, HF_HUB_OFFLINE="1")


def _yaml(path):
    with open(os.path.join(ROOT, path)) as handle:
        return yaml.safe_load(handle)


def k8s_version():
    """Kubernetes version of the pinned k3s (v1.33.5+k3s1 -> 1.33.0)."""
    version = _yaml("roles/k3s/defaults/main.yml")["k3s_version"]
    major, minor = re.match(r"^v(\d+)\.(\d+)\.", version).groups()
    return "%s.%s.0" % (major, minor)


def render(tmp_path, inventory="inventories/local", extra=None, expect_ok=True):
    out = tmp_path / "addons.json"
    args = [ANSIBLE_PLAYBOOK, PLAYBOOK, "-i", inventory,
            "-e", json.dumps(dict({"addons_out": str(out), "gpu_addons_render_dir": str(tmp_path / "rendered"),
                                   "gpu_addons_tls_dir": str(tmp_path / "tls")}, **(extra or {}))),
            "-e", "ansible_python_interpreter=%s" % sys.executable]
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False, env=OFFLINE)
    if not expect_ok:
        assert proc.returncode != 0, proc.stdout
        return proc.stdout + proc.stderr
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with open(out) as handle:
        result = json.load(handle)
    result["_tmp"] = tmp_path
    result["_recap"] = re.findall(r"localhost\s+: (ok=.*)", proc.stdout)[-1]
    return result


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    return render(tmp_path_factory.mktemp("local"))


@pytest.fixture(scope="module")
def sliced(tmp_path_factory):
    return render(tmp_path_factory.mktemp("sliced"), inventory="inventories/example",
                  extra={"gpu_addons_time_slicing_replicas": 4})


@pytest.fixture(scope="module")
def crypto(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("crypto")
    extra = {"gpu_addons_tls_mode": "community_crypto", "gpu_addons_render_secrets": True,
             "gpu_addons_prometheus_namespace": "monitoring", "gpu_addons_ingress_controller_peer": None}
    first = render(tmp, extra=extra)
    first["_second"] = render(tmp, extra=extra)
    return first


def test_a_second_render_changes_nothing(crypto):
    """Certificates, Secret, node patches, picture: all idempotent."""
    assert " changed=0 " not in crypto["_recap"]
    assert " changed=0 " in crypto["_second"]["_recap"]
    assert crypto["_second"]["objects"] == crypto["objects"]


def by_kind(result, kind):
    return [o for o in result["objects"] if o["kind"] == kind]


def one(result, kind, name):
    found = [o for o in result["objects"] if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, "%s/%s rendered %d times" % (kind, name, len(found))
    return found[0]


# --- schemas -----------------------------------------------------------------

def _closed(schema):
    """The CRD schema as the API server applies it: unknown fields are pruned
    there, silently; here they fail, so a misspelt spec key cannot pass."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields"):
                node.setdefault("additionalProperties", False)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
    walk(schema)
    return schema


@pytest.fixture(scope="module")
def helmchart_schema():
    with open(os.path.join(FIXTURES, "helm-controller", "helmchart-v1-openapiv3.yaml")) as handle:
        return _closed(yaml.safe_load(handle))


def validate_helmchart(schema, obj):
    assert obj["apiVersion"] == "helm.cattle.io/v1"
    jsonschema.Draft7Validator(schema).validate(obj)


def test_helmcharts_match_the_helm_controller_crd(local, sliced, crypto, helmchart_schema):
    charts = [o for r in (local, sliced, crypto) for o in by_kind(r, "HelmChart")]
    assert {c["metadata"]["name"] for c in charts} == {"nvidia-device-plugin", "cert-manager"}
    for chart in charts:
        validate_helmchart(helmchart_schema, chart)


def test_crd_schema_rejects_what_the_api_would_drop(local, helmchart_schema):
    chart = copy.deepcopy(one(local, "HelmChart", "nvidia-device-plugin"))
    chart["spec"]["valuesContents"] = chart["spec"].pop("valuesContent")  # misspelt key
    with pytest.raises(jsonschema.ValidationError, match="valuesContents"):
        validate_helmchart(helmchart_schema, chart)
    chart = copy.deepcopy(one(local, "HelmChart", "nvidia-device-plugin"))
    chart["spec"]["failurePolicy"] = "retry"
    with pytest.raises(jsonschema.ValidationError, match="retry"):
        validate_helmchart(helmchart_schema, chart)


def cert_manager_schema(kind):
    name = {"Certificate": "certificate", "ClusterIssuer": "clusterissuer"}[kind]
    with open(os.path.join(FIXTURES, "cert-manager", "%s-v1-openapiv3.yaml" % name)) as handle:
        return _closed(yaml.safe_load(handle))


def test_cert_manager_objects_match_their_crds(local):
    objects = [o for o in local["objects"] if o["apiVersion"] == "cert-manager.io/v1"]
    assert sorted(o["kind"] for o in objects) == ["Certificate", "ClusterIssuer", "ClusterIssuer"]
    for obj in objects:
        jsonschema.Draft7Validator(cert_manager_schema(obj["kind"])).validate(obj)


def test_cert_manager_schema_catches_a_bad_field(local):
    cert = copy.deepcopy(one(local, "Certificate", "gpu-stack-ca"))
    cert["spec"]["privateKey"]["algorithm"] = "DSA"
    with pytest.raises(jsonschema.ValidationError, match="DSA"):
        jsonschema.Draft7Validator(cert_manager_schema("Certificate")).validate(cert)
    issuer = copy.deepcopy(one(local, "ClusterIssuer", "gpu-stack-ca"))
    issuer["spec"]["ca"] = {"secret": issuer["spec"]["ca"].pop("secretName")}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(cert_manager_schema("ClusterIssuer")).validate(issuer)


def test_core_objects_pass_strict_openapi_validation(local, sliced, crypto):
    version = k8s_version()
    checked = 0
    for result in (local, sliced, crypto):
        for obj in result["objects"] + result["node_patches"]:
            if obj["apiVersion"].startswith(("helm.cattle.io/", "cert-manager.io/")):
                continue
            kubernetes_validate.validate(obj, version, strict=True)
            checked += 1
    assert checked >= 8


def test_strict_validation_catches_an_unknown_field(local):
    policy = copy.deepcopy(one(local, "NetworkPolicy", "vllm-from-gateway-only"))
    policy["spec"]["ingres"] = policy["spec"].pop("ingress")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(policy, k8s_version(), strict=True)


# --- RuntimeClass and device plugin ------------------------------------------------

def values_of(chart):
    return yaml.safe_load(chart["spec"]["valuesContent"])


def test_runtime_class_and_device_plugin_agree(local):
    runtime = one(local, "RuntimeClass", "nvidia")
    assert runtime["handler"] == "nvidia"
    plugin = one(local, "HelmChart", "nvidia-device-plugin")
    assert plugin["spec"]["chart"] == "nvidia-device-plugin"
    assert re.match(r"^\d+\.\d+\.\d+$", plugin["spec"]["version"]), "chart version must be pinned"
    assert values_of(plugin)["runtimeClassName"] == runtime["metadata"]["name"]


def tolerates(tolerations, taint):
    for tol in tolerations:
        if tol.get("effect") and tol["effect"] != taint["effect"]:
            continue
        if tol.get("operator", "Equal") == "Exists":
            if not tol.get("key") or tol["key"] == taint["key"]:
                return True
        elif tol.get("key") == taint["key"] and tol.get("value", "") == taint.get("value", ""):
            return True
    return False


def parse_taint(text):
    """k3s's node-taint syntax key=value:Effect."""
    keyval, effect = text.rsplit(":", 1)
    key, _sep, value = keyval.partition("=")
    return {"key": key, "value": value, "effect": effect}


def gpu_taints():
    """The taint gpu_addons puts on GPU nodes and any the k3s roles register them with."""
    taints = [_yaml("roles/gpu_addons/defaults/main.yml")["gpu_addons_taint"]]
    taints += [parse_taint(t) for t in _yaml("roles/k3s/defaults/main.yml").get("k3s_gpu_node_taints") or []]
    return taints


def test_tolerations_helper_can_say_no():
    taint = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
    assert not tolerates([{"key": "CriticalAddonsOnly", "operator": "Exists"}], taint)
    assert not tolerates([{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoExecute"}], taint)
    assert tolerates([{"key": "nvidia.com/gpu", "operator": "Equal", "value": "present"}], taint)


def test_device_plugin_tolerates_the_gpu_taint_and_targets_gpu_nodes(local, sliced):
    for result in (local, sliced):
        values = values_of(one(result, "HelmChart", "nvidia-device-plugin"))
        for taint in gpu_taints():
            assert tolerates(values["tolerations"], taint), taint
        runtime = one(result, "RuntimeClass", "nvidia")
        for taint in gpu_taints():
            assert tolerates(runtime["scheduling"]["tolerations"], taint), taint
        terms = values["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        required = {(e["key"], v) for t in terms["nodeSelectorTerms"] for e in t["matchExpressions"]
                    for v in e["values"]}
        # the label the device plugin needs is one both node layers set
        k3s_labels = {tuple(label.split("=", 1)) for label in _yaml("roles/k3s/defaults/main.yml")["k3s_gpu_node_labels"]}
        patch_labels = {(k, v) for p in result["node_patches"] for k, v in p["metadata"]["labels"].items()}
        assert required & k3s_labels and required <= patch_labels


def test_node_patches_cover_every_gpu_worker_and_only_them(local, sliced):
    assert [p["metadata"]["name"] for p in local["node_patches"]] == ["gs-gpu"]
    assert [p["metadata"]["name"] for p in sliced["node_patches"]] == ["nuc"]
    for patch in local["node_patches"]:
        assert patch["spec"]["taints"] == [_yaml("roles/gpu_addons/defaults/main.yml")["gpu_addons_taint"]]


def test_time_slicing_config(local, sliced):
    assert "config" not in values_of(one(local, "HelmChart", "nvidia-device-plugin"))
    values = values_of(one(sliced, "HelmChart", "nvidia-device-plugin"))
    assert values["config"]["default"] in values["config"]["map"]
    config = yaml.safe_load(values["config"]["map"][values["config"]["default"]])
    assert config["version"] == "v1"
    assert config["sharing"]["timeSlicing"]["resources"] == [{"name": "nvidia.com/gpu", "replicas": 4}]


# --- NetworkPolicy -------------------------------------------------------------

def selects(selector, labels):
    return all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())


TRAEFIK_NS = {"kubernetes.io/metadata.name": "kube-system"}
# What k3s's bundled Traefik chart puts on its pods.
TRAEFIK_POD = {"app.kubernetes.io/name": "traefik", "app.kubernetes.io/instance": "traefik-kube-system"}


def admits(peer, namespace_labels, pod_labels, own_namespace):
    """Whether a NetworkPolicy peer lets in a pod (ipBlock peers admit nothing here)."""
    if "ipBlock" in peer:
        return False
    if "namespaceSelector" in peer:
        if not selects(peer["namespaceSelector"], namespace_labels):
            return False
    elif namespace_labels.get("kubernetes.io/metadata.name") != own_namespace:
        return False  # a podSelector alone means the policy's own namespace
    return selects(peer.get("podSelector") or {}, pod_labels)


def test_network_policy_lets_only_the_gateway_and_the_ingress_controller_reach_vllm(local_ingress):
    """With the per-model Ingresses on; test_by_default_nothing_reaches_vllm_around_the_gateway
    shows Traefik is not let in without them."""
    policy = one(local_ingress, "NetworkPolicy", "vllm-from-gateway-only")
    spec = policy["spec"]
    assert policy["metadata"]["namespace"] == "llm"
    assert spec["policyTypes"] == ["Ingress"]
    vllm_pod = {"app.kubernetes.io/name": "vllm", "app.kubernetes.io/instance": "tiny-chat"}
    gateway_pod = {"app.kubernetes.io/name": "litellm"}
    assert selects(spec["podSelector"], vllm_pod)
    assert not selects(spec["podSelector"], gateway_pod)
    assert len(spec["ingress"]) == 1
    peers = spec["ingress"][0]["from"]
    llm_ns = {"kubernetes.io/metadata.name": "llm"}
    assert any(admits(p, llm_ns, gateway_pod, "llm") for p in peers)
    assert any(admits(p, TRAEFIK_NS, TRAEFIK_POD, "llm") for p in peers)
    # nobody else: another app in the namespace, another pod in kube-system,
    # a Traefik in another namespace
    for ns, pod in ((llm_ns, {"app.kubernetes.io/name": "open-webui"}),
                    (TRAEFIK_NS, {"app.kubernetes.io/name": "coredns"}),
                    ({"kubernetes.io/metadata.name": "default"}, TRAEFIK_POD)):
        assert not any(admits(p, ns, pod, "llm") for p in peers), (ns, pod)
    assert spec["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 8000}]


SERVING_ROLES = ["vllm", "litellm"]


def render_stack(out, extra=None):
    """What the serving roles of this checkout render for the local inventory."""
    proc = subprocess.run(
        [ANSIBLE_PLAYBOOK, os.path.join(FIXTURES, "stack-render.yml"), "-i", "inventories/local",
         "-e", json.dumps(dict({"stack_dir": str(out), "stack_roles": SERVING_ROLES}, **(extra or {}))),
         "-e", "ansible_python_interpreter=%s" % sys.executable],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False, env=OFFLINE)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    objects = []
    for name in sorted(os.listdir(out)):
        if name.endswith(".yaml"):
            objects += [o for o in yaml.safe_load_all((out / name).read_text()) if o]
    return objects


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    return render_stack(tmp_path_factory.mktemp("stack"))


# The per-model Ingresses, asked for (they need vLLM's key).
PER_MODEL_INGRESS = {"vllm_ingress_enabled": True, "vllm_api_key": "sk-vllm-renderCheckKey0123456789",
                     "gpu_stack_render_secrets": True}


@pytest.fixture(scope="module")
def local_ingress(tmp_path_factory):
    return render(tmp_path_factory.mktemp("local-ingress"), extra=PER_MODEL_INGRESS)


@pytest.fixture(scope="module")
def stack_ingress(tmp_path_factory):
    return render_stack(tmp_path_factory.mktemp("stack-ingress"), extra=PER_MODEL_INGRESS)


def pod_labels(deployment):
    return deployment["spec"]["template"]["metadata"]["labels"]


def test_network_policy_admits_the_rendered_gateway_pods(local, stack):
    policy = one(local, "NetworkPolicy", "vllm-from-gateway-only")
    gateways = [o for o in stack if o["kind"] == "Deployment" and o["metadata"]["name"] == "litellm"]
    assert len(gateways) == 1
    gateway = gateways[0]
    assert gateway["metadata"]["namespace"] == policy["metadata"]["namespace"]
    assert selects(policy["spec"]["ingress"][0]["from"][0]["podSelector"], pod_labels(gateway))
    assert not selects(policy["spec"]["podSelector"], pod_labels(gateway))


def vllm_deployments(stack):
    return [o for o in stack if o["kind"] == "Deployment"
            and pod_labels(o).get("app.kubernetes.io/name") == "vllm"]


def test_network_policy_selects_the_rendered_vllm_pods_on_their_port(local, stack):
    policy = one(local, "NetworkPolicy", "vllm-from-gateway-only")
    deployments = vllm_deployments(stack)
    assert deployments, "the vllm role rendered no Deployment labelled app.kubernetes.io/name=vllm"
    for deployment in deployments:
        assert deployment["metadata"]["namespace"] == policy["metadata"]["namespace"]
        assert selects(policy["spec"]["podSelector"], pod_labels(deployment))
        ports = {p["containerPort"] for c in deployment["spec"]["template"]["spec"]["containers"]
                 for p in c.get("ports", [])}
        assert policy["spec"]["ingress"][0]["ports"][0]["port"] in ports


def test_by_default_nothing_reaches_vllm_around_the_gateway(local, stack):
    """No per-model Ingress, no Traefik peer, no vLLM key: only the gateway's pods."""
    policy = one(local, "NetworkPolicy", "vllm-from-gateway-only")
    assert not any(admits(p, TRAEFIK_NS, TRAEFIK_POD, "llm") for rule in policy["spec"]["ingress"]
                   for p in rule["from"])
    vllm_names = {d["metadata"]["name"] for d in vllm_deployments(stack)}
    assert vllm_names
    assert not [o for o in stack if o["kind"] == "Ingress" and o["metadata"]["name"] in vllm_names]


def test_per_model_ingresses_reach_a_vllm_that_asks_for_the_gateways_key(stack_ingress):
    """With vllm_ingress_enabled, vLLM reads --api-key (VLLM_API_KEY) from Secret
    vllm-api-key, its readiness probe sends it, and the gateway sends the same key
    to every GPU model."""
    key = PER_MODEL_INGRESS["vllm_api_key"]
    secret = [o for o in stack_ingress if o["kind"] == "Secret" and o["metadata"]["name"] == "vllm-api-key"]
    assert [s["stringData"] for s in secret] == [{"VLLM_API_KEY": key}]
    ref = {"secretKeyRef": {"name": "vllm-api-key", "key": "VLLM_API_KEY"}}
    for deployment in vllm_deployments(stack_ingress):
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert {"name": "VLLM_API_KEY", "valueFrom": ref} in container["env"]
        assert "VLLM_API_KEY" in container["readinessProbe"]["exec"]["command"][-1]
    gateway = [o for o in stack_ingress if o["kind"] == "Deployment" and o["metadata"]["name"] == "litellm"][0]
    assert {"name": "VLLM_API_KEY", "valueFrom": {"secretKeyRef": {"name": "litellm-keys", "key": "VLLM_API_KEY"}}} \
        in gateway["spec"]["template"]["spec"]["containers"][0]["env"]
    keys = [o for o in stack_ingress if o["kind"] == "Secret" and o["metadata"]["name"] == "litellm-keys"][0]
    assert keys["stringData"]["VLLM_API_KEY"] == key
    config = yaml.safe_load([o for o in stack_ingress if o["kind"] == "ConfigMap"
                             and o["metadata"]["name"] == "litellm-config"][0]["data"]["config.yaml"])
    gpu_entries = [m for m in config["model_list"] if m["model_info"]["id"].startswith("gpu-")]
    assert gpu_entries and all(m["litellm_params"]["api_key"] == "os.environ/VLLM_API_KEY" for m in gpu_entries)


def test_network_policy_lets_the_ingress_controller_reach_the_rendered_ingress_backends(local_ingress, stack_ingress):
    """The vllm role's per-model Ingresses (class traefik) route to vLLM Services;
    the policy must let Traefik's pods reach the pods behind them on that port."""
    local, stack = local_ingress, stack_ingress
    policy = one(local, "NetworkPolicy", "vllm-from-gateway-only")
    services = {o["metadata"]["name"]: o for o in stack if o["kind"] == "Service"}
    checked = 0
    for ingress in (o for o in stack if o["kind"] == "Ingress"):
        for http_rule in ingress["spec"]["rules"]:
            for path in http_rule["http"]["paths"]:
                backend = path["backend"]["service"]
                service = services[backend["name"]]
                selector = {"matchLabels": service["spec"]["selector"]}
                pods = [d for d in vllm_deployments(stack) if selects(selector, pod_labels(d))]
                if not pods:
                    continue  # the gateway's own Ingress
                assert ingress["spec"]["ingressClassName"] == "traefik"
                port = next(p for p in service["spec"]["ports"] if backend["port"] in
                            ({"number": p["port"]}, {"name": p.get("name")}))
                container_ports = {p["name"]: p["containerPort"] for c in pods[0]["spec"]["template"]["spec"]["containers"]
                                   for p in c.get("ports", [])}
                target = container_ports.get(port["targetPort"], port["targetPort"])
                assert selects(policy["spec"]["podSelector"], pod_labels(pods[0]))
                assert any(any(admits(p, TRAEFIK_NS, TRAEFIK_POD, "llm") for p in rule["from"])
                           and {"protocol": "TCP", "port": target} in rule["ports"]
                           for rule in policy["spec"]["ingress"]), (ingress["metadata"]["name"], target)
                checked += 1
    assert checked, "the vllm role rendered no Ingress to a vLLM Service"


def test_mode_switch_on_the_rendered_vllm_deployments(stack):
    from ansible_collections.homelab.gpu_stack.plugins.filter import gpu_mode
    from ansible_collections.homelab.gpu_stack.plugins.filter.model_spec import model_specs
    local_host = _yaml("inventories/local/host_vars/gs-gpu.yml")
    modes = _yaml("inventories/local/group_vars/all/main.yml")["gpu_stack_gpu_modes"]
    models = model_specs({"gs-gpu": local_host}, ["gs-gpu"])
    # the vllm role's own replicas for the inventory's mode agree with the filter
    active = _yaml("inventories/local/group_vars/all/main.yml")["gpu_stack_gpu_mode"]
    rendered = dict((d["metadata"]["labels"]["app.kubernetes.io/instance"], d["spec"].get("replicas", 1))
                    for d in vllm_deployments(stack))
    assert rendered == gpu_mode.mode_replicas(models, active, modes)
    for mode in modes:
        switched = gpu_mode.mode_switch(stack, models, mode, modes)
        want = gpu_mode.mode_replicas(models, mode, modes)
        got = dict((d["metadata"]["labels"]["app.kubernetes.io/instance"], d["spec"]["replicas"])
                   for d in vllm_deployments(switched))
        assert got == want
    # gaming stops every model of the local inventory; the gateway Deployment is untouched
    gaming = gpu_mode.mode_switch(stack, models, "gaming", modes)
    assert all(d["spec"]["replicas"] == 0 for d in vllm_deployments(gaming))
    assert [o for o in gaming if o["metadata"]["name"] == "litellm"] == \
        [o for o in stack if o["metadata"]["name"] == "litellm"]


def test_prometheus_namespace_may_scrape_only_the_vllm_port(crypto):
    rules = one(crypto, "NetworkPolicy", "vllm-from-gateway-only")["spec"]["ingress"]
    assert len(rules) == 2
    # gpu_addons_ingress_controller_peer null: the gateway alone on the first rule
    assert rules[0]["from"] == [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "litellm"}}}]
    assert rules[1] == {"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
                        "ports": [{"protocol": "TCP", "port": 8000}]}


# --- TLS ---------------------------------------------------------------------

def test_cert_manager_chain_is_consistent(local):
    chart = one(local, "HelmChart", "cert-manager")
    assert re.match(r"^v\d+\.\d+\.\d+$", chart["spec"]["version"])
    assert values_of(chart)["crds"]["enabled"] is True
    selfsigned = one(local, "ClusterIssuer", "gpu-stack-ca-selfsigned")
    assert selfsigned["spec"] == {"selfSigned": {}}
    cert = one(local, "Certificate", "gpu-stack-ca")
    assert cert["spec"]["isCA"] is True
    assert cert["spec"]["issuerRef"] == {"name": "gpu-stack-ca-selfsigned", "kind": "ClusterIssuer",
                                         "group": "cert-manager.io"}
    # a ClusterIssuer reads its CA secret from cert-manager's namespace
    assert cert["metadata"]["namespace"] == chart["spec"]["targetNamespace"]
    assert one(local, "ClusterIssuer", "gpu-stack-ca")["spec"]["ca"]["secretName"] == cert["spec"]["secretName"]


def test_community_crypto_makes_a_ca_signed_tls_secret(crypto):
    assert not [o for o in crypto["objects"] if o["apiVersion"].startswith("cert-manager.io/")]
    assert not [o for o in crypto["objects"] if o["metadata"]["name"] == "cert-manager"]
    tmp = crypto["_tmp"]
    path = tmp / "rendered" / "secret-gpu-stack-tls.yaml"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp / "tls" / "ca.key").st_mode) == 0o600
    secret = yaml.safe_load(path.read_text())
    kubernetes_validate.validate(secret, k8s_version(), strict=True)
    assert secret["type"] == "kubernetes.io/tls"
    assert set(secret["data"]) == {"tls.crt", "tls.key", "ca.crt"}
    server = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    ca = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["ca.crt"]))
    server.verify_directly_issued_by(ca)
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["*.gpu-stack.home.arpa", "gpu-stack.home.arpa"]
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True


def test_tls_secret_is_not_rendered_unless_asked(local):
    assert not [o for o in local["objects"] if o["kind"] == "Secret"]


# --- bad input -----------------------------------------------------------------

@pytest.mark.parametrize("extra, message", [
    ({"gpu_addons_time_slicing_replicas": 0}, "gpu_addons_time_slicing_replicas: must be between 1"),
    ({"gpu_addons_tls_mode": "community_crypto", "gpu_addons_tls_dns_names": []},
     "gpu_addons_tls_dns_names: the community_crypto TLS mode needs"),
    ({"gpu_addons_taint": {"key": "nvidia.com/gpu", "effect": "NoScheduled"}}, "gpu_addons_taint: needs a key"),
    ({"gpu_addons_gpu_nodes": [{"name": "NUC_1", "gpus": 1}]}, "gpu_addons_gpu_nodes:"),
])
def test_bad_input_fails_naming_the_variable(tmp_path, extra, message):
    output = render(tmp_path, extra=extra, expect_ok=False)
    assert message in output
    assert not (tmp_path / "addons.json").exists()


# --- the picture -----------------------------------------------------------------

SVG_NS = "{http://www.w3.org/2000/svg}"


def svg_texts(path):
    root = ET.parse(path).getroot()
    return root, [t.text for t in root.iter(SVG_NS + "text")]


def example_plan(name):
    """The plan of a model of the example inventory, as its Deployment runs it."""
    return [m["plan"] for m in inventory_stack("inventories/example")["models"] if m["name"] == name][0]


def test_topology_svg_shows_nodes_gpus_plans_and_chain(sliced):
    root, texts = svg_texts(sliced["_tmp"] / "rendered" / "topology.svg")
    joined = "\n".join(texts)
    assert root.tag == SVG_NS + "svg"
    for name in ("minipc", "nuc", "NVIDIA GeForce RTX 3060 x1  12.0 GiB VRAM", "active GPU mode: ml",
                 "llama-3.1-8b-instruct  (running)", "deepseek-r1-distill-qwen-7b  (stopped in this mode)"):
        assert name in joined, name
    plan = example_plan("llama-8b")
    assert "context %d" % plan["max_model_len"] in joined
    assert "(%.2f GiB)" % (plan["kv_cache_bytes"] / float(1 << 30)) in joined
    assert "shape: folder" in joined  # where the plan's shape came from
    chain = [t for t in texts if re.match(r"^\d\. \w+ tier", t or "")]
    assert chain == ["1. gpu tier (gpu)", "2. cpu tier (cpu)", "3. cloud tier (cloud)"]
    assert "sk-" not in open(sliced["_tmp"] / "rendered" / "topology.svg").read()


def test_topology_png_is_made_at_the_svg_size(sliced):
    # scripts/bootstrap.sh installs rsvg-convert (librsvg2-bin), so the PNG must be there.
    root, _texts = svg_texts(sliced["_tmp"] / "rendered" / "topology.svg")
    with open(sliced["_tmp"] / "rendered" / "topology.png", "rb") as handle:
        head = handle.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", head[16:24]) == (int(root.get("width")), int(root.get("height")))


def test_topology_in_gaming_mode_frees_the_gpu():
    from ansible_collections.homelab.gpu_stack.plugins.filter.topology import topology, topology_svg
    groups = {"k3s_servers": ["minipc"], "k3s_agents": ["nuc"], "gpu_workers": ["nuc"]}
    data = topology(inventory_stack("inventories/example"), groups, "gaming")
    assert [m["active"] for m in data["nodes"][1]["models"]] == [False, False]
    svg = topology_svg(data)
    assert "GPU free in this mode" in svg and "(running)" not in svg


def test_topology_shows_the_deployed_cpu_tier_and_the_chat_page():
    from ansible_collections.homelab.gpu_stack.plugins.filter.topology import topology, topology_svg
    groups = {"k3s_servers": ["minipc"], "k3s_agents": ["nuc"], "gpu_workers": ["nuc"]}
    stack = inventory_stack("inventories/example")
    data = topology(stack, groups, "ml", ui_url="https://chat.gpu-stack.home.arpa")
    assert data["nodes"][0]["tiers"] == ["cpu tier: ollama, llama3.2:3b"] and data["nodes"][1]["tiers"] == []
    assert [t["deployed_on"] for t in data["chain"]] == [None, "minipc", None]
    svg = topology_svg(data)
    assert "llama3.2:3b on minipc" in svg and "cpu tier: ollama, llama3.2:3b" in svg
    assert "chat page: https://chat.gpu-stack.home.arpa" in svg
    assert "chat page" not in topology_svg(topology(stack, groups, "ml"))


def test_topology_counts_the_driver_reserve_as_used():
    """The NUC's 12 GB card: what is planned plus what is free is the card, and the
    free part excludes the memory the driver keeps from CUDA."""
    from ansible_collections.homelab.gpu_stack.plugins.filter.topology import topology, topology_svg
    groups = {"k3s_servers": ["minipc"], "k3s_agents": ["nuc"], "gpu_workers": ["nuc"]}
    nuc = _yaml("inventories/example/host_vars/nuc.yml")
    data = topology(inventory_stack("inventories/example"), groups)
    plans = [m["plan"] for m in data["nodes"][1]["models"] if m["active"]]
    assert plans and all(p["cuda_reserved_mib"] > 0 for p in plans)
    planned, free = (float(v) for v in re.search(r"([\d.]+) GiB planned, ([\d.]+) GiB free",
                                                 topology_svg(data)).groups())
    card = nuc["gpu_stack_gpu"]["vram_mib"] / 1024.0
    assert planned + free == pytest.approx(card, abs=0.1)
    keys = ("weight_bytes", "kv_cache_bytes", "activation_bytes", "non_torch_bytes", "cudagraph_bytes")
    by_plan = sum(p[k] for p in plans for k in keys) / 2 ** 30
    assert planned == pytest.approx(by_plan + plans[0]["cuda_reserved_mib"] / 1024.0, abs=0.05)


# --- docs ----------------------------------------------------------------------------

def test_docs_name_only_real_gpu_addons_variables_and_filters():
    specs = _yaml("roles/gpu_addons/meta/argument_specs.yml")["argument_specs"]
    known = set()
    for entry in specs.values():
        known |= set(entry["options"])
    docs = [os.path.join(ROOT, "docs", f) for f in os.listdir(os.path.join(ROOT, "docs")) if f.endswith(".md")]
    docs.append(os.path.join(ROOT, "roles", "gpu_addons", "README.md"))
    from ansible_collections.homelab.gpu_stack.plugins.filter import gpu_mode, topology
    filters = set(gpu_mode.FilterModule().filters()) | set(topology.FilterModule().filters())
    for path in docs:
        text = open(path).read()
        for name in set(re.findall(r"\bgpu_addons_[a-z0-9_]+", text)) - {"gpu_addons_objects", "gpu_addons_capacity"}:
            assert name in known, "%s names %s, which gpu_addons does not have" % (path, name)
        for name in set(re.findall(r"homelab\.gpu_stack\.(mode_\w+|topology\w*)", text)):
            assert name in filters, "%s names filter %s" % (path, name)


def test_the_stack_namespace_comes_before_what_lives_in_it(local, crypto):
    """The API refuses a namespaced object until its Namespace exists; nothing else makes `llm`."""
    for result in (local, crypto):
        objects = result["objects"]
        kinds = [o["kind"] for o in objects]
        assert kinds[0] == "Namespace" and objects[0]["metadata"]["name"] == "llm"
        assert objects[0]["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "homelab.gpu_stack"
        assert all(o["metadata"].get("namespace") in (None, "llm", "kube-system", "cert-manager") for o in objects)
