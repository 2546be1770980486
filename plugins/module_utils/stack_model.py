# -*- coding: utf-8 -*-
# Copyright: homelab.gpu_stack contributors
# Apache License 2.0 (see LICENSE)
"""The stack model: the inventory compiled once, in preflight, for every later stage.

``compile_stack`` takes the normalised inventory (``inventory.check_inventory``)
and the tunables, resolves each model's shape from its own config.json
(``model_config.resolve_shape``), plans it once on its card and returns plain
data: per model the spec, node, card, shape and its source, plan, vLLM
arguments, whether it runs in the active mode, replicas, labels, Service; for
the gateway its tiers, routes and key variable names. No secret enters it (the
tiers lose their ``api_key``). The roles' templates, render.yml, gpu_mode.yml,
the picture and the summary read it; none of them normalises or plans again.

The rules that used to be written at each reader live here once: the labels
(``labels``), the vLLM port (``VLLM_PORT``), which models run in a mode
(``runs_in_mode``), a host's Kubernetes node name (``node_names``), the vLLM
argument list (``vllm_args``) and what a model's cache must hold (``cache_gib``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import re

from ansible_collections.homelab.gpu_stack.plugins.module_utils import gpu_switch, model_config, vram_planner
from ansible_collections.homelab.gpu_stack.plugins.module_utils.model_spec import SpecError, tier_chain

VLLM_PORT = 8000
PART_OF = "homelab-gpu-stack"
MANAGED_BY = "homelab.gpu_stack"
NAME_LABEL = "app.kubernetes.io/name"
INSTANCE_LABEL = "app.kubernetes.io/instance"
# The readiness gate of a switch: sleep model's pod: True once the switch path
# woke it and it answered (gpu_switch), so the Service routes only to it then.
AWAKE_CONDITION = "gpu-stack.homelab/awake"
# What the roles label their objects as (app.kubernetes.io/name).
COMPONENTS = ("vllm", "litellm", "cpu-tier", "gpu-addons", "monitoring", "open-webui", "gpu-mode")

# extra_args that change the memory plan: handed to the planner as tunables
# so the plan and the flags agree.
EXTRA_TO_TUNABLE = {
    "kv-cache-dtype": "kv_cache_dtype",
    "enforce-eager": "enforce_eager",
    "max-num-batched-tokens": "max_num_batched_tokens",
    "block-size": "block_size",
    "gpu-memory-utilization": "gpu_memory_utilization",
    "max-cudagraph-capture-size": "sleep_cudagraph_capture_max",
}
# Flags the plan sets; an extra_args entry of the same name replaces ours.
PLANNED_FLAGS = ("gpu-memory-utilization", "max-model-len", "max-num-seqs", "max-num-batched-tokens")
SHAPE_SOURCE_WORDS = {"node": "the node's model cache", "hub": "the Hugging Face Hub",
                      "folder": "gpu_stack_model_configs", "spec": "the spec"}


def labels(component, instance=None):
    """The labels of every object the collection makes (one spelling of part-of)."""
    out = {NAME_LABEL: component, "app.kubernetes.io/part-of": PART_OF,
           "app.kubernetes.io/managed-by": MANAGED_BY}
    if instance:
        out[INSTANCE_LABEL] = instance
    return out


def selector(component, instance=None):
    out = {NAME_LABEL: component}
    if instance:
        out[INSTANCE_LABEL] = instance
    return out


# A model with no modes runs in every mode (as preflight's capacity check counts it);
# defined with the switch path, which the gpu-mode command carries without this module.
runs_in_mode = gpu_switch.runs_in_mode


def node_names(hosts, k3s_node_names, overrides=None):
    """{inventory host: Kubernetes node name}: the override, else k3s_node_name, else the host."""
    overrides = overrides or {}
    return dict((h, overrides.get(h) or (k3s_node_names or {}).get(h) or h) for h in hosts)


def key_env(tier_name):
    """The environment variable the gateway reads a tier's API key from."""
    return "LITELLM_TIER_%s_API_KEY" % re.sub("[^A-Z0-9]", "_", tier_name.upper())


