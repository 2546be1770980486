# Copyright: homelab.gpu_stack contributors
# Apache License 2.0 (see LICENSE)
"""Render the stack with playbooks/render.yml and check what the vLLM objects mean.

Used by tests/render/test_serving_render.py and benchmarks/render_scale.py.
``semantic_errors(objects, models, gpus)`` returns a list of findings (empty
when all is well), so a test can also prove each check fires on a broken copy.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parents[2]
ANSIBLE_BIN = Path(sys.executable).parent
SECRET_ENV = re.compile(r"(TOKEN|KEY|SECRET|PASSWORD)", re.I)
# Custom resources kubernetes-validate has no schema for; test_addons.py
# checks them against their CRDs.
CRD_GROUPS = ("helm.cattle.io/", "cert-manager.io/")


def k8s_version():
    """Kubernetes version of the pinned k3s (v1.33.5+k3s1 -> 1.33.0)."""
    version = yaml.safe_load((ROOT / "roles/k3s/defaults/main.yml").read_text())["k3s_version"]
    major, minor = re.match(r"^v(\d+)\.(\d+)\.", version).groups()
    return "%s.%s.0" % (major, minor)


def render(inventory, out_dir, extra=None, playbook="playbooks/render.yml", verbose=0):
    """Run the render playbook; return (returncode, output)."""
    args = [str(ANSIBLE_BIN / "ansible-playbook"), playbook, "-i", str(inventory),
            "-e", json.dumps(dict({"gpu_stack_render_dir": str(out_dir)}, **(extra or {}))),
            "-e", "ansible_python_interpreter=%s" % sys.executable] + (["-" + "v" * verbose] if verbose else [])
    # No Hub from tests: shapes come from the inventories' config folders.
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=900, check=False, env=env)
    return proc.returncode, proc.stdout + proc.stderr


def load_objects(out_dir):
    """{file name: object} of every rendered file (sub-folders such as node-patches excluded)."""
    objects = {}
    for path in sorted(Path(out_dir).glob("*.yaml")):
        objects[path.name] = yaml.safe_load(path.read_text())
    return objects


def validate_all(objects, version=None):
    """Strict OpenAPI validation of every built-in kind; returns how many were checked."""
    version = version or k8s_version()
    checked = 0
    for name, obj in objects.items():
        if obj["apiVersion"].startswith(CRD_GROUPS):
            continue
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            raise AssertionError("%s: %s" % (name, exc)) from exc
        checked += 1
    return checked


def _inventory(inventory):
    out = subprocess.run([str(ANSIBLE_BIN / "ansible-inventory"), "-i", str(inventory), "--list"], cwd=ROOT,
                         check=True, capture_output=True, text=True, timeout=120).stdout
    data = json.loads(out)
    return data["_meta"]["hostvars"], data.get("gpu_workers", {}).get("hosts", [])


def inventory_models(inventory):
    """(normalised models, {host: gpu}) of an inventory, through the one model spec."""
    from ansible_collections.homelab.gpu_stack.plugins.module_utils.model_spec import collect_models, public

    hostvars, workers = _inventory(inventory)
    models = [public(m) for m in collect_models(hostvars, workers)]
    gpus = dict((h, hostvars[h]["gpu_stack_gpu"]) for h in workers)
    active = hostvars[workers[0]].get("gpu_stack_gpu_mode") if workers else None
    return models, gpus, active


def inventory_stack(inventory):
    """The stack model of an inventory as preflight compiles it offline (its config folder, no Hub)."""
    from ansible_collections.homelab.gpu_stack.plugins.module_utils import inventory as inv, stack_model

    hostvars, workers = _inventory(inventory)
    first = hostvars[workers[0]]
    groups = {"k3s_servers": workers[:1], "gpu_workers": workers}
    # The vault's keys are not resolved here; any key stands in (none enters the stack model).
    tiers = [dict(t, api_key="x") if t.get("api_key") else t for t in first["gpu_stack_tiers"]]
    view = inv.check_inventory(dict((h, hostvars[h]) for h in workers), groups, first["gpu_stack_gpu_modes"],
                               first["gpu_stack_gpu_mode"], tiers)
    folder = first.get("gpu_stack_model_configs")
    if folder and not folder.startswith("/"):
        folder = str(ROOT / inventory / folder)
    return stack_model.compile_stack(view, config_folder=folder, names=dict((h, h) for h in workers))


def _find(objects, kind, name):
    for obj in objects.values():
        if obj["kind"] == kind and obj["metadata"]["name"] == name:
            return obj
    return None


def _subset(small, big):
    return all(big.get(k) == v for k, v in (small or {}).items()) and bool(small)


def semantic_errors(objects, models, gpus, active_mode=None, port=8000):
    errors = []
    err = errors.append
    for model in models:
        name, tp = model["name"], model["tensor_parallel_size"]
        deploy = _find(objects, "Deployment", name)
        service = _find(objects, "Service", name)
        pdb = _find(objects, "PodDisruptionBudget", name)
        ingress = _find(objects, "Ingress", name)
        if not (deploy and service and pdb and ingress):
            err("%s: missing Deployment/Service/PDB/Ingress" % name)
            continue
        pod = deploy["spec"]["template"]
        labels = pod["metadata"]["labels"]
        spec = pod["spec"]
        container = spec["containers"][0]
        # Selectors match the pod labels.
        if not _subset(deploy["spec"]["selector"]["matchLabels"], labels):
            err("%s: Deployment selector does not match its pod labels" % name)
        if not _subset(service["spec"]["selector"], labels):
            err("%s: Service selector does not match the pod labels" % name)
        if not _subset(pdb["spec"]["selector"]["matchLabels"], labels):
            err("%s: PDB selector does not match the pod labels" % name)
        # Ports agree: container <- Service <- Ingress; probes hit the served port.
        ports = dict((p["name"], p["containerPort"]) for p in container.get("ports", []))
        args = container["args"]
        served_port = int(args[args.index("--port") + 1]) if "--port" in args else None
        if ports.get("http") != port or served_port != port:
            err("%s: container port %s / --port %s, expected %d" % (name, ports.get("http"), served_port, port))
        for sport in service["spec"]["ports"]:
            target = sport["targetPort"]
            if (target not in ports) if isinstance(target, str) else (target not in ports.values()):
                err("%s: Service targetPort %r is no container port" % (name, target))
        service_ports = dict((p["name"], p["port"]) for p in service["spec"]["ports"])
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                if backend["name"] != service["metadata"]["name"]:
                    err("%s: Ingress points at Service %s" % (name, backend["name"]))
                bport = backend["port"].get("name") or backend["port"].get("number")
                if bport not in service_ports and bport not in service_ports.values():
                    err("%s: Ingress port %r is not a Service port" % (name, bport))
        if not ingress["spec"].get("tls") or not all(t.get("secretName") for t in ingress["spec"]["tls"]):
            err("%s: Ingress without TLS" % name)
        for probe in ("startupProbe", "livenessProbe"):
            get = container.get(probe, {}).get("httpGet", {})
            if get.get("path") != "/health" or get.get("port") not in ("http", port):
                err("%s: %s is not /health on the served port" % (name, probe))
        ready = " ".join(container.get("readinessProbe", {}).get("exec", {}).get("command", []))
        if ":%d/v1/models" % port not in ready or json.dumps(model["served_name"]) not in ready:
            err("%s: readiness does not ask /v1/models on the served port for the served name" % name)
        # GPUs: requests == limits == tensor-parallel size; the NVIDIA runtime; pinned, tolerating the taint.
        res = container["resources"]
        if res.get("requests", {}).get("nvidia.com/gpu") != tp or res.get("limits", {}).get("nvidia.com/gpu") != tp:
            err("%s: GPU requests/limits %s/%s, tensor_parallel_size %d" % (
                name, res.get("requests", {}).get("nvidia.com/gpu"), res.get("limits", {}).get("nvidia.com/gpu"), tp))
        if "--tensor-parallel-size" in args and int(args[args.index("--tensor-parallel-size") + 1]) != tp:
            err("%s: --tensor-parallel-size disagrees with the GPU count" % name)
        if spec.get("runtimeClassName") != "nvidia":
            err("%s: runtimeClassName is not nvidia" % name)
        if spec.get("nodeSelector", {}).get("kubernetes.io/hostname") != model["node"]:
            err("%s: not pinned to node %s" % (name, model["node"]))
        if not any(t.get("key") == "nvidia.com/gpu" for t in spec.get("tolerations", [])):
            err("%s: no toleration for the GPU taint" % name)
        # Rolling update deadlocks when the model holds every GPU of its node.
        if tp >= gpus[model["node"]]["count"] and deploy["spec"]["strategy"]["type"] != "Recreate":
            err("%s: takes all %d GPUs of %s but is not Recreate" % (name, tp, model["node"]))
        # The PDB never blocks draining a single replica.
        replicas = deploy["spec"]["replicas"]
        spec_pdb = pdb["spec"]
        if "minAvailable" in spec_pdb:
            allowed = max(replicas, 1) - int(str(spec_pdb["minAvailable"]).rstrip("%"))
        else:
            allowed = int(str(spec_pdb.get("maxUnavailable", 0)).rstrip("%"))
        if allowed < 1:
            err("%s: the PDB allows no disruption of a single replica (drain would block)" % name)
        # /dev/shm in memory, size-limited; HF_HOME on the mounted cache.
        volumes = dict((v["name"], v) for v in spec["volumes"])
        mounts = dict((m["mountPath"], m["name"]) for m in container["volumeMounts"])
        shm = volumes.get(mounts.get("/dev/shm"), {}).get("emptyDir", {})
        if shm.get("medium") != "Memory" or not shm.get("sizeLimit"):
            err("%s: /dev/shm is not a size-limited memory emptyDir" % name)
        env = dict((e["name"], e) for e in container.get("env", []))
        hf_home = env.get("HF_HOME", {}).get("value", "")
        if not any(hf_home.startswith(path.rstrip("/") + "/") for path in mounts):
            err("%s: HF_HOME %r is not on a mounted volume" % (name, hf_home))
        # The image defines no user for runAsUser 1000: the name torch's
        # getpass.getuser() reads must come from the env, not from passwd.
        if spec.get("securityContext", {}).get("runAsUser", 0) != 0 and not all(env.get(k, {}).get("value") for k in ("USER", "LOGNAME")):
            err("%s: runs as uid %s but sets no USER/LOGNAME (the image has no passwd entry for it)"
                % (name, spec["securityContext"]["runAsUser"]))
        # Secrets by reference only.
        for entry in container.get("env", []):
            if SECRET_ENV.search(entry["name"]) and "value" in entry:
                err("%s: env %s inlines a secret" % (name, entry["name"]))
        image = container["image"]
        if ":" not in image.rsplit("/", 1)[-1] or image.endswith(":latest"):
            err("%s: image %s is not pinned" % (name, image))
        # Models outside the active GPU mode keep their objects at 0 replicas.
        want = 1 if (not model["modes"] or active_mode in model["modes"]) else 0
        if replicas != want:
            err("%s: %d replicas in mode %s, expected %d" % (name, replicas, active_mode, want))
    return errors
