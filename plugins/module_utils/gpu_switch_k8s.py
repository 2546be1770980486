# -*- coding: utf-8 -*-
# Copyright: homelab.gpu_stack contributors
# Apache License 2.0 (see LICENSE)
"""gpu_switch's I/O on a cluster: the Kubernetes API, and vLLM through the API server's pod proxy.

``KubeSwitchIO`` is what the ``gpu_mode_switch`` module and the ``gpu-mode``
command both hand to ``gpu_switch.switch``; they differ only in the
transport: the module's is the ``kubernetes`` client's ApiClient (its
kubeconfig), the command's plain urllib with the ServiceAccount token the
collection wrote (the machines it runs on need no Python packages).

What each call needs from RBAC is what the gpu-mode Role grants
(roles/gpu_mode_cli/templates/objects.yaml.j2): deployments get/list, deployments/scale
get/patch, pods get/list/delete, pods/status patch, pods/proxy get/create,
endpoints get, the gpu-modes ConfigMap get.

A transport is ``request(method, path, body=None, ctype="application/json",
timeout=30)`` returning the answer's text, raising ``KubeError`` (status,
message) for an HTTP error.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import json
import ssl
import time

from ansible_collections.homelab.gpu_stack.plugins.module_utils import gpu_switch

try:  # Python 3; the command and the module both run on Python 3
    from urllib.error import HTTPError
    from urllib.parse import quote
    from urllib.request import HTTPSHandler, Request, build_opener
except ImportError:  # pragma: no cover - Python 2 is not supported
    pass

STRATEGIC = "application/strategic-merge-patch+json"
MERGE = "application/merge-patch+json"
LIVE = ("Pending", "Running", "Unknown")


class KubeError(Exception):
    def __init__(self, status, message):
        Exception.__init__(self, "API answered %s: %s" % (status, message))
        self.status = status


def _status_message(text):
    try:
        return json.loads(text).get("message") or text
    except (ValueError, AttributeError):
        return (text or "")[:300]


class UrllibTransport(object):
    """HTTPS to the API server with a bearer token and the cluster's CA (the gpu-mode command)."""

    def __init__(self, server, token, ca_data=None):
        self.server = server.rstrip("/")
        self.token = token
        context = ssl.create_default_context(cadata=ca_data) if ca_data else ssl.create_default_context()
        # The command runs where Ansible is not installed: the standard library's opener, not open_url.
        self.opener = build_opener(HTTPSHandler(context=context))

    def request(self, method, path, body=None, ctype="application/json", timeout=30):
        data = json.dumps(body).encode("utf-8") if body is not None else None
        req = Request(self.server + path, data=data, method=method,
                      headers={"Authorization": "Bearer " + self.token, "Accept": "application/json",
                               "Content-Type": ctype})
        try:
            with self.opener.open(req, timeout=timeout) as resp:
                return resp.read().decode("utf-8", "replace")
        except HTTPError as exc:
            raise KubeError(exc.code, _status_message(exc.read().decode("utf-8", "replace")))


class ClientTransport(object):
    """The same calls through a ``kubernetes`` ApiClient's REST client (the module, with its
    kubeconfig: a client certificate or a token). The REST client's request() is the one call
    whose shape old and new releases of the client share; older ones raise ApiException on an
    error status, newer ones return it."""

    def __init__(self, api_client):
        self.api_client = api_client

    def request(self, method, path, body=None, ctype="application/json", timeout=30):
        from kubernetes.client.exceptions import ApiException

        conf = self.api_client.configuration
        headers = {"Accept": "application/json", "Content-Type": ctype}
        bearer = (conf.auth_settings() or {}).get("BearerToken") or {}
        if bearer.get("value"):
            headers[bearer["key"]] = bearer["value"]
        try:
            resp = self.api_client.rest_client.request(method, conf.host + path, headers=headers, body=body,
                                                       _request_timeout=timeout)
        except ApiException as exc:
            raise KubeError(exc.status, _status_message(exc.body))
        if getattr(resp, "data", None) is None and hasattr(resp, "read"):
            resp.read()
        data = resp.data.decode("utf-8", "replace") if isinstance(resp.data, bytes) else (resp.data or "")
        if resp.status >= 400:
            raise KubeError(resp.status, _status_message(data))
        return data


def _cond(obj, ctype):
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("type") == ctype), {})


