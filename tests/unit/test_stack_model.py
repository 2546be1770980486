"""The stack model (issue 12): shapes from the model's own config.json, one
normalisation and one plan per model per run, one rule for labels and modes,
no secret in the fact."""

import glob
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from ansible_collections.homelab.gpu_stack.plugins.filter.stack import hub_lookup
from ansible_collections.homelab.gpu_stack.plugins.module_utils import model_config as mc
from ansible_collections.homelab.gpu_stack.plugins.module_utils import stack_model as sm
from ansible_collections.homelab.gpu_stack.plugins.module_utils import vram_planner as vp
from ansible_collections.homelab.gpu_stack.plugins.module_utils.inventory import check_inventory
from ansible_collections.homelab.gpu_stack.plugins.module_utils.model_spec import SpecError

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = str(ROOT / "tests" / "fixtures" / "model-configs")
GIB = 1 << 30
GPU12 = {"model": "NVIDIA GeForce RTX 3060", "vram_mib": 12288, "count": 1}
TIERS = [{"name": "gpu", "kind": "gpu", "fallback": "cloud"},
         {"name": "cloud", "kind": "cloud", "model": "gpt-4o-mini", "api_key": "sk-cloud-secret-value-0123"}]


def fixture_repos():
    return sorted(os.path.basename(p)[len("models--"):].replace("--", "/", 1)
                  for p in glob.glob(os.path.join(FIXTURES, "models--*")))


def view(models, mode="ml"):
    hostvars = {"nuc": {"gpu_stack_gpu": GPU12, "gpu_stack_models": models}}
    groups = {"k3s_servers": ["nuc"], "gpu_workers": ["nuc"]}
    return check_inventory(hostvars, groups, ["ml", "gaming"], mode, TIERS)


# --- config.json: the one parser and the fixtures --------------------------------

@pytest.mark.parametrize("repo", fixture_repos())
def test_every_fixture_gives_a_complete_shape(repo):
    config, folder = mc.find_cached_config(repo, "main", FIXTURES)
    assert folder and config, repo
    assert mc.missing_fields(mc.shape_from_hf_config(config)) == []


def test_the_fixtures_cover_the_shapes_the_issue_names():
    shapes = dict((repo, mc.shape_from_hf_config(mc.find_cached_config(repo, "main", FIXTURES)[0]))
                  for repo in fixture_repos())
    vocabularies = set(s["vocab_size"] for s in shapes.values())
    assert {151936, 152064, 128256} <= vocabularies
    assert any(s["tie_word_embeddings"] for s in shapes.values())
    assert any(s["num_kv_heads"] == s["num_attention_heads"] for s in shapes.values())  # MHA (Phi-3.5)
    families = " ".join(shapes).lower()
    for family in ("llama-3", "qwen2.5", "qwen3", "r1-distill", "mistral", "gemma-2", "gemma-3", "phi"):
        assert family in families, family


def test_tie_word_embeddings_left_out_takes_the_architectures_default():
    gemma2 = mc.shape_from_hf_config(mc.find_cached_config("google/gemma-2-9b-it", "main", FIXTURES)[0])
    assert gemma2["tie_word_embeddings"] is True
    unknown = {"model_type": "newarch", "num_attention_heads": 8, "hidden_size": 512, "num_hidden_layers": 2}
    assert "tie_word_embeddings" in mc.missing_fields(mc.shape_from_hf_config(unknown))


# --- where a shape comes from --------------------------------------------------

SPEC = {"name": "qwen", "source": "Qwen/Qwen2.5-7B-Instruct", "revision": "main"}
QWEN7 = mc.find_cached_config("Qwen/Qwen2.5-7B-Instruct", "main", FIXTURES)[0]


