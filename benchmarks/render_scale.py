# Copyright: homelab.gpu_stack contributors
# Apache License 2.0 (see LICENSE)
"""P5: render and validate the stack for 5 and for 50 models; print t5, t50 and the ratio.

    .venv/bin/python benchmarks/render_scale.py [--sizes 5 50] [--repeat 1]

Each size gets a generated inventory (inventories/local's group_vars, one
single-GPU worker per model, an 8B AWQ model each whose config.json lies in the
inventory's config folder, as preflight reads it offline), rendered with
playbooks/render.yml (scope "serving": the vllm role alone; "stack": add-ons,
vLLM and gateway), then every object is validated
strictly against the pinned k3s's Kubernetes OpenAPI schema and the vLLM
objects go through the render tests' semantic checks. Goal (issue 12): t(50) <= 10 s,
t(50)/t(5) <= 3.
"""

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests" / "render"), str(ROOT / ".ansible" / "collections")]

from serving_checks import inventory_models, load_objects, render, semantic_errors, validate_all  # noqa: E402

CONFIG = ROOT / "tests" / "fixtures" / "model-configs" / "models--hugging-quants--Meta-Llama-3.1-8B-Instruct-AWQ-INT4"


def make_inventory(into, count):
    inv = Path(into) / "inventory"
    shutil.copytree(ROOT / "inventories" / "local" / "group_vars", inv / "group_vars")
    # gpu_stack_model_configs: ../model-configs, one config.json per model's repo.
    for i in range(count):
        shutil.copytree(CONFIG, Path(into) / "model-configs" / ("models--org--model-%02d" % i))
    hosts = dict(("gpu-%02d" % i, None) for i in range(count))
    (inv / "hosts.yml").write_text(yaml.safe_dump({"all": {"children": {
        "k3s_servers": {"hosts": {"server": None}},
        # gs-cpu: inventories/local's deployed cpu tier runs there.
        "k3s_agents": {"hosts": dict(hosts, **{"gs-cpu": None})},
        "gpu_workers": {"hosts": hosts}}}}))
    (inv / "host_vars").mkdir()
    for i, host in enumerate(hosts):
        (inv / "host_vars" / ("%s.yml" % host)).write_text(yaml.safe_dump({
            "gpu_stack_gpu": {"model": "RTX 4090", "vram_mib": 24564, "count": 1},
            "gpu_stack_models": [{"name": "model-%02d" % i, "source": "org/model-%02d" % i,
                                  "quantization": "awq_marlin", "dtype": "float16", "modes": ["ml"],
                                  "cache": {"size_gib": 6}}]}))
    return inv


# The per-model Ingresses on (with the key vLLM then asks for), as the render
# tests render them: serving_checks' semantic checks look at every object.
INGRESS = {"vllm_ingress_enabled": True, "vllm_api_key": "sk-vllm-benchmarkKey0123456789"}
SCOPES = {
    "stack": INGRESS,
    "serving": dict(INGRESS, gpu_stack_render_addons=False, gpu_stack_render_gateway=False),
}


def run(count, scope):
    with tempfile.TemporaryDirectory() as tmp:
        inv = make_inventory(tmp, count)
        out = Path(tmp) / "rendered"
        start = time.monotonic()
        cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        code, output = render(inv, out, extra=SCOPES[scope])
        rendered = time.monotonic()
        cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
        if code:
            sys.exit("render of %d models failed:\n%s" % (count, output[-3000:]))
        objects = load_objects(out)
        checked = validate_all(objects)
        models, gpus, active = inventory_models(inv)
        errors = semantic_errors(objects, models, gpus, active)
        done = time.monotonic()
        if errors or len(models) != count:
            sys.exit("validation of %d models failed: %s" % (count, errors[:5]))
        return done - start, rendered - start, cpu, done - rendered, len(objects), checked


def main():
    print("P5 load average %.2f on %d CPUs (wall times stretch when the machine is shared)"
          % (os.getloadavg()[0], os.cpu_count()), flush=True)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--sizes", type=int, nargs=2, default=[5, 50])
    parser.add_argument("--repeat", type=int, default=1, help="runs per size; the best is kept")
    parser.add_argument("--scope", choices=sorted(SCOPES), nargs="+", default=["serving", "stack"],
                        help="serving: the vllm role only; stack: add-ons + vllm + gateway")
    args = parser.parse_args()
    for scope in args.scope:
        results = {}
        for size in args.sizes:
            best = min(run(size, scope) for _run in range(args.repeat))
            results[size] = best
            print("P5 %s models=%d: total %.2f s (render %.2f s wall / %.2f s CPU, validate %.2f s), "
                  "%d objects, %d validated strictly" % ((scope, size) + best), flush=True)
        small, large = args.sizes
        t_small, t_large = results[small][0], results[large][0]
        print("P5 %s t%d=%.2f s t%d=%.2f s ratio t%d/t%d=%.2f (goal: t%d <= 10 s, ratio <= 3)"
              % (scope, small, t_small, large, t_large, large, small, t_large / t_small, large), flush=True)


if __name__ == "__main__":
    main()
