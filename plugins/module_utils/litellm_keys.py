# -*- coding: utf-8 -*-
# Copyright: homelab.gpu_stack contributors
# Apache License 2.0 (see LICENSE)
"""One LiteLLM virtual key per consumer, through LiteLLM's own key API.

Each consumer's key carries the alias ``<prefix><name>``: LiteLLM stores only
a hash of a key, so the raw value lives in the consumer's Secret and comes
back here in ``current``. A consumer whose ``current`` key LiteLLM still
knows under its alias keeps it (its models, budget and rpm brought in line
with /key/update); otherwise any key left under the alias is deleted and a
new one generated. Keys under the prefix that no consumer declares are
deleted (revoked). The HTTP call is injected (``request(method, path,
body=None, params=None) -> (status, json)``) so the unit tests can drive it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

MANAGED_BY = "homelab.gpu_stack"
# What a declared consumer's key must say, as /key/info returns it.
FIELDS = ("models", "max_budget", "rpm_limit")


class KeyApiError(Exception):
    pass


def _ok(what, status, body):
    if status != 200:
        detail = body.get("error", body.get("detail", body)) if isinstance(body, dict) else body
        raise KeyApiError("LiteLLM %s answered HTTP %s: %s" % (what, status, str(detail)[:300]))
    return body


def wanted(consumer):
    return {"models": list(consumer.get("models") or []), "max_budget": consumer.get("max_budget"),
            "rpm_limit": consumer.get("rpm_limit")}


def key_info(request, key):
    """The key's record, or None when LiteLLM does not know the key."""
    status, body = request("GET", "/key/info", params={"key": key})
    if status in (400, 401, 403, 404):
        return None
    return _ok("/key/info", status, body).get("info") or None


def aliases(request, prefix):
    """{alias: count} of the keys LiteLLM holds under the prefix (every page)."""
    found, page, pages = {}, 1, 1
    while page <= pages:
        query = {"return_full_object": "true", "search": prefix, "size": 100, "page": page}
        status, body = request("GET", "/key/list", params=query)
        body = _ok("/key/list", status, body)
        for key in body.get("keys") or []:
            alias = key.get("key_alias") if isinstance(key, dict) else None
            if alias and alias.startswith(prefix):
                found[alias] = found.get(alias, 0) + 1
        pages, page = body.get("total_pages") or 1, page + 1
    return found


def sync(request, consumers, current=None, prefix="gpu-stack/", prune=True, check_mode=False):
    """Bring LiteLLM's keys in line with ``consumers``; returns the result dict.

    ``consumers``: [{name, models, max_budget, rpm_limit}]; ``current``:
    {name: the key the caller holds}. The
    result holds ``keys`` ({name: key}, secret), ``created``, ``updated`` and
    ``revoked`` (names) and ``changed``.
    """
    result = {"keys": {}, "created": [], "updated": [], "revoked": []}
    existing = aliases(request, prefix)
    for consumer in consumers:
        name, alias = consumer["name"], prefix + consumer["name"]
        want = wanted(consumer)
        held = (current or {}).get(name)
        info = key_info(request, held) if held else None
        if info is not None and info.get("key_alias") == alias:
            result["keys"][name] = held
            have = dict((f, info.get(f)) for f in FIELDS)
            have["models"] = list(have["models"] or [])
            if have != want:
                result["updated"].append(name)
                if not check_mode:
                    _ok("/key/update", *request("POST", "/key/update", dict(want, key=held)))
            continue
        result["created"].append(name)
        if check_mode:
            continue
        if existing.get(alias):
            # The Secret was lost or holds another key: the old one goes, or it
            # would stay valid with nobody holding it on purpose.
            _ok("/key/delete", *request("POST", "/key/delete", {"key_aliases": [alias]}))
        body = dict(want, key_alias=alias, metadata={"managed_by": MANAGED_BY, "consumer": name})
        generated = _ok("/key/generate", *request("POST", "/key/generate", body))
        result["keys"][name] = generated["key"]
    if prune:
        declared = set(prefix + c["name"] for c in consumers)
        for alias in sorted(set(existing) - declared):
            result["revoked"].append(alias[len(prefix):])
            if not check_mode:
                _ok("/key/delete", *request("POST", "/key/delete", {"key_aliases": [alias]}))
    result["changed"] = bool(result["created"] or result["updated"] or result["revoked"])
    return result
