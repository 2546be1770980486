"""The preflight role's argument_specs carry the same model/tier/GPU options as
plugins/module_utils/model_spec.py, the one definition of these shapes."""

from pathlib import Path

import pytest
import yaml
from ansible_collections.homelab.gpu_stack.plugins.module_utils import model_spec as ms

SPECS = Path(__file__).resolve().parents[2] / "roles" / "preflight" / "meta" / "argument_specs.yml"
KEYS = ("type", "elements", "choices", "required", "default", "no_log")


def _strip(options):
    out = {}
    for name, opt in options.items():
        out[name] = dict((k, opt[k]) for k in KEYS if k in opt and opt[k] not in (None, False))
        if "options" in opt:
            out[name]["options"] = _strip(opt["options"])
    return out


@pytest.mark.parametrize("var,python", [
    ("gpu_stack_models", ms.MODEL_OPTIONS),
    ("gpu_stack_tiers", ms.TIER_OPTIONS),
    ("gpu_stack_gpu", ms.GPU_OPTIONS),
])
def test_role_spec_matches_python_spec(var, python):
    role = yaml.safe_load(SPECS.read_text())["argument_specs"]["main"]["options"][var]["options"]
    assert _strip(role) == _strip(python)


def test_every_option_is_described():
    def walk(options, path):
        for name, opt in options.items():
            assert opt.get("description"), "%s.%s has no description" % (path, name)
            walk(opt.get("options", {}), "%s.%s" % (path, name))
    walk(yaml.safe_load(SPECS.read_text())["argument_specs"]["main"]["options"], "main")
