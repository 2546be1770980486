# Copyright: homelab.gpu_stack contributors
# Apache License 2.0 (see LICENSE)
"""playbooks/render.yml on the shipped inventories: schema, then meaning.

Every rendered object is validated against the OpenAPI schema of the pinned
k3s's Kubernetes version with unknown fields failing (kubernetes-validate,
strict); then the vLLM objects are checked for what they mean
(serving_checks.semantic_errors), and each of those checks is shown to fire
on a broken copy. The Deployment's arguments are compared with what the
vllm_args filter emits (the list tests/unit/test_vllm_args_parser.py hands to
vLLM's own parser).
"""

import copy
import shutil
import json
import stat

import kubernetes_validate
import pytest

from serving_checks import (ROOT, inventory_models, inventory_stack, k8s_version, load_objects, render,
                            semantic_errors, validate_all)

from ansible_collections.homelab.gpu_stack.plugins.filter.vllm import vllm_args

TOKEN = "hf_renderCheckToken0123456789"
KEY = "sk-vllm-renderCheckKey0123456789"
INVENTORIES = ["inventories/example", "inventories/local"]
# Everything on: the per-model Ingresses (with vLLM's key) and the Secrets in
# the folder. test_defaults_* render the shipped defaults.
# (Secrets in the folder take a master key and a database password that are not the example's published ones.)
EVERYTHING = {"model_cache_hf_token": TOKEN, "vllm_ingress_enabled": True, "vllm_api_key": KEY,
              "gpu_stack_render_secrets": True, "litellm_master_key": "sk-renderCheckMaster0123456789abcd",
              "litellm_database_password": "renderCheckDatabase0123456789"}


@pytest.fixture(scope="module", params=INVENTORIES)
def rendered(request, tmp_path_factory):
    out = tmp_path_factory.mktemp(request.param.replace("/", "-"))
    code, output = render(request.param, out, extra=EVERYTHING)
    assert code == 0, output[-4000:]
    models, gpus, active = inventory_models(request.param)
    return {"inventory": request.param, "dir": out, "objects": load_objects(out), "models": models,
            "gpus": gpus, "active": active}


def test_one_file_per_object_with_stable_names(rendered):
    for name, obj in rendered["objects"].items():
        assert name == "%s-%s.yaml" % (obj["kind"].lower(), obj["metadata"]["name"])
    for model in rendered["models"]:
        for kind in ("deployment", "service", "poddisruptionbudget", "ingress"):
            assert "%s-%s.yaml" % (kind, model["name"]) in rendered["objects"]


def test_every_object_passes_strict_openapi(rendered):
    assert validate_all(rendered["objects"]) >= 4 * len(rendered["models"])


def test_strict_validation_rejects_an_unknown_field(rendered):
    deploy = copy.deepcopy(rendered["objects"]["deployment-%s.yaml" % rendered["models"][0]["name"]])
    deploy["spec"]["template"]["spec"]["containers"][0]["gpus"] = 1
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deploy, k8s_version(), strict=True)


def test_vllm_objects_mean_what_they_should(rendered):
    assert semantic_errors(rendered["objects"], rendered["models"], rendered["gpus"], rendered["active"]) == []


def test_deployment_runs_the_planned_arguments(rendered):
    """The Deployment runs the plan of the model's own config.json, the same one the
    stack model gives the picture and the summary."""
    stack = dict((m["name"], m) for m in inventory_stack(rendered["inventory"])["models"])
    for model in rendered["models"]:
        deploy = rendered["objects"]["deployment-%s.yaml" % model["name"]]
        container = deploy["spec"]["template"]["spec"]["containers"][0]
        plan = stack[model["name"]]["plan"]
        assert plan["shape_source"] == "folder"
        assert container["command"] == ["vllm", "serve"]
        assert container["args"] == vllm_args(model, plan)
        assert json.loads(deploy["metadata"]["annotations"]["gpu-stack.homelab/plan"]) == plan


