# Copyright: homelab.gpu_stack contributors
# Apache License 2.0 (see LICENSE)
"""Every vLLM argument list we emit for the shipped inventories, parsed by vLLM itself.

The lists are the stack model's (plugins/module_utils/stack_model.py, what
the vllm role's Deployment template renders), compiled over the inventories'
real variables (ansible-inventory --list) and their config folders. They are parsed in the CPU vLLM venv
(scripts/venv-vllm.sh) by `vllm serve`'s own parser and
validate_parsed_serve_args (tests/support/vllm_argparse.py), so a flag vLLM
renamed or removed, or a value it no longer accepts, fails here. Quantization
methods and reasoning parsers, which argparse does not check, are compared
with the names vLLM registers.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ansible_collections.homelab.gpu_stack.plugins.filter.vllm import vllm_args
from ansible_collections.homelab.gpu_stack.plugins.module_utils.model_spec import KV_CACHE_DTYPES, QUANT_ACT_DTYPES

ROOT = Path(__file__).resolve().parents[2]
INVENTORIES = ["inventories/example", "inventories/local"]
SPEC = {"name": "x", "source": "org/x", "served_name": "x", "dtype": "auto", "tensor_parallel_size": 1,
        "extra_args": {}}
PLAN = {"gpu_memory_utilization": 0.9, "max_model_len": 512, "max_num_seqs": 4, "max_num_batched_tokens": 512}


def emitted_lists():
    """The argument lists the stack model gives each Deployment of the shipped inventories."""
    sys.path.insert(0, str(ROOT / "tests" / "render"))
    from serving_checks import inventory_stack

    return dict(("%s:%s" % (inventory, m["name"]), m["args"])
                for inventory in INVENTORIES for m in inventory_stack(inventory)["models"])


def sleep_lists():
    """The example pair with switch: sleep on the NUC's card (issue 14)."""
    sys.path.insert(0, str(ROOT / "tests" / "unit"))
    from test_stack_model import sleep_pair, view, FIXTURES
    from ansible_collections.homelab.gpu_stack.plugins.module_utils import stack_model

    stack = stack_model.compile_stack(view(sleep_pair()), config_folder=FIXTURES)
    return dict(("sleep:%s" % m["name"], m["args"]) for m in stack["models"])


@pytest.fixture(scope="module")
def parsed(vllm_python):
    lists = emitted_lists()
    # A control: a flag vLLM does not have must fail, or the check proves nothing.
    lists["control:renamed-flag"] = ["org/x", "--max-model-length", "512"]
    # What vllm_args emits for a boolean extra arg set false, and a string "true".
    lists["control:false-flag"] = vllm_args(dict(SPEC, extra_args={"enable-prefix-caching": False}), PLAN)
    lists["control:string-true"] = ["org/x", "--enable-prefix-caching", "true"]
    lists.update(sleep_lists())
    proc = subprocess.run([str(vllm_python), str(ROOT / "tests/support/vllm_argparse.py")],
                          input=json.dumps(lists), capture_output=True, text=True, timeout=600, cwd=ROOT,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return lists, json.loads(proc.stdout)


@pytest.fixture(scope="module")
def vllm_python():
    out = subprocess.run(["bash", str(ROOT / "scripts/venv-vllm.sh")], cwd=ROOT, check=True,
                         stdout=subprocess.PIPE, text=True, timeout=1800)
    return Path(out.stdout.strip().splitlines()[-1]) / "bin" / "python"


def test_every_emitted_list_parses(parsed):
    lists, results = parsed
    labels = [label for label in lists if not label.startswith("control:")]
    assert len(labels) >= 3, labels  # both inventories contribute models
    failures = dict((label, results[label]["error"]) for label in labels if not results[label]["ok"])
    assert not failures, failures


def test_a_false_boolean_extra_arg_is_a_flag_vllm_takes(parsed):
    """false becomes --no-<flag> (leaving it out keeps vLLM's default); the string
    "true" (what model_spec refuses) is refused by vLLM too."""
    lists, results = parsed
    assert "--no-enable-prefix-caching" in lists["control:false-flag"]
    assert results["control:false-flag"]["ok"], results["control:false-flag"]["error"]
    assert not results["control:string-true"]["ok"]


def test_kv_cache_dtypes_are_vllms(parsed):
    """Every kv-cache-dtype model_spec accepts is one the pinned vLLM takes."""
    assert set(KV_CACHE_DTYPES) <= set(parsed[1]["_known"]["kv_cache_dtype"])


def test_quantization_dtypes_match_vllms(parsed):
    """model_spec.QUANT_ACT_DTYPES, which preflight checks dtype against, is what
    the pinned vLLM's quantization configs support."""
    known = parsed[1]["_known"]["act_dtypes"]
    for method, dtypes in QUANT_ACT_DTYPES.items():
        assert method in known, method
        assert sorted(dtypes) == known[method], (method, dtypes, known[method])


def test_the_parser_rejects_a_renamed_flag(parsed):
    results = parsed[1]
    assert not results["control:renamed-flag"]["ok"]
    assert "--max-model-length" in results["control:renamed-flag"]["error"]


def test_vllm_reads_our_values(parsed):
    lists, results = parsed
    for label, argv in lists.items():
        if label.startswith("control:"):
            continue
        got = results[label]["args"]
        assert got["model"] == argv[0]
        assert str(got["max_model_len"]) == argv[argv.index("--max-model-len") + 1]
        assert got["gpu_memory_utilization"] == float(argv[argv.index("--gpu-memory-utilization") + 1])
        assert str(got["max_num_seqs"]) == argv[argv.index("--max-num-seqs") + 1]


def test_vllm_reads_the_sleep_mode_flags(parsed):
    """switch: sleep's flags are vLLM's: sleep mode on, the plan's KV budget in bytes,
    the largest batch size captured."""
    lists, results = parsed
    sleepers = [label for label in lists if label.startswith("sleep:")]
    assert len(sleepers) == 2
    for label in sleepers:
        assert results[label]["ok"], results[label]["error"]
        got, argv = results[label]["args"], lists[label]
        assert got["enable_sleep_mode"] is True
        assert str(got["kv_cache_memory_bytes"]) == argv[argv.index("--kv-cache-memory-bytes") + 1]
        assert str(got["max_cudagraph_capture_size"]) == argv[argv.index("--max-cudagraph-capture-size") + 1]


def test_registered_names(parsed):
    lists, results = parsed
    known = results["_known"]
    for label, argv in lists.items():
        for flag, kind in (("--quantization", "quantization"), ("--reasoning-parser", "reasoning_parser"),
                           ("--tool-call-parser", "tool_call_parser")):
            if flag in argv:
                assert argv[argv.index(flag) + 1] in known[kind], (label, flag, known[kind])


def test_role_default_quantizations_are_registered(parsed):
    import yaml

    results = parsed[1]
    defaults = yaml.safe_load((ROOT / "roles/vllm/defaults/main.yml").read_text())
    unknown = set(defaults["vllm_supported_quantizations"]) - set(results["_known"]["quantization"])
    assert not unknown
