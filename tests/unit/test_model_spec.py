"""The model spec and tier shapes: defaults, normalisation, routing."""

import re

import pytest
from ansible_collections.homelab.gpu_stack.plugins.module_utils import model_spec as ms
from ansible_collections.homelab.gpu_stack.plugins.module_utils.inventory import check_inventory

TIERS = [
    {"name": "gpu", "kind": "gpu", "fallback": "cpu"},
    {"name": "cpu", "kind": "cpu", "api_base": "http://cpu:11434", "model": "llama3.2:3b",
     "provider": "ollama_chat", "fallback": "cloud"},
    {"name": "cloud", "kind": "cloud", "model": "gpt-4o-mini", "api_key": "sk-x"},
]


def test_model_defaults_are_filled():
    m = ms.normalize_model({"name": "llama-8b", "source": "org/llama"}, "nuc", 0)
    assert m["served_name"] == "llama-8b"
    assert m["node"] == "nuc"
    assert m["revision"] == "main"
    assert m["context_length"] == "auto"
    assert m["tensor_parallel_size"] == 1
    assert m["cache"] == {"kind": "hostPath", "path": "/var/lib/gpu-stack/models",
                          "size_gib": None, "storage_class": None}
    assert m["tier"] == "gpu"


def test_extra_args_are_sorted_for_stable_output():
    m = ms.normalize_model({"name": "a", "source": "/models/a",
                            "extra_args": {"z-flag": 1, "a-flag": 2}}, "h", 0)
    assert list(m["extra_args"]) == ["a-flag", "z-flag"]


def test_unknown_field_is_refused_with_its_path():
    with pytest.raises(ms.SpecError, match=r"gpu_stack_models\[0\] on host h: .*contex_length"):
        ms.normalize_model({"name": "a", "source": "o/a", "contex_length": 5}, "h", 0)


def test_tier_chain_follows_fallbacks():
    tiers = ms.normalize_tiers(TIERS)
    assert ms.tier_chain(tiers, "gpu") == ["gpu", "cpu", "cloud"]
    assert tiers["gpu"]["provider"] == "hosted_vllm"


def test_cpu_tier_rejects_cloud_provider():
    bad = [dict(TIERS[1], provider="openai", fallback=None)]
    with pytest.raises(ms.SpecError, match="not valid for a cpu tier"):
        ms.normalize_tiers(bad)


def test_check_inventory_returns_the_normalised_view_without_keys():
    hostvars = {
        "srv": {},
        "nuc": {"gpu_stack_gpu": {"model": "RTX 3060", "vram_mib": 12288},
                "gpu_stack_models": [
                    {"name": "llama-8b", "source": "org/llama", "modes": ["ml"]},
                    {"name": "r1", "source": "org/r1", "modes": ["r1"]}]},
    }
    groups = {"k3s_servers": ["srv"], "k3s_agents": ["nuc"], "gpu_workers": ["nuc"]}
    view = check_inventory(hostvars, groups, ["ml", "r1", "gaming"], "ml", TIERS)
    assert [m["name"] for m in view["models"]] == ["llama-8b", "r1"]
    assert view["routes"] == {"llama-8b": ["gpu", "cpu", "cloud"], "r1": ["gpu", "cpu", "cloud"]}
    assert view["gpus"]["nuc"]["count"] == 1
    assert all("api_key" not in t for t in view["tiers"].values())
    assert all(not k.startswith("_") for m in view["models"] for k in m)


def test_a_deployed_cpu_tier_gets_its_service_and_provider():
    tiers = ms.normalize_tiers([TIERS[0], {"name": "cpu", "kind": "cpu", "model": "tiny", "fallback": "cloud",
                                           "deploy": {"host": "nas", "model_file": "tiny.gguf", "size_gib": 0.5}},
                                TIERS[2]])
    cpu = tiers["cpu"]
    assert (cpu["service"], cpu["port"], cpu["provider"], cpu["api_base"]) == ("cpu-tier", 8080, "openai_compatible", None)
    assert cpu["deploy"] == {"host": "nas", "server": "llama_cpp", "model_file": "tiny.gguf", "size_gib": 0.5,
                             "cache_path": "/var/lib/gpu-stack/cpu-models", "context_length": 2048, "threads": 0}
    ollama = ms.normalize_tiers([{"name": "cpu", "kind": "cpu", "model": "llama3.2:3b",
                                  "deploy": {"host": "nas", "server": "ollama", "size_gib": 2}}])["cpu"]
    assert (ollama["port"], ollama["provider"]) == (11434, "ollama_chat")
    assert "service" not in ms.normalize_tiers(TIERS)["cpu"]


