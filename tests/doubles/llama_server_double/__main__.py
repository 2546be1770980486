"""TEST DOUBLE of llama-server's CLI and /health over llama-cpp-python (see __init__.py).

    python -m llama_server_double -m MODEL.gguf [-a ALIAS] [--host H] [--port P] [-c N] [-t N] [--api-key K]
"""

import os
import sys

# flag -> (setting, env name, type); llama-server's names (common/arg.cpp).
FLAGS = {
    "-m": ("model", "LLAMA_ARG_MODEL", str), "--model": ("model", "LLAMA_ARG_MODEL", str),
    "-a": ("alias", "LLAMA_ARG_ALIAS", str), "--alias": ("alias", "LLAMA_ARG_ALIAS", str),
    "--host": ("host", "LLAMA_ARG_HOST", str), "--port": ("port", "LLAMA_ARG_PORT", int),
    "-c": ("ctx_size", "LLAMA_ARG_CTX_SIZE", int), "--ctx-size": ("ctx_size", "LLAMA_ARG_CTX_SIZE", int),
    "-t": ("threads", "LLAMA_ARG_THREADS", int), "--threads": ("threads", "LLAMA_ARG_THREADS", int),
    "--api-key": ("api_key", "LLAMA_API_KEY", str),
    "-np": ("parallel", "LLAMA_ARG_N_PARALLEL", int), "--parallel": ("parallel", "LLAMA_ARG_N_PARALLEL", int),
}
SWITCHES = {"--no-webui"}
DEFAULTS = {"host": "127.0.0.1", "port": 8080, "ctx_size": 0, "threads": -1}


def parse(argv, env):
    opts = dict(DEFAULTS)
    for name, envname, kind in FLAGS.values():
        if envname in env:
            opts[name] = kind(env[envname])
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in SWITCHES:
            i += 1
            continue
        if arg not in FLAGS:
            raise SystemExit("error: invalid argument: %s" % arg)
        if i + 1 >= len(argv):
            raise SystemExit("error: expected value for argument: %s" % arg)
        name, _env, kind = FLAGS[arg]
        try:
            opts[name] = kind(argv[i + 1])
        except ValueError:
            raise SystemExit("error: invalid value for %s: %s" % (arg, argv[i + 1]))
        i += 2
    if not opts.get("model"):
        raise SystemExit("error: no model given (-m)")
    return opts


def main(argv=None):
    opts = parse(sys.argv[1:] if argv is None else argv, os.environ)
    import uvicorn
    from llama_cpp.server.app import create_app
    from llama_cpp.server.settings import ModelSettings, ServerSettings

    model = ModelSettings(model=opts["model"], model_alias=opts.get("alias") or os.path.basename(opts["model"]),
                          n_ctx=opts["ctx_size"] or 0, verbose=False,
                          **({"n_threads": opts["threads"]} if opts["threads"] > 0 else {}))
    server = ServerSettings(host=opts["host"], port=opts["port"], api_key=opts.get("api_key"))
    app = create_app(server_settings=server, model_settings=[model])

    @app.get("/health")
    def health():
        return {"status": "ok"}

    uvicorn.run(app, host=opts["host"], port=opts["port"], log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