def test_secrets_only_in_secret_files(rendered):
    hf_files = [n for n, o in rendered["objects"].items() if o["kind"] == "Secret" and n.endswith("-hf-token.yaml")]
    assert len(hf_files) == len(rendered["models"])
    for name in hf_files:
        assert rendered["objects"][name]["stringData"]["HF_TOKEN"] == TOKEN
        assert stat.S_IMODE((rendered["dir"] / name).stat().st_mode) == 0o600
    secret_files = {n for n, o in rendered["objects"].items() if o["kind"] == "Secret"}
    assert rendered["objects"]["secret-vllm-api-key.yaml"]["stringData"] == {"VLLM_API_KEY": KEY}
    for name in secret_files:
        assert stat.S_IMODE((rendered["dir"] / name).stat().st_mode) == 0o600
    for path in rendered["dir"].rglob("*.yaml"):
        if path.name not in hf_files:
            assert TOKEN not in path.read_text(), path.name
        if path.name not in secret_files:
            assert KEY not in path.read_text(), path.name
    for model in rendered["models"]:
        env = rendered["objects"]["deployment-%s.yaml" % model["name"]]["spec"]["template"]["spec"]["containers"][0]["env"]
        token = [e for e in env if e["name"] == "HF_TOKEN"]
        ref = {"secretKeyRef": {"name": "%s-hf-token" % model["name"], "key": "HF_TOKEN"}}
        assert token == [{"name": "HF_TOKEN", "valueFrom": ref}]


