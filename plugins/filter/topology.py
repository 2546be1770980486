# -*- coding: utf-8 -*-
# Copyright: homelab.gpu_stack contributors
# Apache License 2.0 (see LICENSE)
"""The picture of the stack: nodes, GPUs and VRAM, models and their plans, fallback chain.

``topology`` gathers the figures from the inventory (through the one model
spec and tier normalisation) and the VRAM planner; ``topology_svg`` draws them
as a self-contained SVG (no graphviz: plain shapes and text), which
rsvg-convert or cairosvg turn into a PNG.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: topology
short_description: Topology of the stack as data, for topology_svg
description:
  - Lays out the stack model preflight compiled (C(preflight_stack_model)) by node (k3s servers, agents,
    GPU workers), each GPU worker's card and models with the plan the Deployment runs (context,
    KV-cache budget, weights, where the shape came from), and the gateway's fallback chain.
  - Reads the stack model only; it neither normalises nor plans.
  - C(topology_svg) draws the result as an SVG document (a string).
positional: _input, groups, mode
options:
  _input:
    description: The stack model (C(hostvars['localhost'].preflight_stack_model)).
    type: dict
    required: true
  groups:
    description: C(groups).
    type: dict
    required: true
  mode:
    description: A GPU mode to draw instead of the stack model's active one; models outside it are drawn stopped.
    type: str
  ui_url:
    description: The chat page's URL (Open WebUI), shown under the title when given.
    type: str
"""

EXAMPLES = r"""
- name: Draw the stack
  ansible.builtin.copy:
    dest: rendered/topology.svg
    content: "{{ hostvars['localhost'].preflight_stack_model | homelab.gpu_stack.topology(groups) | homelab.gpu_stack.topology_svg }}"
    mode: "0644"
"""

RETURN = r"""
_value:
  description:
    - C(mode), C(nodes) (name, roles, gpu, models with plan, the cpu tiers it runs), C(chain) (the tiers in
      fallback order, each with the node it is deployed on, if any) and C(ui_url).
  type: dict
"""

from xml.sax.saxutils import escape

from ansible_collections.homelab.gpu_stack.plugins.module_utils.stack_model import runs_in_mode

GIB = float(1 << 30)
ROLE_GROUPS = (("k3s_servers", "k3s server"), ("k3s_agents", "k3s agent"), ("gpu_workers", "GPU worker"))


def topology(stack, groups, mode=None, ui_url=None):
    mode = mode or stack["mode"]
    tiers = stack["gateway"]["tiers"]
    gpu_tiers = stack["gateway"]["gpu_tiers"]
    hosts = []
    for group, _role in ROLE_GROUPS:
        for host in groups.get(group) or []:
            if host not in hosts:
                hosts.append(host)
    nodes = []
    for host in hosts:
        roles = [role for group, role in ROLE_GROUPS if host in (groups.get(group) or [])]
        node_models = []
        for entry in [m for m in stack["models"] if m["node"] == host]:
            spec = entry["spec"]
            node_models.append({
                "name": spec["name"], "served_name": spec["served_name"], "modes": spec["modes"],
                "active": runs_in_mode(spec, mode), "quantization": spec.get("quantization"),
                "tensor_parallel_size": spec["tensor_parallel_size"], "route": entry["route"],
                "plan": entry["plan"], "shape_source": entry["shape_source"],
            })
        # The cpu tiers the collection runs on this node (role cpu_tier).
        node_tiers = ["%s tier: %s, %s" % (t["name"], t["deploy"]["server"], t["model"]) for t in tiers.values()
                      if t.get("deploy") and t["deploy"]["host"] == host]
        nodes.append({"name": host, "roles": roles, "gpu": stack["gpus"].get(host), "models": node_models,
                      "tiers": node_tiers})
    chain = []
    for name in tiers[gpu_tiers[0] if gpu_tiers else next(iter(tiers))]["chain"]:
        tier = tiers[name]
        target = {"gpu": "vLLM on the GPU workers"}.get(tier["kind"]) or tier.get("model") or ""
        chain.append({"name": name, "kind": tier["kind"], "provider": tier["provider"], "target": target,
                      "api_base": tier.get("api_base"), "timeout_s": tier["timeout_s"],
                      "deployed_on": tier["deploy"]["host"] if tier.get("deploy") else None})
    return {"mode": mode, "nodes": nodes, "chain": chain, "ui_url": ui_url}


# --- drawing -------------------------------------------------------------------

