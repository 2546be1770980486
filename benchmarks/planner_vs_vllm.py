# Copyright: homelab.gpu_stack contributors
# Apache License 2.0 (see LICENSE)
"""P4: the VRAM planner's KV-cache tokens against what a real vLLM reports.

    .venv/bin/python benchmarks/planner_vs_vllm.py

For each tiny model of tests/e2e/test_planner_vs_vllm.py (layers, KV heads,
head size and dtype differ) a real CPU vLLM (scripts/venv-vllm.sh) is started
with the arguments our vllm_args filter emits, and the planner's prediction
(bytes per token from the model's config.json, whole blocks of the
VLLM_CPU_KVCACHE_SPACE bytes) is printed beside vLLM's own kv_cache_size_tokens
(/metrics cache_config_info), with the ratio. Goal: within +-3%.
Also printed: the planner's full memory model (weights, activation peak,
non-torch) against the one GPU run recorded on an H100 (vLLM 0.26,
Qwen2.5-0.5B shape, gpu_memory_utilization 0.15: 906,992 tokens).
"""

import subprocess
import sys
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests" / "e2e"), str(ROOT / ".ansible" / "collections")]

from conftest import ProcessManager, chain, free_port, vllm_env  # noqa: E402
from test_planner_vs_vllm import SHAPES, metric_labels  # noqa: E402

from ansible_collections.homelab.gpu_stack.plugins.filter.vllm import vllm_args  # noqa: E402
from ansible_collections.homelab.gpu_stack.plugins.module_utils import model_config, vram_planner  # noqa: E402

GIB = 1 << 30
QWEN05 = dict(num_layers=24, num_attention_heads=14, num_kv_heads=2, head_dim=64, hidden_size=896,
              intermediate_size=4864, vocab_size=151936, tie_word_embeddings=True,
              max_position_embeddings=32768, params_b=0.494)


def main():
    import tempfile

    venv = Path(subprocess.run(["bash", str(ROOT / "scripts/venv-vllm.sh")], check=True, stdout=subprocess.PIPE,
                               text=True).stdout.strip().splitlines()[-1])
    work = Path(tempfile.mkdtemp(prefix="p4-"))
    procs = ProcessManager(work / "logs")
    worst = 0.0
    try:
        for name, options, space_gib in SHAPES:
            model_dir = work / name
            subprocess.run([str(venv / "bin/python"), str(ROOT / "tests/support/tiny_model.py"), str(model_dir)]
                           + options, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            dtype = options[options.index("--dtype") + 1]
            shape = model_config.shape_from_model_dir(str(model_dir))
            spec = {"name": name, "source": str(model_dir), "served_name": name, "dtype": dtype,
                    "quantization": None, "context_length": 512, "tensor_parallel_size": 1,
                    "extra_args": {"enforce-eager": True}, "shape": shape}
            plan = vram_planner.plan(shape, 12288, dtype=dtype, context_length=512, enforce_eager=True)
            port = free_port()
            env = dict(vllm_env(work / ("cache-" + name)), VLLM_CPU_KVCACHE_SPACE=str(space_gib))
            proc = procs.start(name, [venv / "bin/python", "-m", "vllm.entrypoints.cli.main", "serve"]
                               + vllm_args(spec, plan, port=port, host="127.0.0.1"), env=env, port=port)
            try:
                chain.wait_http("http://127.0.0.1:%d/health" % port, deadline=900, proc=proc)
                with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=10) as response:
                    info = metric_labels(response.read().decode(), "vllm:cache_config_info")
            finally:
                procs.stop(proc)
            reported = int(info["kv_cache_size_tokens"])
            per_token = vram_planner.kv_bytes_per_token(shape, dtype=dtype)
            predicted = vram_planner.kv_tokens_for_bytes(space_gib * GIB, per_token, int(info["block_size"]))
            ratio = predicted / reported
            worst = max(worst, abs(ratio - 1))
            print("P4 %-24s %5d B/token  planner %9d  vLLM %9d  ratio %.5f"
                  % (name, per_token, predicted, reported, ratio), flush=True)
    finally:
        procs.stop_all()
    recorded = 906992
    gpu = vram_planner.plan(QWEN05, 81089, gpu_memory_utilization=0.15, max_num_batched_tokens=8192,
                            max_num_seqs_cap=1024)
    print("P4 recorded H100 vLLM 0.26 qwen2.5-0.5b: planner %d  vLLM %d  ratio %.5f (full memory model)"
          % (gpu["kv_cache_tokens"], recorded, gpu["kv_cache_tokens"] / recorded))
    print("P4 worst CPU deviation %.3f%% (goal <= 3%%)" % (100 * worst))
    return 0 if worst <= 0.03 else 1


if __name__ == "__main__":
    sys.exit(main())