def test_defaults_write_no_secret_and_no_way_around_the_gateway(tmp_path):
    """One Secret policy, off by default (gpu_stack_render_secrets): no Secret file,
    the token in no file; no per-model Ingress and no vLLM key asked for."""
    code, output = render("inventories/example", tmp_path, extra={"model_cache_hf_token": TOKEN})
    assert code == 0, output[-3000:]
    objects = load_objects(tmp_path)
    assert not [n for n, o in objects.items() if o["kind"] == "Secret"]
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and TOKEN in p.read_text(errors="replace")]
    deployments = [o for o in objects.values() if o["kind"] == "Deployment"
                   and o["metadata"]["labels"]["app.kubernetes.io/name"] == "vllm"]
    assert deployments
    for deploy in deployments:
        assert "ingress-%s.yaml" % deploy["metadata"]["name"] not in objects
        env = {e["name"] for e in deploy["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert "VLLM_API_KEY" not in env and "HF_TOKEN" in env


def test_no_canary_in_a_vvv_render(tmp_path):
    """Planted secrets (HF token, master key, cloud key, vLLM key, database password,
    Open WebUI's admin password and session key) in a -vvv
    render of the example inventory: in no line of the log, in no file."""
    canaries = {"model_cache_hf_token": "hf_canaryHfToken7d1e", "vault_litellm_master_key": "sk-canary-master-4b9f2c7a1e",
                "vault_openai_api_key": "sk-canary-cloud-8e3a", "vllm_api_key": "sk-canary-vllm-2f6c9d0b5a",
                "vault_litellm_database_password": "canary-database-pass-5c2e9",
                "open_webui_admin_password": "canary-ui-admin-3d8a", "open_webui_secret_key": "canary-ui-session-key-0a9e7b6c5d4e3f21"}
    ui = {"vllm_ingress_enabled": True, "open_webui_enabled": True, "open_webui_admin_email": "you@example.org"}
    code, output = render("inventories/example", tmp_path, extra=dict(canaries, **ui), verbose=3)
    assert code == 0, output[-3000:]
    assert "<127.0.0.1> EXEC" in output or "ESTABLISH LOCAL CONNECTION" in output  # it was -vvv
    leaked = [name for name, value in canaries.items() if value in output]
    assert not leaked, leaked
    for path in tmp_path.rglob("*"):
        if path.is_file():
            text = path.read_text(errors="replace")
            assert not [n for n, v in canaries.items() if v in text], path.name


def test_render_is_stable(rendered, tmp_path):
    code, output = render(rendered["inventory"], tmp_path, extra=EVERYTHING)
    assert code == 0, output[-3000:]

    def vllm_only(objects):
        return dict((n, o) for n, o in objects.items()
                    if o["metadata"].get("labels", {}).get("app.kubernetes.io/name") == "vllm")
    again = vllm_only(load_objects(tmp_path))
    assert again and again == vllm_only(rendered["objects"])


# --- each semantic check fires on a broken copy -----------------------------------

def _break(objects, model, how):
    broken = copy.deepcopy(objects)
    name = model["name"]
    deploy = broken["deployment-%s.yaml" % name]
    pod = deploy["spec"]["template"]["spec"]
    container = pod["containers"][0]
    if how == "selector":
        broken["service-%s.yaml" % name]["spec"]["selector"]["app.kubernetes.io/instance"] = "other"
    elif how == "port":
        broken["service-%s.yaml" % name]["spec"]["ports"][0]["targetPort"] = "metrics"
    elif how == "ingress-port":
        broken["ingress-%s.yaml" % name]["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["port"] = {"name": "web"}
    elif how == "gpus":
        container["resources"]["limits"]["nvidia.com/gpu"] = model["tensor_parallel_size"] + 1
    elif how == "probe":
        container["livenessProbe"]["httpGet"]["port"] = 9000
    elif how == "readiness":
        container["readinessProbe"]["exec"]["command"][-1] = "import sys; sys.exit(0)"
    elif how == "pdb":
        spec = broken["poddisruptionbudget-%s.yaml" % name]["spec"]
        spec.pop("maxUnavailable")
        spec["minAvailable"] = 1
    elif how == "strategy":
        deploy["spec"]["strategy"] = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    elif how == "inline-secret":
        container["env"] = [e for e in container["env"] if e["name"] != "HF_TOKEN"] + [{"name": "HF_TOKEN", "value": TOKEN}]
    elif how == "runtime":
        pod.pop("runtimeClassName")
    elif how == "pin":
        pod["nodeSelector"] = {}
    elif how == "shm":
        for volume in pod["volumes"]:
            if volume["name"] == "dshm":
                volume["emptyDir"] = {}
    elif how == "image":
        container["image"] = "vllm/vllm-openai:latest"
    return broken


@pytest.mark.parametrize("how", ["selector", "port", "ingress-port", "gpus", "probe", "readiness", "pdb",
                                 "strategy", "inline-secret", "runtime", "pin", "shm", "image"])
def test_each_check_fires(rendered, how):
    model = rendered["models"][0]
    assert rendered["gpus"][model["node"]]["count"] == model["tensor_parallel_size"]  # single-GPU node
    broken = _break(rendered["objects"], model, how)
    errors = semantic_errors(broken, rendered["models"], rendered["gpus"], rendered["active"])
    assert errors and all(e.startswith(model["name"] + ":") for e in errors), errors


def test_a_card_without_count_still_serves_its_models(tmp_path):
    """gpu_stack_gpu.count defaults to 1 (the spec says so): leaving it out once
    rendered no vLLM object at all, and render.yml still exited 0."""
    inv = tmp_path / "inv"
    shutil.copytree(ROOT / "inventories/example", inv)
    shutil.copytree(ROOT / "inventories/model-configs", tmp_path / "model-configs")
    host_vars = inv / "host_vars" / "nuc.yml"
    text = host_vars.read_text()
    assert "  count: 1\n" in text
    host_vars.write_text(text.replace("  count: 1\n", ""))
    code, output = render(str(inv), tmp_path / "out")
    assert code == 0, output[-3000:]
    deployments = [n for n, o in load_objects(tmp_path / "out").items()
                   if o["kind"] == "Deployment" and o["metadata"]["labels"].get("app.kubernetes.io/name") == "vllm"]
    assert sorted(deployments) == ["deployment-llama-8b.yaml", "deployment-r1-distill-7b.yaml"]


def test_sleep_models_render_their_gate_dev_mode_and_the_gpu_mode_account(tmp_path):
    """switch: sleep (issue 14): readiness gate, VLLM_SERVER_DEV_MODE, the KV budget pinned,
    replicas 0 on creation, an Ingress that routes /v1 and /health alone; with gpu_mode_hosts,
    the gpu-mode account whose Role grants only the switch's calls, and the mode table."""
    import yaml

    inv = tmp_path / "inv"
    shutil.copytree(ROOT / "inventories/example", inv)
    shutil.copytree(ROOT / "inventories/model-configs", tmp_path / "model-configs")
    host_vars = inv / "host_vars" / "nuc.yml"
    text = host_vars.read_text()
    host_vars.write_text(text.replace("    modes: [ml]\n", "    modes: [ml]\n    switch: sleep\n")
                         .replace("    modes: [r1]\n", "    modes: [r1]\n    switch: sleep\n"))
    hosts = yaml.safe_load((inv / "hosts.yml").read_text())
    hosts["all"]["children"]["gpu_mode_hosts"] = {"hosts": {"nuc": None}}
    (inv / "hosts.yml").write_text(yaml.safe_dump(hosts))
    out = tmp_path / "out"
    extra = {"vllm_ingress_enabled": True, "vllm_api_key": KEY, "gpu_addons_time_slicing_replicas": 2}
    code, output = render(str(inv), out, extra=extra)
    assert code == 0, output[-3000:]
    objects = load_objects(out)
    validate_all(objects)
    for name in ("llama-8b", "r1-distill-7b"):
        deploy = objects["deployment-%s.yaml" % name]
        pod = deploy["spec"]["template"]["spec"]
        assert deploy["spec"]["replicas"] == 0 and deploy["spec"]["strategy"]["type"] == "Recreate"
        assert pod["readinessGates"] == [{"conditionType": "gpu-stack.homelab/awake"}]
        env = dict((e["name"], e.get("value")) for e in pod["containers"][0]["env"])
        assert env["VLLM_SERVER_DEV_MODE"] == "1"
        args = pod["containers"][0]["args"]
        plan = json.loads(deploy["metadata"]["annotations"]["gpu-stack.homelab/plan"])
        assert args[args.index("--kv-cache-memory-bytes") + 1] == str(plan["kv_cache_bytes"])
        assert plan["resident_bytes"] > 0 and plan["sleep_residual_bytes"] > 0
        paths = [p["path"] for p in objects["ingress-%s.yaml" % name]["spec"]["rules"][0]["http"]["paths"]]
        assert paths == ["/v1", "/health"]
    role = objects["role-gpu-mode.yaml"]
    granted = sorted((r["apiGroups"][0], res, v) for r in role["rules"] for res in r["resources"] for v in r["verbs"])
    assert ("", "secrets", "get") not in granted and ("apps", "deployments", "patch") not in granted
    assert ("", "pods/proxy", "create") in granted and ("apps", "deployments/scale", "patch") in granted
    table = json.loads(objects["configmap-gpu-modes.yaml"]["data"]["modes.json"])
    assert table["mode"] == "ml" and [m["switch"] for m in table["models"]] == ["sleep", "sleep"]
    assert table["models"][0]["fallback"] and table["chat_through_proxy"] is False
    assert not any("token" in (o.get("data") or {}) for o in objects.values())


def test_sleep_models_need_the_card_advertised_once_per_pod(tmp_path):
    inv = tmp_path / "inv"
    shutil.copytree(ROOT / "inventories/example", inv)
    shutil.copytree(ROOT / "inventories/model-configs", tmp_path / "model-configs")
    host_vars = inv / "host_vars" / "nuc.yml"
    host_vars.write_text(host_vars.read_text().replace("    modes: [ml]\n", "    modes: [ml]\n    switch: sleep\n"))
    code, output = render(str(inv), tmp_path / "out")
    assert code != 0
    assert "gpu_addons_time_slicing_replicas: 1, but a node holds 2 vLLM pods at once" in output
