"""Write the job list for serve_matrix.py: the VRAM planner's plan and vLLM arguments for
every model shape (gen_models.py) on every emulated home card, plus the throughput jobs.

Runs here, on the controller (it needs Ansible's Python for the collection's filters);
the jobs file travels to the GPU machine with the repository. It uses the collection's
own code unchanged: model_spec.normalize_model for the spec, the `vram_plan` and
`vllm_args` filters (plugins/filter/vllm.py) for the plan and the command line. The
shape is what the role reads from the cached model (model_config.shape_from_hf_config
of the config.json and safetensors size gen_models.py writes); the plan from the
inventory-style shape alone (params_b) is recorded beside it.

Usage: .venv/bin/python tests/gpu/plan_matrix.py [OUT.json] [--only NAME ... [--requests N] [--rounds N]]
  (default tests/gpu/jobs.json). --only keeps the throughput jobs of the pairs named
  (e.g. qwen2.5-0.5b@12gb) for a comparison run of its own.
"""
import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, ".ansible", "collections"))
sys.path.insert(0, HERE)

from ansible.errors import AnsibleFilterError  # noqa: E402
from ansible_collections.homelab.gpu_stack.plugins.filter.vllm import vllm_args, vram_plan  # noqa: E402
from ansible_collections.homelab.gpu_stack.plugins.module_utils.model_spec import normalize_model  # noqa: E402
from ansible_collections.homelab.gpu_stack.plugins.module_utils.model_config import (  # noqa: E402
    shape_from_hf_config)

import gen_models  # noqa: E402

MODELS_DIR = "/tmp/models"
# nvidia-smi memory.total of the cards emulated (what gpu_facts reports for them).
CARDS = {"12gb": ("NVIDIA GeForce RTX 3060", 12288),
         "16gb": ("NVIDIA GeForce RTX 4060 Ti", 16380),
         "24gb": ("NVIDIA GeForce RTX 4090", 24564)}
# serve_matrix.py gives vLLM util x card MiB of the H100's CUDA memory: the emulated
# card's CUDA-visible memory is its whole memory.total. A real card's driver keeps
# 200-500 MiB of it (the planner's cuda_reserved_mib estimate), which cannot be
# emulated here; the planner is told there is none.
EMULATED = {"cuda_reserved_mib": 0}
BENCH = {"concurrency": 32, "requests": 128, "max_tokens": 128}
HAND_WRITTEN = ["--max-num-seqs", "8", "--max-model-len", "32768", "--gpu-memory-utilization", "0.90"]
# vLLM 0.26 picks max_num_batched_tokens/max_num_seqs by the GPU's memory (8192/1024
# at >= 70 GiB, 2048/256 below: engine/arg_utils.py). The emulated card is below, so
# its defaults are given explicitly, or the H100's larger ones would apply.
CARD_DEFAULTS = ["--max-num-batched-tokens", "2048"]
VLLM_DEFAULTS = CARD_DEFAULTS + ["--max-num-seqs", "256"]
ORDER = ["llama-3.1-8b", "llama-3.1-8b-awq", "qwen2.5-14b-awq", "qwen2.5-0.5b", "qwen2.5-3b",
         "qwen2.5-7b-awq"]


def dns(name):
    return name.replace(".", "-")


def spec(model):
    _cfg, _dtype, quant, namesake = gen_models.MODELS[model]
    raw = {"name": dns(model), "source": os.path.join(MODELS_DIR, model), "served_name": model,
           "dtype": "float16" if quant else "auto", "quantization": "awq_marlin" if quant else None,
           "shape": gen_models.planner_shape(model)}
    return normalize_model({k: v for k, v in raw.items() if v is not None}, "gpu-host", 0), namesake


