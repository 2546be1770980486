# Copyright: homelab.gpu_stack contributors
# Apache License 2.0 (see LICENSE)
"""The GPU mode filters, on the example inventory's models as model_specs normalises them."""

import copy
import os

import pytest
import yaml
from ansible.errors import AnsibleFilterError

from ansible_collections.homelab.gpu_stack.plugins.filter import gpu_mode
from ansible_collections.homelab.gpu_stack.plugins.filter.model_spec import model_specs

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def example_models():
    with open(os.path.join(ROOT, "inventories", "example", "host_vars", "nuc.yml")) as handle:
        nuc = yaml.safe_load(handle)
    return model_specs({"nuc": nuc}, ["nuc"])


MODES = ["ml", "r1", "gaming"]


@pytest.mark.parametrize("mode, expected", [
    ("ml", {"llama-8b": 1, "r1-distill-7b": 0}),
    ("r1", {"llama-8b": 0, "r1-distill-7b": 1}),
    ("gaming", {"llama-8b": 0, "r1-distill-7b": 0}),
])
def test_example_inventory_modes(mode, expected):
    assert gpu_mode.mode_replicas(example_models(), mode, MODES) == expected


def test_a_model_without_modes_runs_in_every_mode():
    models = example_models() + [{"name": "embed", "modes": []}]
    for mode in MODES:
        assert gpu_mode.mode_replicas(models, mode, MODES)["embed"] == 1
    assert gpu_mode.mode_models(models, "gaming", MODES) == ["embed"]
    assert gpu_mode.mode_models(models, "r1", MODES) == ["r1-distill-7b", "embed"]


@pytest.mark.parametrize("mode, modes, message", [
    ("game", MODES, "gpu_stack_gpu_mode: 'game' is not one of gpu_stack_gpu_modes (ml, r1, gaming)"),
    ("", None, "gpu_stack_gpu_mode: must be a mode name"),
    (None, None, "gpu_stack_gpu_mode: must be a mode name"),
])
def test_unknown_mode_fails_naming_the_variable(mode, modes, message):
    with pytest.raises(AnsibleFilterError) as err:
        gpu_mode.mode_replicas(example_models(), mode, modes)
    assert message in str(err.value)


def test_bad_models_fail():
    with pytest.raises(AnsibleFilterError, match="model 0 has no name"):
        gpu_mode.mode_replicas([{"modes": ["ml"]}], "ml")
    with pytest.raises(AnsibleFilterError, match="model x: modes must be a list"):
        gpu_mode.mode_replicas([{"name": "x", "modes": "ml"}], "ml")


def deployment(model, name=None, replicas=1, namespace="llm"):
    """A vLLM Deployment as the vllm role labels it (only the fields the filters read)."""
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name or model, "namespace": namespace,
                         "labels": {"app.kubernetes.io/name": "vllm", "app.kubernetes.io/instance": model}},
            "spec": {"replicas": replicas, "strategy": {"type": "Recreate"}}}


OTHERS = [
    {"apiVersion": "apps/v1", "kind": "Deployment",
     "metadata": {"name": "litellm", "namespace": "llm", "labels": {"app.kubernetes.io/name": "litellm"}},
     "spec": {"replicas": 2}},
    {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "llama-8b", "namespace": "llm",
                                                         "labels": {"app.kubernetes.io/name": "vllm",
                                                                    "app.kubernetes.io/instance": "llama-8b"}}},
]


def test_scale_plan_matches_deployments_by_instance_label():
    objects = [deployment("llama-8b", "vllm-llama-8b"), deployment("r1-distill-7b", replicas=0)] + OTHERS
    plan = gpu_mode.mode_scale_plan(objects, example_models(), "r1", MODES)
    assert plan == [
        {"name": "vllm-llama-8b", "namespace": "llm", "model": "llama-8b", "replicas": 0, "current": 1},
        {"name": "r1-distill-7b", "namespace": "llm", "model": "r1-distill-7b", "replicas": 1, "current": 0},
    ]


def test_scale_plan_fails_on_a_model_without_deployment_and_a_stray_deployment():
    with pytest.raises(AnsibleFilterError, match="no vLLM Deployment found for r1-distill-7b"):
        gpu_mode.mode_scale_plan([deployment("llama-8b")], example_models(), "ml")
    with pytest.raises(AnsibleFilterError, match="Deployment old: label app.kubernetes.io/instance='qwen' names no model"):
        gpu_mode.mode_scale_plan([deployment("llama-8b"), deployment("r1-distill-7b"), deployment("qwen", "old")],
                                 example_models(), "ml")


def test_mode_switch_on_rendered_objects_touches_only_vllm_deployments():
    objects = [deployment("llama-8b"), deployment("r1-distill-7b")] + OTHERS
    before = copy.deepcopy(objects)
    switched = gpu_mode.mode_switch(objects, example_models(), "gaming", MODES)
    assert objects == before, "the input must not be changed"
    assert [o["spec"]["replicas"] for o in switched[:2]] == [0, 0]
    assert switched[2:] == OTHERS
    back = gpu_mode.mode_switch(switched, example_models(), "ml", MODES)
    assert [o["spec"]["replicas"] for o in back[:2]] == [1, 0]


def test_filters_are_registered():
    assert set(gpu_mode.FilterModule().filters()) == {"gpu_mode_entry", "mode_replicas", "mode_models", "mode_scale_plan",
                                                      "mode_switch"}


def test_playbook_refuses_an_unknown_mode_before_any_change(tmp_path):
    """The first task fails, so no cluster call is made (there is none here)."""
    import subprocess
    import sys
    proc = subprocess.run(
        [os.path.join(ROOT, ".venv", "bin", "ansible-playbook"), "playbooks/gpu_mode.yml", "-i", "inventories/example",
         "-e", "gpu_stack_gpu_mode=game", "-e", "ansible_python_interpreter=%s" % sys.executable],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "gpu_stack_gpu_mode: game is not one of gpu_stack_gpu_modes (ml, r1, gaming)" in out
    assert "Read the vLLM Deployments" not in out
