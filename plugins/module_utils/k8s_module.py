# -*- coding: utf-8 -*-
# Copyright: homelab.gpu_stack contributors
# Apache License 2.0 (see LICENSE)
"""The one way the collection's Kubernetes modules start: their options plus the
API access options (``k8s_gpu.AUTH_ARG_SPEC``, kubernetes.core's names), and a
clear failure when the ``kubernetes`` Python package is missing."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.homelab.gpu_stack.plugins.module_utils.k8s_gpu import AUTH_ARG_SPEC

try:
    import kubernetes  # noqa: F401 pylint: disable=unused-import
    HAS_K8S = True
    K8S_IMPORT_ERROR = None
except ImportError:
    HAS_K8S = False
    K8S_IMPORT_ERROR = traceback.format_exc()


def k8s_module(argument_spec, supports_check_mode=True):
    """An AnsibleModule taking ``argument_spec`` and the API access options; fails without kubernetes."""
    spec = dict(argument_spec)
    spec.update(AUTH_ARG_SPEC)
    module = AnsibleModule(argument_spec=spec, supports_check_mode=supports_check_mode)
    if not HAS_K8S:
        module.fail_json(msg=missing_required_lib("kubernetes"), exception=K8S_IMPORT_ERROR)
    return module