def _flag(name, value):
    if value is True:
        return ["--%s" % name]
    # vLLM's boolean flags are BooleanOptionalAction: false must say so, since
    # leaving the flag out keeps vLLM's default (enable-prefix-caching is on).
    if value is False:
        return ["--no-%s" % name]
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return ["--%s" % name] + [str(v) for v in value]
    if isinstance(value, dict):
        return ["--%s" % name, json.dumps(value, sort_keys=True)]
    return ["--%s" % name, str(value)]


def vllm_args(model, plan, port=VLLM_PORT, host="0.0.0.0"):
    """vLLM's argument list (for `vllm serve`) from a normalised spec and its plan."""
    extra = dict(model.get("extra_args") or {})
    # The model goes first, positional: `vllm serve --model` is deprecated.
    args = [model["source"], "--served-model-name", model["served_name"], "--host", host, "--port", str(port)]
    if not model["source"].startswith("/"):
        args += ["--revision", model.get("revision") or "main"]
    if model.get("tokenizer"):
        args += ["--tokenizer", model["tokenizer"]]
    args += ["--dtype", model.get("dtype") or "auto"]
    if model.get("quantization"):
        args += ["--quantization", model["quantization"]]
    args += ["--tensor-parallel-size", str(model.get("tensor_parallel_size") or 1)]
    planned = {
        "gpu-memory-utilization": "%.2f" % plan["gpu_memory_utilization"],
        "max-model-len": plan["max_model_len"],
        "max-num-seqs": plan["max_num_seqs"],
        "max-num-batched-tokens": plan["max_num_batched_tokens"],
    }
    for flag in PLANNED_FLAGS:
        if flag not in extra:
            args += _flag(flag, planned[flag])
    if plan.get("enforce_eager") and "enforce-eager" not in extra:
        args += ["--enforce-eager"]
    if model.get("switch") == "sleep":
        # With sleep mode on, vLLM 0.26.0 sizes the KV cache from a negative
        # non-torch figure (62,288 tokens planned 32,352 on the H200; vllm#40256):
        # the plan's KV budget is given outright.
        args += ["--enable-sleep-mode", "--kv-cache-memory-bytes", str(plan["kv_cache_bytes"])]
        # The graphs stay on the card while the model sleeps (sleep_residual_bytes).
        if not plan.get("enforce_eager") and "max-cudagraph-capture-size" not in extra:
            args += ["--max-cudagraph-capture-size", str(plan["cudagraph_capture_max"])]
    for name in sorted(extra):
        args += _flag(name, extra[name])
    return args


def model_tunables(model, tunables=None):
    """The planner's tunables for a model: its extra_args that change memory added."""
    tun = dict(tunables or {})
    for flag, key in EXTRA_TO_TUNABLE.items():
        value = (model.get("extra_args") or {}).get(flag)
        if value is not None:
            tun[key] = value
    if model.get("switch") == "sleep":
        tun = vram_planner.sleep_tunables(**tun)
    return tun


