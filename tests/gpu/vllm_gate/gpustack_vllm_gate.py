"""A vLLM general plugin that lets a test orchestrator run one server's memory
profiling at a time, so that several vLLM servers can share one GPU for the
emulated-card runs without corrupting each other's KV-cache figure.

Why: vLLM sizes its KV cache from device-wide free memory (cudaMemGetInfo)
between its worker's first snapshot and the end of its profiling run; another
process allocating in that window shrinks the figure, and one freeing memory
there trips vLLM's own assertion. This plugin changes none of vLLM's arithmetic:
it only waits, in the engine core process, before the worker's init_device
(where the first snapshot is taken) until the orchestrator says go, and reports
when compile_or_warm_up_model (KV cache allocated, CUDA graphs captured) is done.

Protocol (files in $GPUSTACK_GATE_DIR, job name in $GPUSTACK_JOB):
  <job>.ready  written by the plugin when init_device is reached
  <job>.go     written by the orchestrator: start
  <job>.done   written by the plugin once warm-up finished (memory is stable)
Without GPUSTACK_GATE_DIR the plugin does nothing. Only for tests/gpu/.
"""
import os
import time


def _touch(path, text=""):
    with open(path, "w") as fh:
        fh.write(text)


def register():
    gate = os.environ.get("GPUSTACK_GATE_DIR")
    job = os.environ.get("GPUSTACK_JOB")
    if not gate or not job:
        return
    try:
        from vllm.v1.worker import gpu_worker
    except Exception as exc:  # noqa: BLE001 - the orchestrator must hear of any failure
        _touch(os.path.join(gate, job + ".error"), repr(exc))
        return
    worker = gpu_worker.Worker
    if getattr(worker, "_gpustack_gated", False):
        return
    init_device = worker.init_device
    warm_up = worker.compile_or_warm_up_model

    def gated_init_device(self, *args, **kwargs):
        t0 = time.time()
        _touch(os.path.join(gate, job + ".ready"), str(os.getpid()))
        while not os.path.exists(os.path.join(gate, job + ".go")):
            time.sleep(0.2)
        print("[gpustack-gate] %s waited %.1fs for its turn" % (job, time.time() - t0), flush=True)
        return init_device(self, *args, **kwargs)

    def reporting_warm_up(self, *args, **kwargs):
        try:
            return warm_up(self, *args, **kwargs)
        finally:
            _touch(os.path.join(gate, job + ".done"), str(time.time()))

    worker.init_device = gated_init_device
    worker.compile_or_warm_up_model = reporting_warm_up
    worker._gpustack_gated = True
