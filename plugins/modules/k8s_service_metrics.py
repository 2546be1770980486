#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: homelab.gpu_stack contributors
# Apache License 2.0 (see LICENSE)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: k8s_service_metrics
short_description: Read a Service's Prometheus metrics through the Kubernetes API's service proxy
description:
  - GETs I(path) of a Service's port through the API server
    (C(/api/v1/namespaces/NS/services/NAME:PORT/proxy/PATH)), so the controller reads what a
    Service in the cluster serves without a route to the pod network.
  - Used by the summary stage to read each vLLM's C(/metrics) (its C(vllm:cache_config_info),
    what vLLM made of the planner's budget).
  - Read-only. Never fails on an answer it cannot get; it reports C(ok=false) and the reason,
    since a status page is written whatever state the stack is in.
version_added: 0.1.0
author:
  - homelab.gpu_stack maintainers (@homelab)
extends_documentation_fragment:
  - homelab.gpu_stack.k8s_auth
  - ansible.builtin.action_common_attributes
options:
  namespace:
    description: Namespace of the Service.
    type: str
    required: true
  name:
    description: Name of the Service.
    type: str
    required: true
  port:
    description: Name or number of the Service's port.
    type: str
    default: http
  path:
    description: Path to read on that port, without the leading slash.
    type: str
    default: metrics
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  platform:
    platforms: posix
requirements:
  - kubernetes (Python client)
"""

EXAMPLES = r"""
- name: Read tiny-chat's vLLM metrics
  homelab.gpu_stack.k8s_service_metrics:
    namespace: llm
    name: tiny-chat
  register: metrics
"""

RETURN = r"""
ok:
  description: Whether the API server answered 200 with the page.
  returned: always
  type: bool
text:
  description: The page (Prometheus text format), empty when not ok.
  returned: always
  type: str
error:
  description: Why there is no page (the API's status and reason, or the connection error).
  returned: when not ok
  type: str
"""

from ansible_collections.homelab.gpu_stack.plugins.module_utils.k8s_gpu import (
    CapacityError,
    make_api_client,
)
from ansible_collections.homelab.gpu_stack.plugins.module_utils.k8s_module import k8s_module


def read(api_client, namespace, name, port, path):
    """(ok, text, error) of one GET through the service proxy."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    try:
        resp = client.CoreV1Api(api_client).connect_get_namespaced_service_proxy_with_path(
            "%s:%s" % (name, port), namespace, path, _preload_content=False, _request_timeout=30)
    except ApiException as exc:
        return False, "", "API answered %s %s" % (exc.status, exc.reason)
    except Exception as exc:  # noqa: BLE001 - urllib3 errors: refused, TLS, DNS
        return False, "", "cannot reach the API server: %s" % exc
    return True, resp.data.decode("utf-8", "replace"), None


def main():
    argument_spec = {
        "namespace": {"type": "str", "required": True},
        "name": {"type": "str", "required": True},
        "port": {"type": "str", "default": "http"},
        "path": {"type": "str", "default": "metrics"},
    }
    module = k8s_module(argument_spec)
    params = module.params
    try:
        client = make_api_client(params)
    except CapacityError as exc:
        module.exit_json(changed=False, ok=False, text="", error=str(exc))
    ok, text, error = read(client, params["namespace"], params["name"], params["port"], params["path"].lstrip("/"))
    result = {"changed": False, "ok": ok, "text": text}
    if error:
        result["error"] = error
    module.exit_json(**result)


if __name__ == "__main__":
    main()