COLORS = {"weights": "#4c78a8", "kv": "#54a24b", "overhead": "#f58518", "free": "#e0e0e0",
          "gpu": "#4c78a8", "cpu": "#72b7b2", "cloud": "#b279a2", "stopped": "#9e9e9e"}
FONT = "DejaVu Sans, Verdana, sans-serif"
NODE_W = 380
GAP = 30
MARGIN = 30


def _text(x, y, text, size=12, weight="normal", color="#222", anchor="start"):
    return ('<text x="%d" y="%d" font-family="%s" font-size="%d" font-weight="%s" fill="%s" '
            'text-anchor="%s">%s</text>' % (x, y, FONT, size, weight, color, anchor, escape(str(text))))


def _rect(x, y, w, h, fill, stroke="none", rx=0, dash=None):
    extra = ' stroke-dasharray="%s"' % dash if dash else ""
    return ('<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" rx="%d" fill="%s" stroke="%s"%s/>'
            % (x, y, max(w, 0), h, rx, fill, stroke, extra))


def _arrow(x1, y1, x2, y2, label=None, color="#555"):
    out = ['<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="1.5" marker-end="url(#arrow)"/>'
           % (x1, y1, x2, y2, color)]
    if label:
        out.append(_text((x1 + x2) // 2, min(y1, y2) + (abs(y2 - y1) // 2) - 6, label, 10, color="#555",
                         anchor="middle"))
    return out


def _fmt_tokens(tokens):
    if tokens >= 1000000:
        return "%.1fM" % (tokens / 1000000.0)
    return "%.1fk" % (tokens / 1000.0) if tokens >= 1000 else str(tokens)


def _vram_bar(x, y, w, gpu, models):
    """One bar for the node's card: weights, KV cache, overhead of the running models
    (activations, CUDA context and graphs, the driver's reserve), free."""
    total = float(gpu["vram_mib"]) * (1 << 20)
    parts = {"weights": 0.0, "kv": 0.0, "overhead": 0.0}
    for model in models:
        plan = model["plan"]
        if not model["active"]:
            continue
        tp = max(int(plan.get("tensor_parallel_size") or 1), 1)
        share = 1.0 / max(gpu["count"], 1) * tp
        parts["weights"] += plan.get("weight_bytes", 0) * share
        parts["kv"] += plan.get("kv_cache_bytes", 0) * share
        parts["overhead"] += (plan.get("activation_bytes", 0) + plan.get("non_torch_bytes", 0)
                              + plan.get("cudagraph_bytes", 0)) * share
    # The driver's share that CUDA never sees (the planner's cuda_reserved_mib) is
    # not free either, once a model is planned on the card.
    parts["overhead"] += max([m["plan"].get("cuda_reserved_mib", 0) for m in models
                              if m["active"]] or [0]) * float(1 << 20)
    out = [_rect(x, y, w, 18, COLORS["free"], "#999", 3)]
    cursor = x
    for key in ("weights", "kv", "overhead"):
        width = w * min(parts[key] / total, 1.0) if total else 0
        if width > 0.5:
            out.append(_rect(cursor, y, width, 18, COLORS[key]))
        cursor += width
    used = sum(parts.values())
    label = "%s x%d  %.1f GiB VRAM" % (gpu["model"], gpu["count"], gpu["vram_mib"] / 1024.0)
    out.append(_text(x, y - 5, label, 11, "bold"))
    free = "GPU free in this mode"
    if used:
        free = "%.1f GiB planned, %.1f GiB free" % (used / GIB, max(total - used, 0) / GIB)
    out.append(_text(x + w, y + 32, free, 10, color="#555", anchor="end"))
    return out


def _model_block(x, y, model):
    color = "#222" if model["active"] else COLORS["stopped"]
    state = "running" if model["active"] else "stopped in this mode"
    modes = ", ".join(model["modes"]) if model["modes"] else "every mode"
    facts = "modes: %s   quant: %s   TP %d" % (modes, model["quantization"] or "none", model["tensor_parallel_size"])
    lines = [_text(x, y, "%s  (%s)" % (model["served_name"], state), 12, "bold", color),
             _text(x, y + 16, facts, 11, color=color)]
    plan = model["plan"]
    lines.append(_text(x, y + 31, "context %d  |  KV %s tokens (%.2f GiB)  |  util %.2f"
                       % (plan["max_model_len"], _fmt_tokens(plan["kv_cache_tokens"]),
                          plan["kv_cache_bytes"] / GIB, plan["gpu_memory_utilization"]), 11, color=color))
    lines.append(_text(x, y + 46, "weights %.2f GiB  |  max seqs %d  |  shape: %s  |  route %s"
                       % (plan["weight_bytes"] / GIB, plan["max_num_seqs"], model["shape_source"],
                          " > ".join(model["route"])), 11, color=color))
    return lines


