# -*- coding: utf-8 -*-
# Copyright: homelab.gpu_stack contributors
# Apache License 2.0 (see LICENSE)
"""GPU capacity of Kubernetes nodes, as the scheduler sees it.

The device plugin advertises GPUs as the extended resource ``nvidia.com/gpu``
in ``status.capacity`` and ``status.allocatable`` of each node. Pods are
placed by allocatable, so that is the figure gated on. Node objects are read
as plain JSON (the API's own shape) so the logic can be fed recorded
responses without a cluster.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import time

AUTH_ARG_SPEC = {
    "kubeconfig": {"type": "path"},
    "context": {"type": "str"},
    "host": {"type": "str"},
    "api_key": {"type": "str", "no_log": True},
    "validate_certs": {"type": "bool", "aliases": ["verify_ssl"]},
    "ca_cert": {"type": "path", "aliases": ["ssl_ca_cert"]},
}

AUTH_ENV = {
    "kubeconfig": "K8S_AUTH_KUBECONFIG",
    "context": "K8S_AUTH_CONTEXT",
    "host": "K8S_AUTH_HOST",
    "api_key": "K8S_AUTH_API_KEY",
    "validate_certs": "K8S_AUTH_VERIFY_SSL",
    "ca_cert": "K8S_AUTH_SSL_CA_CERT",
}


class CapacityError(Exception):
    """Bad input or an API failure; the message names what is wrong."""


def auth_params(params, environ=None):
    """Module parameters, with kubernetes.core's environment variables as fallback."""
    environ = os.environ if environ is None else environ
    out = {}
    for key, env in AUTH_ENV.items():
        value = params.get(key)
        if value is None and environ.get(env):
            value = environ[env]
            if key == "validate_certs":
                value = value.lower() in ("1", "true", "yes", "on")
        out[key] = value
    return out


def make_api_client(params):
    """A kubernetes ApiClient from kubeconfig/context or host/api_key."""
    from kubernetes import client, config

    auth = auth_params(params)
    if auth["host"]:
        conf = client.Configuration()
        conf.host = auth["host"]
        if auth["api_key"]:
            conf.api_key = {"authorization": "Bearer " + auth["api_key"]}
        if auth["validate_certs"] is not None:
            conf.verify_ssl = auth["validate_certs"]
        if auth["ca_cert"]:
            conf.ssl_ca_cert = auth["ca_cert"]
        return client.ApiClient(conf)
    try:
        return config.new_client_from_config(config_file=auth["kubeconfig"], context=auth["context"])
    except Exception as exc:  # noqa: BLE001 - the client raises ConfigException, OSError, KeyError...
        raise CapacityError("kubeconfig %s (context %s): cannot be loaded: %s"
                            % (auth["kubeconfig"] or "~/.kube/config", auth["context"] or "current", exc))


def node_reader(api_client):
    """Return ``read(name) -> dict or None`` reading one Node as raw JSON."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    core = client.CoreV1Api(api_client)

    def read(name):
        try:
            resp = core.read_node(name, _preload_content=False)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise CapacityError("reading node %s: API answered %s %s" % (name, exc.status, exc.reason))
        except Exception as exc:  # noqa: BLE001 - urllib3 errors: refused, TLS, DNS
            raise CapacityError("reading node %s: cannot reach the API server: %s" % (name, exc))
        return json.loads(resp.data)

    return read


def parse_count(value):
    """An extended-resource quantity as an int (they are whole numbers; '2k' is 2000)."""
    if value is None:
        return None
    text = str(value).strip()
    suffixes = {"k": 10 ** 3, "M": 10 ** 6, "G": 10 ** 9, "Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30}
    for suffix in sorted(suffixes, key=len, reverse=True):
        if text.endswith(suffix):
            return int(text[:-len(suffix)]) * suffixes[suffix]
    if text.endswith("m"):
        # A milli-quantity of a device rounds down to whole devices.
        return int(text[:-1]) // 1000
    return int(text)


def normalize_nodes(nodes, per_gpu):
    """[{name, gpus}] or [name] -> [{name, gpus, expected}]; fails naming the entry."""
    if not isinstance(per_gpu, int) or isinstance(per_gpu, bool) or per_gpu < 1:
        raise CapacityError("per_gpu: must be an integer >= 1, got %r" % (per_gpu,))
    if not nodes:
        raise CapacityError("nodes: at least one GPU node is needed")
    out, seen = [], set()
    for index, item in enumerate(nodes):
        if isinstance(item, str):
            item = {"name": item}
        if not isinstance(item, dict) or not item.get("name"):
            raise CapacityError("nodes[%d]: needs a node name, got %r" % (index, item))
        gpus = item.get("gpus", 1)
        try:
            gpus = int(gpus)
        except (TypeError, ValueError):
            gpus = 0
        if gpus < 1:
            raise CapacityError("nodes[%d].gpus: must be an integer >= 1, got %r" % (index, item.get("gpus")))
        name = str(item["name"])
        if name in seen:
            raise CapacityError("nodes[%d].name: %s is listed twice" % (index, name))
        seen.add(name)
        out.append({"name": name, "gpus": gpus, "expected": gpus * per_gpu})
    return out


def _ready(node):
    for cond in (node.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return cond.get("status") == "True"
    return False


def node_report(name, node, expected, resource):
    """One node's figures; ``problem`` is None when it offers at least ``expected``."""
    report = {"name": name, "expected": expected, "found": node is not None, "allocatable": None,
              "capacity": None, "ready": False, "unschedulable": False, "problem": None}
    if node is None:
        report["problem"] = "node %s is not in the cluster" % name
        return report
    status = node.get("status") or {}
    try:
        report["allocatable"] = parse_count((status.get("allocatable") or {}).get(resource))
        report["capacity"] = parse_count((status.get("capacity") or {}).get(resource))
    except ValueError:
        report["problem"] = ("node %s reports %s as %r, which is not a whole number"
                             % (name, resource, (status.get("allocatable") or {}).get(resource)))
        return report
    report["ready"] = _ready(node)
    report["unschedulable"] = bool((node.get("spec") or {}).get("unschedulable"))
    if report["allocatable"] is None:
        report["problem"] = ("node %s reports no %s in status.allocatable (the device plugin has not "
                             "registered there: is its pod running on the node, with runtimeClassName "
                             "nvidia?)" % (name, resource))
    elif report["allocatable"] < expected:
        report["problem"] = ("node %s reports allocatable %s=%s (capacity %s), expected at least %s"
                             % (name, resource, report["allocatable"], report["capacity"], expected))
    elif not report["ready"]:
        report["problem"] = "node %s offers %s=%s but is not Ready" % (name, resource, report["allocatable"])
    return report


def check_once(read, nodes, resource):
    reports = [node_report(n["name"], read(n["name"]), n["expected"], resource) for n in nodes]
    return reports, [r["problem"] for r in reports if r["problem"]]


def wait_for_capacity(read, nodes, resource="nvidia.com/gpu", timeout=300, poll=5,
                      sleep=time.sleep, clock=time.monotonic):
    """Poll until every node offers its expected count or ``timeout`` passes.

    Returns (ok, reports, problems, attempts, elapsed).
    """
    if timeout < 0 or poll <= 0:
        raise CapacityError("timeout must be >= 0 and poll > 0 (got %r, %r)" % (timeout, poll))
    start = clock()
    attempts = 0
    while True:
        attempts += 1
        reports, problems = check_once(read, nodes, resource)
        elapsed = clock() - start
        if not problems or elapsed >= timeout:
            return not problems, reports, problems, attempts, round(elapsed, 3)
        sleep(min(poll, max(timeout - elapsed, 0)))
