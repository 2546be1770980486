# -*- coding: utf-8 -*-
# Copyright: homelab.gpu_stack contributors
# Apache License 2.0 (see LICENSE)
"""Lists, at the end of a run, every task that changed something, per host."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: changes
type: aggregate
short_description: What changed, per host, at the end of the run
description:
  - Adds a "What changed" section after the play recap of site.yml and the
    other playbooks, listing each task that reported a change, per host, in
    order. An idempotent re-run prints "nothing changed".
  - Enable it with C(callbacks_enabled = homelab.gpu_stack.changes) in ansible.cfg.
requirements:
  - enable in configuration
"""

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "homelab.gpu_stack.changes"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super(CallbackModule, self).__init__()
        self._changes = {}

    def v2_runner_on_ok(self, result):
        if not result._result.get("changed"):
            return
        host = result._host.get_name()
        task = result._task.get_name().strip()
        seen = self._changes.setdefault(host, [])
        if task not in seen:
            seen.append(task)

    def v2_playbook_on_stats(self, stats):
        self._display.banner("WHAT CHANGED")
        if not self._changes:
            self._display.display("nothing changed")
            return
        for host in sorted(self._changes):
            self._display.display("%s:" % host)
            for task in self._changes[host]:
                self._display.display("  - %s" % task)