@pytest.mark.parametrize("deploy,message", [
    ({"host": "nas", "server": "ollama", "model_file": "x.gguf", "size_gib": 2}, r"Ollama pulls model .* leave model_file out"),
    ({"host": "nas", "model_file": "x.gguf", "size_gib": 0}, r"deploy.size_gib: must be positive"),
    ({"host": "nas", "model_file": "x.gguf", "size_gib": 1, "cache_path": "models"}, r"deploy.cache_path: 'models' must be an absolute path on host nas"),
    ({"host": "nas", "model_file": "x.gguf", "size_gib": 1, "threads": -1}, r"threads 0 \(all\) or more"),
])
def test_a_deployed_tier_refuses_what_its_server_cannot_run(deploy, message):
    with pytest.raises(ms.SpecError, match=message):
        ms.normalize_tiers([{"name": "cpu", "kind": "cpu", "model": "m", "deploy": deploy}])


@pytest.mark.parametrize("path,ok", [
    ("/var/lib/gpu-stack/models", True), ("/srv/models", True), ("/mnt/nvme/llm", True), ("/home/ops/models", True),
    ("/", False), ("/etc", False), ("/etc/models", False), ("/usr/local/models", False), ("/var/lib", False),
    ("/var/lib/rancher/k3s/models", False), ("/var/lib/../etc", False), ("/srv/models/", False), ("models", False),
    ("/proc/self", False), ("/tmp", False),
])
def test_cache_paths_outside_the_system_folders_only(path, ok):
    if ok:
        ms.check_cache_path(path, "x.cache.path", "h")
    else:
        with pytest.raises(ms.SpecError, match=r"^x\.cache\.path: "):
            ms.check_cache_path(path, "x.cache.path", "h")


@pytest.mark.parametrize("change, message", [
    ({"quantization": "awq", "dtype": "float32"}, "dtype: float32 with quantization awq"),
    ({"tensor_parallel_size": 3, "shape": {"num_attention_heads": 28}}, "3 does not divide the model's 28"),
    ({"tensor_parallel_size": 4, "shape": {"num_attention_heads": 24, "num_kv_heads": 6}}, "6 KV heads"),
    ({"extra_args": {"enforce-eager": "yes"}}, "extra_args.enforce-eager: 'yes' is a string"),
])
def test_what_vllm_refuses_at_start_is_refused_here(change, message):
    with pytest.raises(ms.SpecError, match=re.escape(message)):
        ms.normalize_model(dict({"name": "m", "source": "org/m"}, **change), "h", 0)


@pytest.mark.parametrize("change", [
    {"quantization": "awq", "dtype": "float16"},
    {"quantization": "awq", "dtype": "auto"},
    {"tensor_parallel_size": 4, "shape": {"num_attention_heads": 32, "num_kv_heads": 8}},
    # fewer KV heads than GPUs: vLLM replicates them
    {"tensor_parallel_size": 4, "shape": {"num_attention_heads": 32, "num_kv_heads": 2}},
    {"extra_args": {"enforce-eager": True, "reasoning-parser": "deepseek_r1"}},
])
def test_what_vllm_accepts_passes(change):
    ms.normalize_model(dict({"name": "m", "source": "org/m"}, **change), "h", 0)


@pytest.mark.parametrize("name", ["chat\n", "Chat", "chat_1", "-chat"])
def test_model_names_are_dns_labels_to_the_end(name):
    with pytest.raises(ms.SpecError, match="must be a lowercase DNS label"):
        ms.normalize_model({"name": name, "source": "org/m"}, "h", 0)


def test_a_misspelled_collection_variable_is_named_with_the_closest_one():
    from ansible_collections.homelab.gpu_stack.plugins.module_utils.inventory import KNOWN_VARS, unknown_variables
    got = unknown_variables({"gs-gpu": ["gpu_stack_model", "gpu_stack_gpu", "ansible_host", "gpustack_tiers"],
                             "gs-cpu": ["gpu_stack_colour", "k3s_token"]})
    assert got == [
        "gpu_stack_colour on host gs-cpu: not a variable of homelab.gpu_stack, nothing reads it; known: "
        + ", ".join(KNOWN_VARS),
        "gpu_stack_model on host gs-gpu: not a variable of homelab.gpu_stack, nothing reads it; "
        "did you mean gpu_stack_models?",
        "gpustack_tiers on host gs-gpu: not a variable of homelab.gpu_stack, nothing reads it; "
        "did you mean gpu_stack_tiers?",
    ]


def test_known_variables_are_every_gpu_stack_variable_the_collection_reads():
    """KNOWN_VARS + RUNTIME_VARS is exactly what roles, playbooks, plugins and
    inventories name: a new variable not added there would be warned about."""
    from pathlib import Path

    from ansible_collections.homelab.gpu_stack.plugins.module_utils import inventory
    root = Path(__file__).resolve().parents[2]
    used = set()
    for folder in ("roles", "playbooks", "plugins", "inventories", "molecule"):
        for path in (root / folder).rglob("*"):
            if path.is_file() and path.suffix in (".yml", ".yaml", ".j2", ".py"):
                used |= set(re.findall(r"\bgpu_stack_[a-z0-9_]+", path.read_text(errors="replace")))
    used -= {"gpu_stack_tier", "gpu_stack_no_such_module"}  # a model_info key, a kernel module name
    assert used == set(inventory.KNOWN_VARS) | set(inventory.RUNTIME_VARS)
