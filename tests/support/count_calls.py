# Copyright: homelab.gpu_stack contributors
# Apache License 2.0 (see LICENSE)
"""Run ansible-playbook in this process with the collection's model normaliser and
planner wrapped by counters; each call appends the model's name to COUNT_FILE.

    COUNT_FILE=/tmp/calls python tests/support/count_calls.py playbooks/render.yml -i inventories/example ...

Ansible's workers are forks of this process, so the wrapped functions are the
ones every task runs; a line per call (not a counter in memory) survives the forks.
"""

import os
import sys

from ansible.utils.collection_loader._collection_finder import _AnsibleCollectionFinder

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Imported through Ansible's own collection loader, as the CLI will, so the
# modules the plugins import later are these (with the collection's metadata).
_AnsibleCollectionFinder(paths=[os.path.join(ROOT, ".ansible", "collections")])._install()

from ansible_collections.homelab.gpu_stack.plugins.module_utils import model_spec, vram_planner  # noqa: E402


def counted(module, name, label):
    original = getattr(module, name)

    def wrapper(*args, **kwargs):
        with open(os.environ["COUNT_FILE"], "a") as handle:
            handle.write("%s %s\n" % (label(args, kwargs), name))
        return original(*args, **kwargs)
    setattr(module, name, wrapper)


counted(model_spec, "normalize_model", lambda args, kwargs: (args[0] or {}).get("name"))
counted(vram_planner, "plan", lambda args, kwargs: kwargs.get("name"))

if __name__ == "__main__":
    from ansible.cli.playbook import main
    sys.argv = ["ansible-playbook"] + sys.argv[1:]
    main()