def test_the_sources_are_taken_in_order():
    node = {"config": dict(QWEN7, num_hidden_layers=1), "weight_bytes": 123}

    def hub(_repo, _revision):
        return dict(QWEN7, num_hidden_layers=2)
    full = dict(mc.shape_from_hf_config(QWEN7))
    assert mc.resolve_shape(SPEC, node, hub, FIXTURES)[1] == "node"
    assert mc.resolve_shape(SPEC, node, hub, FIXTURES)[0]["weight_bytes"] == 123
    assert mc.resolve_shape(SPEC, None, hub, FIXTURES)[0]["num_layers"] == 2
    assert mc.resolve_shape(SPEC, None, None, FIXTURES) == (full, "folder")
    assert mc.resolve_shape(dict(SPEC, shape=full), None, None, None) == (full, "spec")


def test_an_incomplete_source_is_passed_over_and_named():
    partial = dict(QWEN7)
    del partial["vocab_size"]
    shape, tried = mc.resolve_shape(dict(SPEC, shape={"num_layers": 28}), {"config": partial}, None, None)
    assert shape is None
    assert [t[0] for t in tried] == ["node", "hub", "folder", "spec"]
    assert tried[0] == ("node", "config.json lacks vocab_size")
    assert tried[2] == ("folder", "not set")


def test_the_refusal_names_the_spec_the_missing_fields_and_the_ways():
    models = [{"name": "qwen", "source": "org/qwen", "modes": ["ml"],
               "shape": {"num_layers": 28, "num_attention_heads": 28, "num_kv_heads": 4, "head_dim": 128,
                         "hidden_size": 3584, "params_b": 7.6, "max_position_embeddings": 32768}}]
    with pytest.raises(SpecError) as info:
        sm.compile_stack(view(models))
    message = str(info.value)
    assert message.startswith("gpu_stack_models[0] on host nuc.shape: no complete shape for model qwen")
    assert "shape lacks intermediate_size, vocab_size, tie_word_embeddings" in message
    for way in ("model_cache_prefetch", "Hugging Face Hub", "gpu_stack_model_configs", "spec's shape"):
        assert way in message


