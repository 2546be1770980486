"""Jobs for serve_matrix.py whose vLLM arguments are the ones the collection deploys:
playbooks/render.yml renders an inventory of the pairs, and each job's arguments are
read back from its rendered Deployment (issue 12: re-verify on the role's path).

Runs here, on the controller (the dev venv's ansible-playbook). For every pair
(PAIRS: a gen_models.py shape on an emulated home card) the generated inventory
has one GPU worker with that card serving that model from its local path on the
GPU machine (/tmp/models/<model>); preflight reads the model's own config.json
(gen_models.hf_config, what gen_models writes there) from a config folder,
compiles the stack model and plans, and the vllm role renders the Deployment.
Nothing here calls the planner itself: the arguments and the plan annotation
are what render.yml wrote.

Usage: .venv/bin/python tests/gpu/role_path.py [OUT.json]   (default tests/gpu/jobs_role.json)
Then on the GPU machine, as in README.md: stage a with GEN1/GEN2 naming the
models of PAIRS, stage b with JOBS=jobs_role.json.
"""
import json
import os
import subprocess
import sys
import tempfile

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

import gen_models  # noqa: E402
from plan_matrix import CARDS, EMULATED, MODELS_DIR, dns, strip_endpoint  # noqa: E402

# >= 8 pairs: Qwen vocabularies (151936 tied, 152064 untied), tied embeddings,
# an MHA shape, AWQ and bf16, the three card sizes.
PAIRS = [("qwen2.5-0.5b", "12gb"), ("qwen2.5-3b", "12gb"), ("qwen2.5-3b", "16gb"),
         ("qwen2.5-7b-awq", "12gb"), ("qwen2.5-7b-awq", "16gb"), ("qwen2.5-14b-awq", "16gb"),
         ("qwen2.5-14b-awq", "24gb"), ("llama-3.1-8b-awq", "12gb"), ("llama-3.1-8b", "24gb"),
         ("qwen1.5-1.8b", "12gb")]
# --switch (issue 14): the example inventory's pair on one 12 GB card, switch: sleep,
# the chat model in ml and the reasoning model in r1.
SWITCH_PAIR = [("llama-3.1-8b-awq", "12gb", "ml"), ("qwen2.5-7b-awq", "12gb", "r1")]


def inventory(into, configs, switch=False, level=None):
    """An inventory of one GPU worker per pair (inventories/local's tiers and modes), or
    with ``switch`` one worker holding SWITCH_PAIR with switch: sleep (at sleep_level
    ``level``, else the planner's choice)."""
    pairs = [(m, c) for m, c, _mode in SWITCH_PAIR] if switch else PAIRS
    hosts = dict(("gpu-%02d" % i, None) for i in range(1 if switch else len(pairs)))
    inv = os.path.join(into, "inventory")
    os.makedirs(os.path.join(inv, "host_vars"))
    os.makedirs(os.path.join(inv, "group_vars", "all"))
    with open(os.path.join(ROOT, "inventories", "local", "group_vars", "all", "main.yml")) as fh:
        group_vars = yaml.safe_load(fh)
    group_vars.update(gpu_stack_model_configs=configs, gpu_stack_model_hub=False,
                      vllm_planner_tunables=EMULATED)
    with open(os.path.join(inv, "hosts.yml"), "w") as fh:
        yaml.safe_dump({"all": {"children": {"k3s_servers": {"hosts": {"gs-server": None}},
                                             "k3s_agents": {"hosts": dict(hosts, **{"gs-cpu": None})},
                                             "gpu_workers": {"hosts": dict(hosts)}}}}, fh)
    specs = []
    for model, card in pairs:
        _cfg, _dtype, quant, _namesake = gen_models.MODELS[model]
        spec = {"name": dns("%s-%s" % (model, card)), "source": os.path.join(MODELS_DIR, model),
                "modes": ["ml"], "cache": {"path": "/var/lib/gpu-stack/models"}}
        if quant:
            spec.update(quantization="awq_marlin", dtype="float16")
        specs.append((card, spec))
    if switch:
        # Both pods stay on the one card.
        group_vars.update(gpu_stack_gpu_modes=["ml", "r1", "gaming"], gpu_addons_time_slicing_replicas=2)
        for (card, spec), (_m, _c, mode) in zip(specs, SWITCH_PAIR):
            spec.update(modes=[mode], switch="sleep")
            if level:
                spec["sleep_level"] = level
        placed = [("gpu-00", [spec for _card, spec in specs], specs[0][0])]
    else:
        placed = [(host, [spec], card) for host, (card, spec) in zip(hosts, specs)]
    with open(os.path.join(inv, "group_vars", "all", "main.yml"), "w") as fh:
        yaml.safe_dump(group_vars, fh)
    for host, models, card in placed:
        with open(os.path.join(inv, "host_vars", host + ".yml"), "w") as fh:
            yaml.safe_dump({"gpu_stack_gpu": {"model": CARDS[card][0], "vram_mib": CARDS[card][1], "count": 1},
                            "gpu_stack_models": models}, fh)
    return inv


