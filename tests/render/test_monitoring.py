# Copyright: homelab.gpu_stack contributors
# Apache License 2.0 (see LICENSE)
"""Render tests for the monitoring role (issue 16).

The role's own tasks build the objects from the example inventory (no
cluster): HelmCharts against helm-controller's CRD schema, the other objects
against the pinned k3s's OpenAPI schema (kubernetes-validate, strict); the
rules through Debian's promtool; then what they mean: off by default, the
GPU exporter on the GPU nodes with the nvidia runtime, the scrape jobs the
dashboards select on, the planner's figures in the rules, secrets kept out
of the log. That every panel returns data is tests/e2e/test_monitoring.py's.
"""

import json
import re
import shutil
import subprocess
import sys

import jsonschema
import kubernetes_validate
import pytest
import yaml
from test_addons import ANSIBLE_PLAYBOOK, FIXTURES, ROOT, k8s_version
from test_addons import helmchart_schema  # noqa: F401 pylint: disable=unused-import  # a fixture, used by name

PLAYBOOK = FIXTURES + "/monitoring-render.yml"
PASSWORD = "grafana-" + "canary-5e1f0a7c"
DASHBOARDS = ROOT + "/roles/monitoring/files/dashboards"


def render(tmp_path, extra=None, expect_ok=True, inventory="inventories/example"):
    out = tmp_path / "monitoring.json"
    args = [ANSIBLE_PLAYBOOK, PLAYBOOK, "-i", inventory, "-v",
            "-e", json.dumps(dict({"monitoring_out": str(out)}, **(extra or {}))),
            "-e", "ansible_python_interpreter=%s" % sys.executable]
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    if not expect_ok:
        assert proc.returncode != 0, proc.stdout
        return proc.stdout + proc.stderr
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with open(out) as handle:
        result = json.load(handle)
    result["_log"] = proc.stdout + proc.stderr
    return result


@pytest.fixture(scope="module")
def deploy(tmp_path_factory):
    return render(tmp_path_factory.mktemp("deploy"), {"monitoring_grafana_admin_password": PASSWORD})


@pytest.fixture(scope="module")
def external(tmp_path_factory):
    return render(tmp_path_factory.mktemp("external"), {"monitoring_prometheus": "external"})


