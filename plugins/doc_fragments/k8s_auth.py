# -*- coding: utf-8 -*-
# Copyright: homelab.gpu_stack contributors
# Apache License 2.0 (see LICENSE)
"""Connection options shared by the collection's Kubernetes modules.

Names and environment variables follow kubernetes.core's k8s_auth_options, so
a play can hand the same kubeconfig/context to both collections.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    DOCUMENTATION = r"""
options:
  kubeconfig:
    description:
      - Path to a kubeconfig file. Without it (and without I(host)) the client reads
        C(K8S_AUTH_KUBECONFIG), then C(~/.kube/config).
    type: path
  context:
    description:
      - Context in the kubeconfig to use. Can also be set with C(K8S_AUTH_CONTEXT).
    type: str
  host:
    description:
      - URL of the API server, instead of a kubeconfig. Can also be set with C(K8S_AUTH_HOST).
    type: str
  api_key:
    description:
      - Bearer token for I(host). Can also be set with C(K8S_AUTH_API_KEY).
    type: str
  validate_certs:
    description:
      - Verify the API server's certificate (only with I(host)). Can also be set with C(K8S_AUTH_VERIFY_SSL).
    type: bool
    aliases: [verify_ssl]
  ca_cert:
    description:
      - CA bundle for the API server (only with I(host)). Can also be set with C(K8S_AUTH_SSL_CA_CERT).
    type: path
    aliases: [ssl_ca_cert]
requirements:
  - kubernetes (Python client) >= 24.2.0
"""
