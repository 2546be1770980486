# -*- coding: utf-8 -*-
# Copyright: homelab.gpu_stack contributors
# Apache License 2.0 (see LICENSE)
"""Cross-field checks over the whole inventory, run once before anything changes.

Per-field checks live with the shapes in model_spec.py; what needs several
hosts or several variables at once (groups, GPU counts, modes, routes) lives
here. ``check_inventory`` returns the normalised view every later stage uses.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import difflib

from ansible_collections.homelab.gpu_stack.plugins.module_utils.gpu_switch import runs_in_mode
from ansible_collections.homelab.gpu_stack.plugins.module_utils.model_spec import (
    DNS_LABEL, DNS_SUBDOMAIN, SpecError, collect_models, normalize_gpu, normalize_tiers, public, route_models)

K3S_GROUPS = ("k3s_servers", "k3s_agents")

# Every gpu_stack_* variable an inventory may set (README "Inventory");
# tests/unit/test_model_spec.py checks the collection reads no other.
KNOWN_VARS = (
    "gpu_stack_gateway_keys", "gpu_stack_gpu", "gpu_stack_gpu_facts_missing", "gpu_stack_gpu_mode",
    "gpu_stack_gpu_modes", "gpu_stack_ingress_address", "gpu_stack_kube_context", "gpu_stack_kubeconfig",
    "gpu_stack_model_configs", "gpu_stack_model_hub", "gpu_stack_models", "gpu_stack_monitoring",
    "gpu_stack_status_page",
    "gpu_stack_namespace", "gpu_stack_render_addons", "gpu_stack_render_dir", "gpu_stack_render_gateway",
    "gpu_stack_render_secrets", "gpu_stack_sandbox", "gpu_stack_tiers",
)
# Set by the collection's own modules at run time, never by an inventory.
RUNTIME_VARS = ("gpu_stack_gpu_facts", "gpu_stack_gpus", "gpu_stack_gpu_summary")


def _group(groups, name):
    return list(groups.get(name) or [])


def unknown_variables(names_by_host):
    """Warnings for variables that look like the collection's but are not.

    ``names_by_host``: {host: [variable names]}. A misspelled gpu_stack_models
    would leave a GPU worker silently serving nothing. Returns one message per
    variable, naming the closest known name.
    """
    warnings = []
    for host in sorted(names_by_host):
        for name in sorted(names_by_host[host]):
            if name in KNOWN_VARS or name in RUNTIME_VARS:
                continue
            close = difflib.get_close_matches(name, KNOWN_VARS, n=1, cutoff=0.8)
            if not (name.startswith("gpu_stack") or close):
                continue
            hint = "did you mean %s?" % close[0] if close else "known: %s" % ", ".join(KNOWN_VARS)
            warnings.append("%s on host %s: not a variable of homelab.gpu_stack, nothing reads it; %s"
                            % (name, host, hint))
    return warnings


def check_groups(groups):
    servers = _group(groups, "k3s_servers")
    if not servers:
        raise SpecError("k3s_servers: the group has no host; one host (or three for HA) "
                        "must run the k3s server")
    members = set(servers) | set(_group(groups, "k3s_agents"))
    for host in _group(groups, "gpu_workers"):
        if host not in members:
            raise SpecError("gpu_workers: host %s is not in k3s_servers or k3s_agents, so k3s "
                            "would never run on it; add it to one of them" % host)


def check_gpus(hostvars, groups):
    gpus = {}
    for host in _group(groups, "gpu_workers"):
        raw = (hostvars.get(host) or {}).get("gpu_stack_gpu")
        if raw is None:
            raise SpecError("gpu_stack_gpu on host %s: a GPU worker must describe its card "
                            "({model, vram_mib, count})" % host)
        gpus[host] = normalize_gpu(raw, host)
    return gpus


def check_models_hosts(hostvars, groups):
    workers = set(_group(groups, "gpu_workers"))
    for host in sorted(hostvars):
        if host not in workers and (hostvars.get(host) or {}).get("gpu_stack_models"):
            raise SpecError("gpu_stack_models on host %s: the host is not in gpu_workers, "
                            "so nothing would serve these models" % host)


def check_modes(models, modes, active):
    if not isinstance(modes, list) or not all(isinstance(m, str) for m in modes) or not modes:
        raise SpecError("gpu_stack_gpu_modes: must be a non-empty list of mode names")
    if active not in modes:
        raise SpecError("gpu_stack_gpu_mode: %r is not one of gpu_stack_gpu_modes (%s)"
                        % (active, ", ".join(modes)))
    for model in models:
        for mode in model["modes"]:
            if mode not in modes:
                raise SpecError("%s.modes: %r is not one of gpu_stack_gpu_modes (%s)"
                                % (model["_where"], mode, ", ".join(modes)))


def check_capacity(models, gpus, modes):
    """GPU count per model, and the GPUs of a node never over-committed in one mode.

    A model with no modes is served in every mode.
    """
    for model in models:
        gpu = gpus[model["node"]]
        if model["tensor_parallel_size"] > gpu["count"]:
            raise SpecError("%s.tensor_parallel_size: %d GPUs asked, host %s has %d"
                            % (model["_where"], model["tensor_parallel_size"], model["node"],
                               gpu["count"]))
    for mode in modes:
        by_node = {}
        for model in models:
            if runs_in_mode(model, mode):
                by_node.setdefault(model["node"], []).append(model)
        for node, group in sorted(by_node.items()):
            want = sum(m["tensor_parallel_size"] for m in group)
            if want > gpus[node]["count"]:
                raise SpecError("gpu_stack_models on host %s: %s need %d GPUs together in mode "
                                "%r, the host has %d; give them different modes"
                                % (node, " and ".join(m["name"] for m in group), want, mode,
                                   gpus[node]["count"]))


# Inventory variables that become Kubernetes names: (variable, rule, what).
K8S_NAMES = (
    ("gpu_stack_namespace", DNS_LABEL, "a lowercase DNS label (letters, digits, '-'), at most 63 characters"),
    ("litellm_ingress_host", DNS_SUBDOMAIN,
     "a lowercase DNS name (labels of letters, digits, '-' joined by '.', no '_', no trailing dot)"),
    ("vllm_ingress_domain", DNS_SUBDOMAIN,
     "a lowercase DNS name (labels of letters, digits, '-' joined by '.', no '_', no trailing dot)"),
)


def check_k8s_names(hostvars, groups):
    """The names the inventory gives Kubernetes objects and Ingress hosts.

    Read from the first server's variables (group_vars/all in practice).
    """
    first = (_group(groups, "k3s_servers") or [None])[0]
    variables = hostvars.get(first) or {}
    for var, rule, what in K8S_NAMES:
        if var not in variables:
            continue
        value = variables[var]
        if not isinstance(value, str) or not rule.match(value) or len(value) > 253:
            raise SpecError("%s: %r must be %s; Kubernetes refuses anything else" % (var, value, what))


def check_inventory(hostvars, groups, modes, active_mode, tiers):
    """Validate the inventory as a whole; return its normalised view.

    ``hostvars`` maps host -> its variables (gpu_stack_gpu, gpu_stack_models
    and the K8S_NAMES of the first server are read). Raises SpecError with the
    variable path.
    """
    check_groups(groups)
    check_k8s_names(hostvars, groups)
    check_models_hosts(hostvars, groups)
    gpus = check_gpus(hostvars, groups)
    models = collect_models(hostvars, _group(groups, "gpu_workers"))
    check_modes(models, modes, active_mode)
    check_capacity(models, gpus, modes)
    tier_map = normalize_tiers(tiers)
    routes = route_models(models, tier_map)
    return {
        "models": [public(m) for m in models],
        # Where each model is listed, for the later refusals (its shape, its plan).
        "where": dict((m["name"], m["_where"]) for m in models),
        "gpus": gpus,
        # No secret leaves preflight: a tier keeps only whether it has a key.
        "tiers": dict((name, dict(((k, v) for k, v in public(t).items() if k != "api_key"),
                                  has_api_key=bool(t["api_key"])))
                      for name, t in tier_map.items()),
        "routes": routes,
        "modes": modes,
        "active_mode": active_mode,
    }