def topology_svg(data, title="homelab.gpu_stack"):
    nodes = data["nodes"]
    width = max(MARGIN * 2 + len(nodes) * NODE_W + (len(nodes) - 1) * GAP, 900)
    body = []
    # header
    body.append(_text(MARGIN, 34, title, 20, "bold"))
    body.append(_text(MARGIN, 54, "active GPU mode: %s%s" % (
        data.get("mode") or "(all)", "   |   chat page: %s" % data["ui_url"] if data.get("ui_url") else ""), 13, color="#444"))
    # gateway and fallback chain
    chain = data["chain"]
    gx, gy = MARGIN, 80
    body.append(_rect(gx, gy, 200, 50, "#fff3cd", "#c9a227", 8))
    body.append(_text(gx + 100, gy + 22, "LiteLLM gateway", 13, "bold", anchor="middle"))
    body.append(_text(gx + 100, gy + 40, "one model group per served name", 10, color="#555", anchor="middle"))
    tier_w, tx = 190, gx + 260
    tier_pos = {}
    for index, tier in enumerate(chain):
        x = tx + index * (tier_w + 50)
        tier_pos[tier["name"]] = x
        body.append(_rect(x, gy, tier_w, 50, "#ffffff", COLORS.get(tier["kind"], "#555"), 8))
        body.append(_rect(x, gy, 8, 50, COLORS.get(tier["kind"], "#555"), rx=3))
        body.append(_text(x + 16, gy + 20, "%d. %s tier (%s)" % (index + 1, tier["name"], tier["kind"]), 12, "bold"))
        target = "%s on %s" % (tier["target"], tier["deployed_on"]) if tier.get("deployed_on") else tier["target"]
        target = target if len(target) <= 26 else target[:25] + "..."
        body.append(_text(x + 16, gy + 38, "%s  |  %gs" % (target, tier["timeout_s"]), 10, color="#555"))
        if index:
            body += _arrow(x - 50, gy + 25, x - 2, gy + 25, "fallback")
    width = max(width, tx + len(chain) * (tier_w + 50) + MARGIN)
    body += _arrow(gx + 200, gy + 25, tx - 2, gy + 25)
    # nodes
    top = 170
    max_h = 0
    for index, node in enumerate(nodes):
        x = MARGIN + index * (NODE_W + GAP)
        tiers = node.get("tiers") or []
        height = 60 + (60 if node["gpu"] else 0) + 64 * max(len(node["models"]), 0) + 18 * len(tiers) + 10
        max_h = max(max_h, height)
        fill = "#eef4fb" if node["gpu"] else "#f5f5f5"
        body.append(_rect(x, top, NODE_W, height, fill, "#7a8ca3", 10))
        body.append(_text(x + 14, top + 24, node["name"], 15, "bold"))
        body.append(_text(x + 14, top + 42, " + ".join(node["roles"]), 11, color="#555"))
        for line, tier in enumerate(tiers):
            body.append(_text(x + 14, top + 62 + 18 * line, tier, 11, color=COLORS["cpu"]))
        y = top + 76 + 18 * len(tiers)
        if node["gpu"]:
            body += _vram_bar(x + 14, y, NODE_W - 28, node["gpu"], node["models"])
            y += 50
        for model in node["models"]:
            body += _model_block(x + 14, y + 10, model)
            y += 64
        if node["gpu"] and "gpu" in tier_pos and any(m["active"] for m in node["models"]):
            body += _arrow(tier_pos["gpu"] + tier_w // 2, 130, x + NODE_W // 2, top - 2, None, COLORS["gpu"])
    # legend
    ly = top + max_h + 30
    lx = MARGIN
    for key, label in (("weights", "weights"), ("kv", "KV cache"),
                       ("overhead", "activations + CUDA context/graphs"), ("free", "free")):
        body.append(_rect(lx, ly - 10, 12, 12, COLORS[key], "#999"))
        body.append(_text(lx + 18, ly, label, 11))
        lx += 18 + 7 * len(label) + 30
    height = ly + 24
    head = ('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d">'
            '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
            'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#555"/></marker></defs>'
            '<rect width="100%%" height="100%%" fill="#ffffff"/>' % (width, height, width, height))
    return "\n".join(['<?xml version="1.0" encoding="UTF-8"?>', head] + body + ["</svg>", ""])


class FilterModule(object):
    def filters(self):
        return {"topology": topology, "topology_svg": topology_svg}