def strip_endpoint(args):
    """vllm_args builds `vllm serve SOURCE --served-model-name N --host H --port P ...`;
    serve_matrix.py sets the model, name and port itself."""
    out, skip = [], 0
    for i, a in enumerate(args):
        if skip:
            skip -= 1
            continue
        if i == 0:
            continue
        if a in ("--served-model-name", "--host", "--port"):
            skip = 1
            continue
        out.append(a)
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out", nargs="?", default=os.path.join(HERE, "jobs.json"))
    parser.add_argument("--only", nargs="+", help="keep only these pairs' throughput jobs")
    parser.add_argument("--requests", type=int, default=BENCH["requests"])
    parser.add_argument("--rounds", type=int, default=3)
    opts = parser.parse_args()
    bench = dict(BENCH, requests=opts.requests)
    jobs, skipped = [], []
    for model in ORDER:
        model_spec, namesake = spec(model)
        config_shape = shape_from_hf_config(gen_models.hf_config(model), gen_models.checkpoint_bytes(model))
        for card, (card_name, mib) in CARDS.items():
            gpu = {"model": card_name, "vram_mib": mib, "count": 1}
            name = "%s@%s" % (model, card)
            try:
                plan = vram_plan(model_spec, gpu, config_shape=config_shape, tunables=EMULATED)
            except AnsibleFilterError as exc:
                skipped.append({"name": name, "planner": str(exc)})
                continue
            try:
                spec_only = vram_plan(model_spec, gpu, tunables=EMULATED)
                spec_pred = {"kv_tokens": spec_only["kv_cache_tokens"], "weight_gib": spec_only["weight_gib"],
                             "max_num_seqs": spec_only["max_num_seqs"], "max_model_len": spec_only["max_model_len"]}
            except AnsibleFilterError as exc:
                spec_pred = {"error": str(exc)}
            args = strip_endpoint(vllm_args(model_spec, plan))
            job = {"name": name, "model": model, "namesake": namesake, "card": card, "card_name": card_name,
                   "card_mib": mib, "kind": "planner", "args": args,
                   "predicted": {"kv_tokens": plan["kv_cache_tokens"], "kv_cache_gib": plan["kv_cache_gib"],
                                 "weight_gib": plan["weight_gib"],
                                 "activation_gib": round(plan["activation_bytes"] / 2 ** 30, 3),
                                 "non_torch_gib": round(plan["non_torch_bytes"] / 2 ** 30, 3),
                                 "requested_gib": round(plan["requested_bytes"] / 2 ** 30, 3)},
                   "predicted_from_spec_shape": spec_pred, "plan": plan, "bench": None}
            jobs.append(job)
    # The throughput comparisons (P6), in the same run: the planner's arguments
    # against a typical hand-written manifest (8B on 24 GB) and against vLLM's
    # own defaults (0.5B on 12 GB, a pair where the defaults start). Listed last:
    # these servers stay up until every other job is done and are then
    # benchmarked together, with nothing else starting.
    for name, other, args in (("llama-3.1-8b@24gb", "handwritten", HAND_WRITTEN + CARD_DEFAULTS),
                              ("qwen2.5-0.5b@12gb", "vllm-defaults", VLLM_DEFAULTS)):
        job = next(j for j in jobs if j["name"] == name)
        jobs.remove(job)
        job["bench"] = bench
        if other == "handwritten":
            args = job["args"][:job["args"].index("--gpu-memory-utilization")] + args  # --dtype, -tp
        jobs += [job, dict(job, name="%s-%s" % (name, other), kind=other, args=args, predicted=None,
                           predicted_from_spec_shape=None, plan=None)]
    if opts.only:
        jobs = [j for j in jobs if j["bench"] and any(j["name"] in (o, o + "-" + j["kind"]) for o in opts.only)]
    with open(opts.out, "w") as fh:
        json.dump({"models_dir": MODELS_DIR, "cards": CARDS, "bench_at_end": True, "bench_rounds": opts.rounds,
                   "jobs": jobs, "planner_refused": skipped}, fh, indent=1)
    for j in jobs:
        print("%-32s %-13s pred_kv=%-9s %s" % (j["name"], j["kind"], (j["predicted"] or {}).get("kv_tokens"),
                                               " ".join(j["args"])))
    for s in skipped:
        print("%-32s planner refused: %s" % (s["name"], s["planner"][:150]))


if __name__ == "__main__":
    main()