class FakeHub(BaseHTTPRequestHandler):
    seen = []

    def do_GET(self):  # noqa: N802 - http.server's name
        FakeHub.seen.append((self.path, self.headers.get("Authorization")))
        if self.path == "/Qwen/Qwen2.5-7B-Instruct/resolve/main/config.json":
            body = json.dumps(QWEN7).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self.send_response(404)
            self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_hub():
    """A loopback stand-in for the Hub (HF_ENDPOINT-style): no test reaches the real one."""
    server = HTTPServer(("127.0.0.1", 0), FakeHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    FakeHub.seen = []
    yield "http://127.0.0.1:%d" % server.server_port
    server.shutdown()


def test_the_hub_is_asked_for_config_json_alone_with_the_token(fake_hub):
    lookup = hub_lookup(fake_hub, "hf_token_value")
    assert lookup("Qwen/Qwen2.5-7B-Instruct", "main") == QWEN7
    assert FakeHub.seen == [("/Qwen/Qwen2.5-7B-Instruct/resolve/main/config.json", "Bearer hf_token_value")]


def test_an_unreachable_hub_is_asked_once_per_run():
    calls = []

    def offline(url, headers):
        calls.append(url)
        raise OSError("no route to host")
    lookup = hub_lookup("http://127.0.0.1:9", fetch=offline)
    assert lookup("a/b", "main") is None and lookup("c/d", "main") is None
    assert len(calls) == 1


def test_a_repo_the_hub_does_not_have_leaves_it_asked(fake_hub):
    lookup = hub_lookup(fake_hub)
    assert lookup("org/private", "main") is None
    assert lookup("Qwen/Qwen2.5-7B-Instruct", "main") == QWEN7


# --- the stack model ---------------------------------------------------------

def example_models():
    models = [{"name": "llama-8b", "source": "hugging-quants/Meta-Llama-3.1-8B-Instruct-AWQ-INT4",
               "quantization": "awq_marlin", "dtype": "float16", "modes": ["ml"]},
              {"name": "r1-distill-7b", "source": "casperhansen/deepseek-r1-distill-qwen-7b-awq",
               "quantization": "awq_marlin", "dtype": "float16", "modes": ["gaming"]}]
    return models


def test_the_stack_model_holds_what_every_stage_reads_and_no_secret():
    stack = sm.compile_stack(view(example_models()), config_folder=FIXTURES, names={"nuc": "nuc-node"})
    first, second = stack["models"]
    assert (first["active"], first["replicas"], second["active"], second["replicas"]) == (True, 1, False, 0)
    assert first["node_name"] == "nuc-node" and first["shape_source"] == "folder"
    assert first["plan"]["shape_source"] == "folder"
    assert first["args"] == sm.vllm_args(first["spec"], first["plan"])
    assert first["service"]["url"] == "http://llama-8b.llm.svc:8000/v1"
    assert first["labels"]["app.kubernetes.io/part-of"] == "homelab-gpu-stack"
    assert all(labels["app.kubernetes.io/part-of"] == "homelab-gpu-stack" for labels in stack["labels"].values())
    assert stack["gateway"]["key_env"] == {"cloud": "LITELLM_TIER_CLOUD_API_KEY"}
    assert stack["gateway"]["chains"] == {"llama-8b": ["cloud"], "r1-distill-7b": ["cloud"]}
    assert "sk-cloud-secret" not in json.dumps(stack)
    # Whether vLLM asks for a key is known, the key is not: a switch proves an
    # arrival by a chat through the pod proxy only where none is asked for.
    assert stack["chat_through_proxy"] is True
    keyed = sm.compile_stack(view(example_models()), config_folder=FIXTURES, vllm_key=True)
    assert keyed["chat_through_proxy"] is False


def test_r1_distill_fits_the_cache_vllm_finds_on_the_nucs_rtx_3060():
    """inventories/example's r1-distill-7b (Qwen2.5-7B shape, 152064 untied tokens) on the
    NUC: vLLM gets gpu_memory_utilization of what CUDA sees (12032 MiB of 12288) and
    keeps what the H100 measured for this model's non-KV memory (weights 5.40, first
    start's peak 1.04, non-torch 0.22 GiB, docs/benchmarks.md). Its cache must hold the
    planned max_model_len. The hand-typed shape (no vocabulary) got 74752 > 71104."""
    stack = sm.compile_stack(view(example_models(), mode="gaming"), config_folder=FIXTURES)
    plan = stack["models"][1]["plan"]
    found = vp.kv_tokens_for_bytes(plan["gpu_memory_utilization"] * 12032 * 2 ** 20 - (5.40 + 1.04 + 0.22) * GIB,
                                   plan["kv_bytes_per_token"])
    assert plan["max_model_len"] <= found
    assert plan["kv_cache_tokens"] == pytest.approx(found, rel=0.03)
    guessed = dict(num_layers=28, num_attention_heads=28, num_kv_heads=4, head_dim=128, hidden_size=3584,
                   params_b=7.62, max_position_embeddings=131072, intermediate_size=12544, vocab_size=128256)
    before = vp.plan(guessed, 12288, dtype="float16", quantization="awq_marlin")
    assert before["max_model_len"] > found  # what the guessed vocabulary planned: vLLM would refuse it


def test_one_rule_for_a_mode():
    assert sm.runs_in_mode({"modes": []}, "gaming")
    assert sm.runs_in_mode({"modes": ["ml"]}, "ml") and not sm.runs_in_mode({"modes": ["ml"]}, "gaming")


def test_node_names_override_then_k3s_then_host():
    assert sm.node_names(["a", "b", "c"], {"b": "bee", "c": "sea"}, {"c": "cee"}) == {"a": "a", "b": "bee", "c": "cee"}


# --- the planner facts the GPU showed ---------------------------------------

def test_tied_embeddings_load_above_their_file_size():
    shape = mc.shape_from_hf_config(mc.find_cached_config("Qwen/Qwen2.5-3B-Instruct", "main", FIXTURES)[0],
                                    weight_bytes_total=6 * GIB)
    assert shape["tie_word_embeddings"]
    assert vp.weight_bytes(shape) == int(6 * GIB * vp.DEFAULT_TUNABLES["tied_load_factor"])
    assert vp.weight_bytes(dict(shape, tie_word_embeddings=False)) == 6 * GIB


def test_a_model_that_fits_only_eagerly_is_told_so_with_the_figures():
    shape = dict(mc.shape_from_hf_config(QWEN7), params_b=5.0)
    with pytest.raises(vp.PlanError) as info:
        vp.plan(shape, 12288, dtype="bfloat16", name="tight")
    eager = vp.plan(shape, 12288, dtype="bfloat16", enforce_eager=True)
    message = str(info.value)
    assert message.startswith("model tight does not fit")
    assert "set extra_args enforce-eager: true" in message
    assert "%d tokens, max_model_len %d" % (eager["kv_cache_tokens"], eager["max_model_len"]) in message
    with pytest.raises(vp.PlanError) as info:
        vp.plan(dict(shape, params_b=9.0), 12288, dtype="bfloat16")
    assert "enforce-eager" not in str(info.value)  # no promise where eager does not fit either


# --- compute once ------------------------------------------------------------

def test_render_normalises_and_plans_each_model_once(tmp_path):
    """render.yml -i inventories/example, every role and the picture: the model
    normaliser and the planner are wrapped by counters in the run's own process."""
    calls = tmp_path / "calls"
    env = dict(os.environ, COUNT_FILE=str(calls), HF_HUB_OFFLINE="1", ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))
    proc = subprocess.run([sys.executable, str(ROOT / "tests" / "support" / "count_calls.py"), "playbooks/render.yml",
                           "-i", "inventories/example", "-e", "gpu_stack_render_dir=%s" % (tmp_path / "out")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    lines = sorted(calls.read_text().splitlines())
    assert lines == ["llama-8b normalize_model", "llama-8b plan", "r1-distill-7b normalize_model", "r1-distill-7b plan"]
    assert (tmp_path / "out" / "topology.svg").exists()


# --- switch: sleep (issue 14) --------------------------------------------------

def sleep_pair(level=None, **extra):
    models = example_models()
    for m in models:
        m.update(switch="sleep", **extra)
        if level:
            m["sleep_level"] = level
    return models


def test_sleeping_neighbours_are_planned_around_and_the_kv_cache_is_pinned():
    """Both models stay on the NUC's card: each is planned on the card less what the
    other keeps asleep, awake + asleep fits the card, and vLLM gets the planned KV
    budget outright (its sleep-mode KV sizing is wrong, vllm#40256)."""
    alone = sm.compile_stack(view(example_models()), config_folder=FIXTURES)["models"]
    stack = sm.compile_stack(view(sleep_pair()), config_folder=FIXTURES)
    card = (GPU12["vram_mib"] - vp.cuda_reserved_estimate_mib(GPU12["vram_mib"])) * 2 ** 20
    for m, other, single in zip(stack["models"], reversed(stack["models"]), alone):
        plan = m["plan"]
        assert plan["resident_bytes"] == other["plan"]["sleep_residual_bytes"] > 0.9 * GIB
        assert plan["kv_cache_bytes"] < single["plan"]["kv_cache_bytes"]
        # vLLM's start check: util x the whole card must be free beside the sleeping neighbour.
        assert plan["gpu_memory_utilization"] * card + plan["resident_bytes"] <= card
        assert plan["requested_bytes"] + plan["resident_bytes"] <= card
        args = m["args"]
        assert "--enable-sleep-mode" in args
        assert args[args.index("--kv-cache-memory-bytes") + 1] == str(plan["kv_cache_bytes"])
        assert m["replicas"] is None and m["strategy"] == "Recreate" and m["switch"] == "sleep"
        assert m["sleep_level"] == 1  # render reads no facts: memory unknown
    assert stack["gpu_sharing"] == 2
    assert sm.compile_stack(view(example_models()), config_folder=FIXTURES)["gpu_sharing"] == 1


def test_a_sleep_model_captures_fewer_graphs_and_its_residual_counts_them():
    """The graphs stay on the card while a model sleeps: a sleep model captures batch
    sizes up to sleep_cudagraph_capture_max and serves as many sequences (vLLM's
    default went to twice max_num_seqs: 27 sizes and 1.15 GiB asleep for the Qwen
    model on the H200), and its residual, which every neighbour is planned around,
    counts what it keeps: at least what the pair kept in switch_run2."""
    stack = sm.compile_stack(view(sleep_pair()), config_folder=FIXTURES)["models"]
    wide = sm.compile_stack(view(sleep_pair(extra_args={"max-cudagraph-capture-size": 256})),
                            config_folder=FIXTURES)["models"]
    eager = sm.compile_stack(view(sleep_pair(extra_args={"enforce-eager": True})), config_folder=FIXTURES)["models"]
    for m, w, e, kept in zip(stack, wide, eager, (912 * 2 ** 20, 992 * 2 ** 20)):
        args = m["args"]
        assert args[args.index("--max-cudagraph-capture-size") + 1] == "64" == str(m["plan"]["cudagraph_capture_max"])
        assert m["plan"]["max_num_seqs"] <= 64
        assert kept <= m["plan"]["sleep_residual_bytes"] <= 1.1 * GIB
        # The inventory's own cap replaces ours, once, and the residual follows it.
        assert w["args"].count("--max-cudagraph-capture-size") == 1
        assert w["args"][w["args"].index("--max-cudagraph-capture-size") + 1] == "256"
        assert w["plan"]["sleep_residual_bytes"] > m["plan"]["sleep_residual_bytes"] + 100 * 2 ** 20
        # No graphs, none kept and no cap asked for.
        assert "--max-cudagraph-capture-size" not in e["args"]
        assert e["plan"]["sleep_residual_bytes"] < m["plan"]["sleep_residual_bytes"] - 100 * 2 ** 20


def test_sleep_level_follows_the_nodes_memory():
    ram = {"nuc": 16 * 1024}
    stack = sm.compile_stack(view(sleep_pair()), config_folder=FIXTURES, host_ram_mib=ram)
    levels = [m["sleep_level"] for m in stack["models"]]
    assert levels == [2, 2]  # 2 x (2 x ~5.5 GiB) of parked weights > half of 16 GiB
    roomy = sm.compile_stack(view(sleep_pair()), config_folder=FIXTURES, host_ram_mib={"nuc": 64 * 1024})
    assert [m["sleep_level"] for m in roomy["models"]] == [1, 1]
    with pytest.raises(SpecError) as info:
        sm.compile_stack(view(sleep_pair(level=1)), config_folder=FIXTURES, host_ram_mib=ram)
    assert "gpu_stack_models[1] on host nuc.sleep_level: 1 parks" in str(info.value)
    assert "use sleep_level: 2" in str(info.value)


@pytest.mark.parametrize("model, message", [
    (dict(example_models()[0], extra_args={"enable-sleep-mode": True}), "extra_args.enable-sleep-mode: set by the collection"),
    (dict(example_models()[0], sleep_level=2), "sleep_level: 2 is only used with switch: sleep"),
    (dict(example_models()[0], switch="nap"), "switch"),
])
def test_bad_switch_settings_are_refused(model, message):
    with pytest.raises(SpecError) as info:
        view([model])
    assert message in str(info.value)


def test_a_level_2_model_keeps_room_for_what_its_reload_holds():
    """After a level-2 wake the server held 0.18-0.28 x its weights more than after a
    level-1 wake (H200, switch_run1.json): planned on a card that much smaller."""
    one = sm.compile_stack(view(sleep_pair(level=1)), config_folder=FIXTURES)["models"]
    two = sm.compile_stack(view(sleep_pair(level=2)), config_folder=FIXTURES)["models"]
    for a, b in zip(one, two):
        reserve = b["plan"]["reload_reserve_bytes"]
        assert a["plan"]["reload_reserve_bytes"] == 0
        assert reserve == pytest.approx(0.29 * b["plan"]["weight_bytes"], rel=0.01)
        assert b["plan"]["resident_bytes"] == a["plan"]["resident_bytes"] + reserve
        assert b["plan"]["kv_cache_bytes"] < a["plan"]["kv_cache_bytes"] - 0.9 * reserve
