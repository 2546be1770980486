"""Print the markdown tables of docs/benchmarks.md from serve_matrix.py results.

Usage: python3 tests/gpu/summarize.py tests/gpu/results/matrix_run3.json [tests/gpu/results/ab_run4.json ...]
Runs anywhere (no GPU, no vLLM): it only reads the JSON files.
"""
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_models  # noqa: E402


def kv_bytes_per_token(model):
    shape = gen_models.planner_shape(model)
    return 2 * shape["num_layers"] * shape["num_kv_heads"] * shape["head_dim"] * 2


def peak_activation(result):
    m = re.search(r"([\d.]+) GiB for peak activation", result.get("memory_summary") or "")
    if m:
        return m.group(1)
    if result.get("available_kv_gib") is not None and result.get("model_loading_gib") is not None:
        # vLLM stopped before its summary line: budget - weights - non-torch (0.22 GiB here) - KV.
        return "~%.2f" % (result["budget_mib"] / 1024 - result["model_loading_gib"] - 0.22
                          - result["available_kv_gib"])
    return None


def kv_table(results):
    print("| model (namesake shape) | card | planner args | predicted KV tokens | vLLM KV tokens "
          "| error | started | time to /health |")
    print("| --- | --- | --- | ---: | ---: | ---: | --- | ---: |")
    for r in results:
        pred = (r.get("predicted") or {}).get("kv_tokens")
        if pred is None:
            continue
        args = " ".join(a for a in r["args"] if a not in ("--tensor-parallel-size", "1", "--dtype", "auto"))
        args = args.replace("float16 --quantization awq_marlin", "awq_marlin fp16")
        args = args.replace("--gpu-memory-utilization", "util").replace("--max-model-len", "len")
        args = args.replace("--max-num-seqs", "seqs").replace("--max-num-batched-tokens", "batched")
        kv = r.get("kv_tokens")
        note = ""
        if kv is None and r.get("available_kv_gib") is not None:
            # vLLM refused before printing tokens; convert its GiB figure with the plan's bytes/token.
            kv = int(r["available_kv_gib"] * 2 ** 30 / kv_bytes_per_token(r["model"]))
            note = " (from %.2f GiB)" % r["available_kv_gib"] if kv > 0 else ""
        err = "%+.1f%%" % (100.0 * (pred - kv) / kv) if kv and kv > 0 else "n/a"
        if r["status"] == "started":
            started = "yes"
        else:
            why = (r.get("errors") or [r.get("why", "")])[0]
            started = "no: " + ("max_model_len > KV cache" if "max seq len" in why else
                                "no memory for KV cache" if "No available memory" in why else why[:60])
        print("| %s | %s | %s | %s | %s%s | %s | %s | %s |" % (
            r["model"], r["card"], args, "{:,}".format(pred), "{:,}".format(kv) if kv else "-", note, err,
            started, "%.0f s" % r["time_to_health_s"] if r.get("time_to_health_s") else "-"))


def memory_table(results):
    print("| run | budget GiB | weights planned / vLLM | peak activation planned / vLLM | KV GiB planned / vLLM |")
    print("| --- | ---: | --- | --- | --- |")
    for r in results:
        p = r.get("predicted") or {}
        act = peak_activation(r)
        print("| %s | %.2f | %s / %s | %s / %s | %s / %s |" % (
            r["name"], r["budget_mib"] / 1024, p.get("weight_gib", "-"), r.get("model_loading_gib", "-"),
            p.get("activation_gib", "-"), act if act is not None else "-", p.get("kv_cache_gib", "-"),
            r.get("available_kv_gib", "-")))


def bench_table(results):
    print("| run | args | started | output tok/s at concurrency 32 (rounds) |")
    print("| --- | --- | --- | --- |")
    for r in results:
        if not (r.get("bench") or r["kind_hint"] in ("handwritten", "vllm-defaults")):
            continue
        b = r.get("bench") or {}
        rounds = b.get("rounds_tok_per_s")
        val = "%s%s" % (b.get("output_tok_per_s", "-"), " (%s)" % ", ".join(str(x) for x in rounds) if rounds else "")
        print("| %s | %s | %s | %s |" % (r["name"], " ".join(r["args"]) or "(none)", r["status"], val))


def main():
    results = []
    for path in sys.argv[1:]:
        for r in json.load(open(path))["results"]:
            r["kind_hint"] = ("handwritten" if "handwritten" in r["name"] else
                              "vllm-defaults" if "defaults" in r["name"] else "planner")
            results.append(r)
    print("#### KV cache per model x card\n")
    kv_table(results)
    print("\n#### Memory breakdown (GiB)\n")
    memory_table([r for r in results if r.get("predicted")])
    print("\n#### Throughput\n")
    bench_table(results)


if __name__ == "__main__":
    main()