def main():
    switch = "--switch" in sys.argv
    # --level 2: the switch pair planned for sleep level 2 (each awake model
    # keeps room for what its reload holds); levels 1 and 2 both run on it.
    argv = [a for a in sys.argv[1:] if a != "--switch"]
    level = None
    if "--level" in argv:
        i = argv.index("--level")
        level = int(argv[i + 1])
        del argv[i:i + 2]
    out = argv[0] if argv else os.path.join(HERE, "jobs_switch.json" if switch else "jobs_role.json")
    pairs = [(m, c) for m, c, _mode in SWITCH_PAIR] if switch else PAIRS
    with tempfile.TemporaryDirectory() as tmp:
        configs = os.path.join(tmp, "configs")
        for model in set(m for m, _card in pairs):
            os.makedirs(os.path.join(configs, model))
            with open(os.path.join(configs, model, "config.json"), "w") as fh:
                json.dump(gen_models.hf_config(model), fh)
        rendered = os.path.join(tmp, "rendered")
        proc = subprocess.run(
            [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "playbooks/render.yml",
             "-i", inventory(tmp, configs, switch, level),
             "-e", json.dumps({"gpu_stack_render_dir": rendered, "gpu_stack_render_addons": False,
                               "gpu_stack_render_gateway": False})],
            cwd=ROOT, env=dict(os.environ, HF_HUB_OFFLINE="1"), capture_output=True, text=True, check=False)
        if proc.returncode:
            sys.exit("render.yml failed:\n" + (proc.stdout + proc.stderr)[-4000:])
        jobs = []
        for model, card in pairs:
            name = "%s@%s" % (model, card)
            with open(os.path.join(rendered, "deployment-%s.yaml" % dns("%s-%s" % (model, card)))) as fh:
                deployment = yaml.safe_load(fh)
            plan = json.loads(deployment["metadata"]["annotations"]["gpu-stack.homelab/plan"])
            args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
            jobs.append({"name": name, "model": model, "namesake": gen_models.MODELS[model][3], "card": card,
                         "card_name": CARDS[card][0], "card_mib": CARDS[card][1], "kind": "role",
                         "args": strip_endpoint(args), "shape_source": plan["shape_source"],
                         "predicted": {"kv_tokens": plan["kv_cache_tokens"], "kv_cache_gib": plan["kv_cache_gib"],
                                       "weight_gib": plan["weight_gib"],
                                       "activation_gib": round(plan["activation_bytes"] / 2 ** 30, 3),
                                       "non_torch_gib": round(plan["non_torch_bytes"] / 2 ** 30, 3),
                                       "requested_gib": round(plan["requested_bytes"] / 2 ** 30, 3)},
                         "plan": plan, "bench": None,
                         "env": dict((e["name"], e["value"]) for e in deployment["spec"]["template"]["spec"]
                                     ["containers"][0]["env"] if e["name"].startswith("VLLM_SERVER")),
                         "modes": [mode for m, c, mode in SWITCH_PAIR if (m, c) == (model, card)],
                         "switch": plan.get("sleep_level") and "sleep" or "scale",
                         "sleep_level": plan.get("sleep_level")})
    with open(out, "w") as fh:
        json.dump({"models_dir": MODELS_DIR, "cards": CARDS, "bench_at_end": False, "bench_rounds": 0,
                   "jobs": jobs, "planner_refused": []}, fh, indent=1)
    for job in jobs:
        print("%-24s pred_kv=%-8s %s" % (job["name"], job["predicted"]["kv_tokens"], " ".join(job["args"])))


if __name__ == "__main__":
    main()
