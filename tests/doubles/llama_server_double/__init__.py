# llama_server_double: a TEST DOUBLE of llama.cpp's `llama-server` command
# line and HTTP surface, the entrypoint of ghcr.io/ggml-org/llama.cpp:server.
# The inference is real llama.cpp: llama-cpp-python's OpenAI-compatible
# server (built from source by scripts/venv-llamacpp.sh) answers every
# request; this package only takes llama-server's flags and env, and adds
# llama-server's /health. It exists because no llama-server binary (or image)
# can be had on the test machines. The node-agent double runs it for that
# image (images.yaml: /app/llama-server -> ${LLAMA_SERVER}).
#
# What it imitates:
#   * flags -m/--model, -a/--alias, --host, --port, -c/--ctx-size,
#     -t/--threads, --api-key, -np/--parallel, --no-webui, and their
#     LLAMA_ARG_* / LLAMA_API_KEY env forms (the flag wins, as in
#     llama-server); any other flag is refused with exit 1, as llama-server
#     refuses an unknown argument.
#   * GET /health: 200 {"status": "ok"} once the model is loaded (the server
#     only listens after that), without the API key, as llama-server's.
#   * /v1/models and /v1/chat/completions, from llama-cpp-python, under the
#     alias, with the API key when one is given.
# What it cannot show: llama-server's own scheduling (slots, -np), its
# /metrics, /props or web UI, its sampling defaults, or that a given
# llama.cpp build's server accepts these flags (docs/upstream.md names the
# version they were read from).
