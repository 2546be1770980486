# Copyright: homelab.gpu_stack contributors
# Apache License 2.0 (see LICENSE)
"""Action for homelab.gpu_stack.k8s_render (documented in plugins/modules/k8s_render.py).

The render folder is the controller's, so the files are written here, in the
task's worker: no module to ship and start per call (about 0.3 s each on a
2-core machine, seven calls in a render of the stack)."""

from __future__ import annotations

import json
import os

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.plugins.action import ActionBase

from ansible_collections.homelab.gpu_stack.plugins.plugin_utils.k8s_render import plan

ARGUMENT_SPEC = dict(
    objects=dict(type="list", elements="dict", required=True),
    dest=dict(type="path", required=True),
    mode=dict(type="str", default="0644"),
    header=dict(type="str", default=""),
)


def _read(path):
    try:
        with open(path) as handle:
            return handle.read(), os.stat(path).st_mode & 0o7777
    except FileNotFoundError:
        return None


def _write(path, text, mode):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


class ActionModule(ActionBase):

    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        # Plain data first: the task's values carry Ansible's tags, which the
        # argument check would deep-copy (a second per object at 50 models)
        # and the YAML emitter cannot represent.
        validation = ArgumentSpecValidator(ARGUMENT_SPEC).validate(json.loads(json.dumps(self._task.args)))
        if validation.error_messages:
            raise AnsibleActionFail("k8s_render: %s" % "; ".join(validation.error_messages))
        args = validation.validated_parameters
        try:
            mode = int(args["mode"], 8)
        except ValueError:
            raise AnsibleActionFail("mode: %r is not an octal file mode such as 0644" % args["mode"])
        try:
            paths, todo = plan(args["objects"], args["dest"], mode, _read, args["header"])
        except (ValueError, KeyError, IndexError) as exc:
            raise AnsibleActionFail("k8s_render: %s" % exc)
        if not self._task.check_mode:
            for path, text, _before in todo:
                _write(path, text, mode)
        result.update(changed=bool(todo), files=paths, changed_files=[path for path, _text, _before in todo])
        if self._task.diff:
            result["diff"] = [{"before_header": path, "after_header": path, "before": before or "", "after": text}
                              for path, text, before in todo]
        return result
