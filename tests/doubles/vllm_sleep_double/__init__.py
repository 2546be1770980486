# vllm_sleep_double: a TEST DOUBLE of vLLM's sleep-mode endpoints (vLLM 0.26.0
# started with --enable-sleep-mode and VLLM_SERVER_DEV_MODE=1). It is not vLLM.
# It exists because the sandbox's real vLLM is the CPU build, which has no
# sleep mode (CuMemAllocator is CUDA-only): the switch path's cluster calls
# (gpu_switch over the API server's pod proxy) need a server that answers them
# as the GPU build did on the H200 (2026-12-01 and tests/gpu/mode_switch.py).
#
# What it imitates:
#   * POST /sleep?level=1|2, POST /wake_up[?tags=weights|kv_cache],
#     GET /is_sleeping ({"is_sleeping": bool}), POST /collective_rpc
#     {"method": "reload_weights"}, GET /health, GET /v1/models and
#     POST /v1/chat/completions (an OpenAI-shaped answer).
#   * The two traps the GPU showed: a chat sent to a sleeping server is held
#     (queued silently, no error) until a wake, here up to --hold-s and then
#     dropped with no answer; after a level-2 sleep a bare /wake_up "works"
#     but the weights are zeros: chats answer garbage ("!!!!") until
#     reload_weights ran, as vLLM does with no error.
#   * Partial wakes: tags=weights then tags=kv_cache; /is_sleeping stays true
#     until both are back.
#   * --api-key: /v1 wants "Authorization: Bearer KEY", as vLLM's --api-key.
#
# What it cannot show: memory (no card, no residual, no offload to host
# memory), timing (a wake here is instant; the GPU's figures are in
# docs/benchmarks.md), a real model's answers, vLLM's errors on bad requests
# beyond 400 for an unknown level, and /collective_rpc methods other than
# reload_weights (refused with 400).