class KubeSwitchIO(gpu_switch.SwitchIO):
    """``gpu_switch.SwitchIO`` over the API. ``chat_through_proxy``: False where vLLM wants an
    API key (the API server's own Authorization header is the one the proxy sees): the arrival is
    then proven by /health, and the gateway's gate after the switch proves the answer."""

    def __init__(self, transport, namespace, awake_condition, port=8000, chat_through_proxy=True,
                 clock=time.monotonic, pause=time.sleep, wait_s=900.0):
        self.t = transport
        self.ns = namespace
        self.awake_condition = awake_condition
        self.port = port
        self.chat_through_proxy = chat_through_proxy
        self.clock = clock
        self.pause = pause
        self.wait_s = wait_s
        self.said = []

    # --- the API -------------------------------------------------------------
    def _get(self, path):
        return json.loads(self.t.request("GET", path))

    def pods(self, step):
        sel = quote("app.kubernetes.io/name=vllm,app.kubernetes.io/instance=%s" % step["name"])
        items = self._get("/api/v1/namespaces/%s/pods?labelSelector=%s" % (self.ns, sel))["items"]
        return [p for p in items if (p.get("status") or {}).get("phase", "Pending") in LIVE]

    def ready_pod(self, step, terminating=False):
        """The model's pod whose containers are ready (a pod's Ready also waits for the awake gate)."""
        for pod in self.pods(step):
            if (terminating or not pod["metadata"].get("deletionTimestamp")) \
                    and _cond(pod, "ContainersReady").get("status") == "True":
                return pod
        return None

    def replicas(self, step):
        try:
            dep = self._get("/apis/apps/v1/namespaces/%s/deployments/%s" % (self.ns, step["name"]))
        except KubeError as exc:
            if exc.status == 404:
                raise gpu_switch.SwitchError("model %s has no vLLM Deployment in namespace %s (site.yml deploys it)"
                                             % (step["name"], self.ns))
            raise
        return (dep.get("spec") or {}).get("replicas", 1)

    def _until(self, what, done):
        end = self.clock() + self.wait_s
        while True:
            value = done()
            if value:
                return value
            if self.clock() > end:
                raise gpu_switch.SwitchError("%s: timed out after %d s waiting until %s" % (what[0], self.wait_s, what[1]))
            self.pause(1.0)

    def _pod_or_fail(self, step):
        pod = self.ready_pod(step)
        if pod is None:
            raise gpu_switch.SwitchError("%s: no pod of its Deployment is running" % step["name"])
        return pod

    # --- SwitchIO ---------------------------------------------------------------
    def state(self, step):
        if self.replicas(step) == 0 or self.ready_pod(step) is None:
            return gpu_switch.STOPPED
        if step["switch"] != "sleep":
            return gpu_switch.AWAKE
        return gpu_switch.ASLEEP if (self.vllm(step, "GET", "/is_sleeping") or {}).get("is_sleeping") \
            else gpu_switch.AWAKE

    def set_routed(self, step, on):
        if step["switch"] != "sleep":
            return False  # a scale model's readiness is its probe alone
        pod = self._pod_or_fail(step)
        want = "True" if on else "False"
        if _cond(pod, self.awake_condition).get("status") == want:
            return False
        now = datetime.datetime.utcnow().strftime("%Y-%m-%dT%H:%M:%SZ")
        self.t.request("PATCH", "/api/v1/namespaces/%s/pods/%s/status" % (self.ns, pod["metadata"]["name"]),
                       {"status": {"conditions": [{
                           "type": self.awake_condition, "status": want, "lastTransitionTime": now,
                           "reason": "Awake" if on else "Away",
                           "message": "set by the GPU mode switch (homelab.gpu_stack)"}]}}, STRATEGIC)
        ip = (pod.get("status") or {}).get("podIP")
        service = step.get("service") or step["name"]

        def routed():
            try:
                ep = self._get("/api/v1/namespaces/%s/endpoints/%s" % (self.ns, service))
            except KubeError:
                return None
            ips = [a.get("ip") for s in ep.get("subsets") or [] for a in s.get("addresses") or []]
            return (ip in ips) == on
        self._until((step["name"], "its Service %s the pod" % ("routes to" if on else "no longer routes to")), routed)
        return True

    def vllm(self, step, method, path, body=None):
        pod = self._pod_or_fail(step)
        text = self.t.request(method, "/api/v1/namespaces/%s/pods/%s:%d/proxy%s"
                              % (self.ns, pod["metadata"]["name"], self.port, path), body, timeout=300)
        try:
            return json.loads(text) if text else None
        except ValueError:
            return None

    def scale(self, step, replicas):
        self.t.request("PATCH", "/apis/apps/v1/namespaces/%s/deployments/%s/scale" % (self.ns, step["name"]),
                       {"spec": {"replicas": replicas}}, MERGE)
        if replicas == 0:
            # The card is free only once the pods are gone, not when they are Terminating.
            self._until((step["name"], "its pods are gone"), lambda: not self.pods(step))
        else:
            self._until((step["name"], "its pod's containers are ready"), lambda: self.ready_pod(step))

    def restart(self, step):
        old = self._pod_or_fail(step)["metadata"]["name"]
        self.t.request("DELETE", "/api/v1/namespaces/%s/pods/%s" % (self.ns, old))
        self._until((step["name"], "a new pod's containers are ready"),
                    lambda: (self.ready_pod(step) or {"metadata": {"name": old}})["metadata"]["name"] != old)

    def chat(self, step):
        if not self.chat_through_proxy:
            self.vllm(step, "GET", "/health")
            return
        out = self.vllm(step, "POST", "/v1/chat/completions",
                        {"model": step["served_name"], "max_tokens": 4,
                         "messages": [{"role": "user", "content": "Say hi."}]})
        if not (out or {}).get("choices"):
            raise gpu_switch.SwitchError("%s gave no answer after the switch: %r" % (step["name"], out))

    def card_used_bytes(self, node):
        return None  # read on the node (gpu_mode.yml between the phases, or the command's nvidia-smi)

    def say(self, msg):
        self.said.append(msg)
