# -*- coding: utf-8 -*-
# Copyright: homelab.gpu_stack contributors
# Apache License 2.0 (see LICENSE)
"""The one-page status the summary stage writes after every run (issue 16).

Pure functions of plain data, so that whatever computes the stack (the
summary's model list today, a stack model fact later) only hands over a dict:

    vllm_cache_config(metrics_text) -> dict
        the labels of vLLM's ``vllm:cache_config_info`` series (num_gpu_blocks,
        block_size, gpu_memory_utilization, ...), numbers as numbers; {} when
        the text has none.
    status_page_html(status) -> str
        one HTML page. ``status``: {title, generated, mode, gateway_url, links:
        [{name, url}], models: [{name, served_name, node, url, state, tier,
        answering, route, plan, reported, note}]}; ``plan`` is the VRAM
        planner's dict (kv_cache_tokens, max_model_len, weight_gib,
        kv_cache_gib, gpu_memory_utilization), ``reported`` vllm_cache_config()
        of that model's vLLM or {}.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re
from html import escape

_INFO = re.compile(r'^vllm:cache_config_info\{(?P<labels>[^}]*)\}\s', re.M)
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def _number(text):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def vllm_cache_config(metrics_text):
    match = _INFO.search(metrics_text or "")
    if not match:
        return {}
    return {key: _number(value) for key, value in _LABEL.findall(match.group("labels"))}


def _kv_tokens(reported):
    blocks, size = reported.get("num_gpu_blocks"), reported.get("block_size")
    return blocks * size if isinstance(blocks, int) and isinstance(size, int) else None


def _plan_vs_reported(plan, reported):
    planned = (plan or {}).get("kv_cache_tokens")
    got = _kv_tokens(reported or {})
    if got is None:
        return "no reading" if planned else "-"
    if not planned:
        return "%d tokens reported" % got
    return "%d of %d planned (%+.1f%%)" % (got, planned, 100.0 * (got - planned) / planned)


_STATE_CLASS = {"serving": "ok", "scaled to 0": "idle"}


def _e(value):
    return escape("%s" % ("-" if value is None else value))


def status_page_html(status):
    e = _e
    rows = []
    for model in status.get("models") or []:
        plan, reported = model.get("plan") or {}, model.get("reported") or {}
        rows.append(
            "<tr><td><b>{served}</b><br><small>{name} on {node}</small></td>"
            "<td class='{cls}'>{state}</td><td>{answering}<br><small>{route}</small></td>"
            "<td>{ctx} ctx, KV {kvp} tokens ({kvg} GiB), weights {w} GiB, util {util}</td>"
            "<td>{blocks} blocks x {bsize}, util {rutil}<br><b>{versus}</b></td>"
            "<td><a href='{url}'>{url}</a>{note}</td></tr>".format(
                served=e(model.get("served_name")), name=e(model.get("name")), node=e(model.get("node")),
                cls=_STATE_CLASS.get(model.get("state"), "bad"), state=e(model.get("state")),
                answering=e(model.get("answering")), route=e(" -> ".join(model.get("route") or [])),
                ctx=e(plan.get("max_model_len")), kvp=e(plan.get("kv_cache_tokens")),
                kvg=e(plan.get("kv_cache_gib")), w=e(plan.get("weight_gib")),
                util=e(plan.get("gpu_memory_utilization")), blocks=e(reported.get("num_gpu_blocks")),
                bsize=e(reported.get("block_size")), rutil=e(reported.get("gpu_memory_utilization")),
                versus=e(_plan_vs_reported(plan, reported)), url=e(model.get("url")),
                note=("<br><small>%s</small>" % e(model["note"])) if model.get("note") else ""))
    links = "".join("<li>%s: <a href='%s'>%s</a></li>" % (e(link["name"]), e(link["url"]), e(link["url"]))
                    for link in status.get("links") or [])
    return """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; width: 100%; }}
th, td {{ border: 1px solid #ccc; padding: .4em .6em; text-align: left; vertical-align: top; }}
th {{ background: #f0f0f0; }} .ok {{ color: #176f2c; }} .idle {{ color: #777; }} .bad {{ color: #b00020; }}
</style></head><body>
<h1>{title}</h1>
<p>Generated {generated}. Active GPU mode: <b>{mode}</b>. Gateway (OpenAI API): <a href='{gateway}'>{gateway}</a></p>
<table><tr><th>model</th><th>state</th><th>tier answering (fallback chain)</th><th>planned</th>
<th>vLLM reported (/metrics cache_config_info)</th><th>URL</th></tr>
{rows}
</table>
<ul>{links}</ul>
</body></html>
""".format(title=e(status.get("title") or "homelab.gpu_stack status"), generated=e(status.get("generated")),
           mode=e(status.get("mode")), gateway=e(status.get("gateway_url")), rows="\n".join(rows), links=links)


class FilterModule(object):
    def filters(self):
        return {"vllm_cache_config": vllm_cache_config, "status_page_html": status_page_html}