def plan_model(model, shape, gpu, tunables=None, where=None, resident_bytes=0):
    """The one planner call for a model.

    ``resident_bytes``: what other models keep on the card while this one is
    awake (their sleep residuals): planned as a card that much smaller, and
    the utilisation re-expressed as a share of the whole card, since vLLM
    takes it of the memory CUDA reports and checks it against what is free
    at start (beside a sleeping server).
    """
    where = where or "model %s on host %s" % (model["name"], model.get("node"))
    tun = model_tunables(model, tunables)
    vram_mib = gpu["vram_mib"]
    if resident_bytes:
        if tun.get("cuda_reserved_mib") is None:
            tun["cuda_reserved_mib"] = vram_planner.cuda_reserved_estimate_mib(vram_mib)
        vram_mib -= int(resident_bytes // vram_planner.MIB) + 1
    try:
        plan = vram_planner.plan(shape, vram_mib, dtype=model.get("dtype") or "auto",
                                 quantization=model.get("quantization"),
                                 context_length=model.get("context_length", "auto"),
                                 tensor_parallel_size=model.get("tensor_parallel_size") or 1,
                                 name=model["name"], **tun)
    except vram_planner.PlanError as exc:
        # The planner's messages name the model; say where it is listed first.
        if resident_bytes:
            raise SpecError("%s: %s (the card less %.2f GiB that the models asleep beside it keep)"
                            % (where, exc, resident_bytes / vram_planner.GIB))
        raise SpecError("%s: %s" % (where, exc))
    if resident_bytes:
        whole = (gpu["vram_mib"] - plan["cuda_reserved_mib"]) * vram_planner.MIB
        plan["gpu_memory_utilization"] = int(plan["requested_bytes"] * 100 // whole) / 100.0
        plan["vram_bytes"] = int(whole)
    plan["resident_bytes"] = int(resident_bytes)
    return plan


def sleep_levels(models, shapes, where, host_ram_mib=None, tunables=None):
    """{model name: 1 or 2} for the switch: sleep models, and the refusal of a level 1 the node cannot hold.

    Level 1 parks each sleeping model's weights in the node's memory
    (sleep_host_factor x its weights); an unset level is 1 where every level-1
    model of the node fits in half its memory, else 2. A node whose memory is
    unknown (render.yml reads no facts) keeps level 1.
    """
    host_ram_mib = host_ram_mib or {}
    out = {}
    for node in sorted(set(m["node"] for m in models if m.get("switch") == "sleep")):
        here = [m for m in models if m["node"] == node and m.get("switch") == "sleep"]
        need = dict((m["name"], vram_planner.sleep_host_bytes(
            shapes[m["name"]], m.get("dtype") or "auto", m.get("quantization"), **model_tunables(m, tunables))
            / vram_planner.MIB) for m in here)
        ram = host_ram_mib.get(node)
        asked = [m for m in here if m.get("sleep_level") == 1]
        if ram and asked and sum(need[m["name"]] for m in asked) > ram / 2:
            raise SpecError("%s.sleep_level: 1 parks %.1f GiB of weights in host memory on %s (the level-1 models %s), "
                            "more than half of its %.1f GiB; use sleep_level: 2 (reloads from disk on wake, ~1 s more)"
                            % (where[asked[-1]["name"]], sum(need[m["name"]] for m in asked) / 1024.0, node,
                               ", ".join(m["name"] for m in asked), ram / 1024.0))
        fits = not ram or sum(need.values()) <= ram / 2
        for m in here:
            out[m["name"]] = m.get("sleep_level") or (1 if fits else 2)
    return out


def cache_gib(model, shape):
    """What a model's cache must hold: cache.size_gib, else its weights (the one size rule)."""
    size = (model.get("cache") or {}).get("size_gib")
    if size:
        return float(size)
    return round(vram_planner.weight_bytes(shape, model.get("dtype") or "auto", model.get("quantization"))
                 / vram_planner.GIB, 2)


def _refusal(where, model, tried):
    said = "; ".join("%s: %s" % (SHAPE_SOURCE_WORDS[name], why) for name, why in tried)
    return ("%s.shape: no complete shape for model %s (%s); the planner needs %s and never guesses them: %s"
            % (where, model["name"], said, ", ".join(model_config.COMPLETE_FIELDS), model_config.HOW_TO_GIVE))


def compile_stack(view, node_configs=None, hub=None, config_folder=None, tunables=None, port=VLLM_PORT,
                  namespace="llm", names=None, host_ram_mib=None, vllm_key=False):
    """The stack model of a normalised inventory ``view`` (inventory.check_inventory).

    ``node_configs``: {model name: {config, weight_bytes}} read on the nodes;
    ``hub``: (repo, revision) -> config dict or None (None: offline);
    ``config_folder``: gpu_stack_model_configs; ``names``: node_names();
    ``host_ram_mib``: {host: MiB of memory} where facts were read (sleep levels);
    ``vllm_key``: whether vLLM asks for a key (vllm_api_key set; the key itself stays out).
    Raises SpecError naming the model spec's path on a shape no source gives
    completely, or a model the card cannot hold.
    """
    node_configs = node_configs or {}
    names = names or {}
    mode = view["active_mode"]
    gpu_tiers = [n for n, t in view["tiers"].items() if t["kind"] == "gpu"]
    models = []
    used = {}
    for spec in view["models"]:
        if runs_in_mode(spec, mode):
            used[spec["node"]] = used.get(spec["node"], 0) + spec["tensor_parallel_size"]
    shapes = {}
    for spec in view["models"]:
        shape, source = model_config.resolve_shape(spec, node_configs.get(spec["name"]), hub, config_folder)
        if shape is None:
            raise SpecError(_refusal(view["where"][spec["name"]], spec, source))
        shapes[spec["name"]] = (shape, source)
    levels = sleep_levels(view["models"], dict((n, s[0]) for n, s in shapes.items()), view["where"],
                          host_ram_mib, tunables)
    # What each switch: sleep model keeps on its card while asleep; every other
    # model of the node is planned around it.
    residual = dict((s["name"], vram_planner.sleep_residual_bytes(
        shapes[s["name"]][0], s["tensor_parallel_size"], **model_tunables(s, tunables)))
        for s in view["models"] if s["switch"] == "sleep")
    for spec in view["models"]:
        where = view["where"][spec["name"]]
        shape, source = shapes[spec["name"]]
        gpu = view["gpus"][spec["node"]]
        tun = model_tunables(spec, tunables)
        resident = sum(residual[s["name"]] for s in view["models"]
                       if s["name"] in residual and s["node"] == spec["node"] and s["name"] != spec["name"])
        reload_reserve = 0 if levels.get(spec["name"]) != 2 else vram_planner.sleep_reload_bytes(
            shape, spec.get("dtype") or "auto", spec.get("quantization"), spec["tensor_parallel_size"], **tun)
        plan = plan_model(spec, shape, gpu, tunables, where, resident + reload_reserve)
        plan["shape_source"] = source
        if spec["name"] in residual:
            plan["sleep_residual_bytes"] = residual[spec["name"]]
            plan["cudagraph_capture_max"] = vram_planner.sleep_cudagraph_capture_max(**tun)
            plan["sleep_level"] = levels[spec["name"]]
            plan["reload_reserve_bytes"] = reload_reserve
        active = runs_in_mode(spec, mode)
        service = spec["name"]
        models.append({
            "name": spec["name"], "spec": spec, "node": spec["node"],
            "node_name": names.get(spec["node"], spec["node"]), "gpu": gpu,
            "shape": shape, "shape_source": source, "shape_from": SHAPE_SOURCE_WORDS[source], "plan": plan,
            "args": vllm_args(spec, plan, port), "active": active,
            # A sleep model's replicas are the cluster's (0 on creation): its
            # pod stays, asleep outside its modes, and the switch path scales it.
            "switch": spec["switch"], "sleep_level": levels.get(spec["name"]),
            "replicas": None if spec["switch"] == "sleep" else 1 if active else 0,
            # No spare GPU on the node for a surge pod: the old pod goes first.
            # A sleep model shares its card with the others: never two of its pods at once.
            "strategy": "Recreate" if spec["switch"] == "sleep"
            or used.get(spec["node"], 0) + spec["tensor_parallel_size"] > gpu["count"]
            else "RollingUpdate",
            "labels": labels("vllm", spec["name"]), "selector": selector("vllm", spec["name"]),
            "service": {"name": service, "port": port,
                        "url": "http://%s.%s.svc:%d/v1" % (service, namespace, port)},
            "cache_gib": cache_gib(spec, shape),
            "route": view["routes"][spec["name"]],
        })
    tiers = dict((name, dict(t, chain=tier_chain(view["tiers"], name))) for name, t in view["tiers"].items())
    gateway = {
        "tiers": tiers,
        "gpu_tiers": gpu_tiers,
        "routes": view["routes"],
        # Past the gpu tiers: a model's group falls back to these groups.
        "chains": dict((m["name"], [t for t in m["route"] if t not in gpu_tiers]) for m in models),
        "key_env": dict((name, key_env(name)) for name, t in view["tiers"].items() if t.get("has_api_key")),
    }
    return {"mode": mode, "modes": view["modes"], "namespace": namespace, "vllm_port": port,
            # The mode rule applied to every mode, for what reads it per mode (monitoring's rules).
            "mode_models": dict((m, [s["name"] for s in view["models"] if runs_in_mode(s, m)]) for m in view["modes"]),
            "node_names": names, "gpus": view["gpus"], "labels": dict((c, labels(c)) for c in COMPONENTS),
            # Pods that hold one card at once (sleep models stay scheduled):
            # the device plugin's time-slicing replicas must cover them.
            "gpu_sharing": max([1] + [len([m for m in models if m["node"] == n["node"]])
                                      for n in models if n["switch"] == "sleep"]),
            "models": models, "gateway": gateway, "awake_condition": AWAKE_CONDITION,
            # A switch proves an arrival by a chat through the API's pod proxy,
            # which carries no key of ours: where vLLM asks for one, by /health.
            "chat_through_proxy": not vllm_key}