def one(result, kind, name):
    found = [o for o in result["objects"] if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, "%s/%s rendered %d times" % (kind, name, len(found))
    return found[0]


def test_off_by_default_and_site_runs_it_after_the_gateway():
    defaults = yaml.safe_load(open(ROOT + "/roles/monitoring/defaults/main.yml"))
    assert defaults["monitoring_enabled"] == "{{ gpu_stack_monitoring | default(false) }}"
    site = open(ROOT + "/playbooks/site.yml").read()
    assert site.index("homelab.gpu_stack.litellm") < site.index("homelab.gpu_stack.monitoring")


def test_objects_pass_their_schemas(deploy, external, helmchart_schema):  # noqa: F811
    version = k8s_version()
    charts = 0
    for obj in deploy["objects"] + external["objects"]:
        if obj["kind"] == "HelmChart":
            jsonschema.Draft7Validator(helmchart_schema).validate(obj)
            charts += 1
        else:
            kubernetes_validate.validate(obj, version, strict=True)
    assert charts == 2


def test_external_mode_deploys_no_prometheus_or_grafana_and_no_secret(external):
    kinds = {(o["kind"], o["metadata"]["name"]) for o in external["objects"]}
    assert not [k for k in kinds if k[0] in ("HelmChart", "Secret")], kinds
    config = one(external, "ConfigMap", "gpu-stack-prometheus")["data"]
    assert yaml.safe_load(config["scrape-configs.yaml"]) == external["scrape_configs"]
    assert yaml.safe_load(config["rules.yaml"]) == external["rules"]


def test_gpu_exporter_runs_on_gpu_nodes_with_the_nvidia_runtime(deploy):
    spec = one(deploy, "DaemonSet", "nvidia-gpu-exporter")["spec"]["template"]["spec"]
    assert spec["runtimeClassName"] == "nvidia"
    assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
    assert spec["hostPID"] is True  # the per-process series see other pods' processes
    container = spec["containers"][0]
    assert "--collect.compute-apps" in container["args"]
    assert "nvidia.com/gpu" not in json.dumps(container["resources"])  # takes no card from vLLM
    assert container["image"].startswith("docker.io/utkuozdemir/nvidia_gpu_exporter:")


def test_dashboards_select_what_the_scrape_jobs_label(deploy):
    jobs = {j["job_name"]: j for j in deploy["scrape_configs"]}
    assert set(jobs) == {"gpu-stack-vllm", "gpu-stack-litellm", "gpu-stack-gpu-exporter"}
    exprs = []
    for name in ("vllm", "gateway", "cards"):
        configmap = one(deploy, "ConfigMap", "gpu-stack-dashboard-" + name)
        assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
        dashboard = json.loads(configmap["data"][name + ".json"])
        assert dashboard == json.load(open("%s/%s.json" % (DASHBOARDS, name)))
        assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
        exprs += [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    for job in re.findall(r'job="([^"]+)"', " ".join(exprs)):
        assert job in jobs
    for job in jobs.values():  # the labels the panels group by
        targets = {r.get("target_label") for r in job["relabel_configs"]}
        assert {"model", "node", "pod", "namespace"} <= targets
    # A sleeping vLLM answers /metrics but is not Ready: "up" must mean serving (the mode rule).
    ready = [r for r in jobs["gpu-stack-vllm"]["relabel_configs"]
             if r.get("source_labels") == ["__meta_kubernetes_pod_ready"]]
    assert ready == [{"action": "keep", "source_labels": ["__meta_kubernetes_pod_ready"], "regex": "true"}]
    # LiteLLM answers /metrics/ only with a key, read from a file (a mounted Secret).
    assert jobs["gpu-stack-litellm"]["authorization"]["credentials_file"].startswith("/etc/secrets/")


def test_prometheus_chart_is_the_server_alone_with_the_stacks_jobs(deploy):
    values = yaml.safe_load(one(deploy, "HelmChart", "prometheus")["spec"]["valuesContent"])
    for sub in ("alertmanager", "kube-state-metrics", "prometheus-node-exporter", "prometheus-pushgateway"):
        assert values[sub] == {"enabled": False}
    assert values["serverFiles"]["prometheus.yml"]["scrape_configs"] == deploy["scrape_configs"]
    assert values["serverFiles"]["recording_rules.yml"] == deploy["rules"]
    mount = values["server"]["extraSecretMounts"][0]
    key_file = next(j for j in deploy["scrape_configs"] if j["job_name"] == "gpu-stack-litellm")[
        "authorization"]["credentials_file"]
    assert key_file == mount["mountPath"] + "/key" and mount["secretName"] == "gpu-stack-litellm-metrics"
    assert one(deploy, "Secret", "gpu-stack-litellm-metrics")["stringData"]["key"]


def test_grafana_reads_the_prometheus_and_the_dashboards(deploy):
    values = yaml.safe_load(one(deploy, "HelmChart", "grafana")["spec"]["valuesContent"])
    assert values["datasources"]["datasources.yaml"]["datasources"][0]["url"] == \
        "http://prometheus-server.monitoring.svc"
    assert values["sidecar"]["dashboards"]["label"] == "grafana_dashboard"
    assert values["admin"]["existingSecret"] == "gpu-stack-grafana-admin"
    assert one(deploy, "Secret", "gpu-stack-grafana-admin")["stringData"]["admin-password"] == PASSWORD
    assert PASSWORD not in deploy["_log"]  # -v: the objects task is no_log


@pytest.mark.skipif(shutil.which("promtool") is None, reason="Debian's prometheus package brings promtool")
def test_rules_pass_promtool_and_carry_the_plan(deploy, tmp_path):
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump(deploy["rules"]))
    check = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    rules = [r for g in deploy["rules"]["groups"] for r in g["rules"]]
    planned = {(r["labels"]["model"], r["labels"]["part"]) for r in rules
               if r["record"] == "gpu_stack:model_planned_vram_bytes"}
    assert ("llama-8b", "requested") in planned and ("r1-distill-7b", "kv_cache") in planned
    modes = [r["labels"]["mode"] for r in rules if r["record"] == "gpu_stack:gpu_mode_active"]
    assert modes == ["ml", "r1", "gaming"]


@pytest.mark.parametrize("extra, message", [
    ({}, "monitoring_grafana_admin_password: monitoring_prometheus deploy runs a Grafana"),
    ({"monitoring_prometheus": "kube-prometheus", "monitoring_grafana_admin_password": PASSWORD},
     "value of monitoring_prometheus must be one of: deploy, external"),
    ({"monitoring_namespace": "Monitoring", "monitoring_grafana_admin_password": PASSWORD},
     "monitoring_namespace must be a DNS label (got Monitoring)"),
])
def test_bad_input_fails_naming_the_variable(tmp_path, extra, message):
    master_key = "sk-master-" + "canary-0b9d7e31"
    out = render(tmp_path, dict(extra, litellm_master_key=master_key), expect_ok=False)
    assert message in out
    # The failure prints the argument spec: the key and password stay out of it.
    assert master_key not in out and PASSWORD not in out
