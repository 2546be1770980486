#!/usr/bin/env python3
# Copyright: homelab.gpu_stack contributors
# Apache License 2.0 (see LICENSE)
"""Parse argument lists with vLLM's own `vllm serve` parser (run in the vLLM venv).

    $VENV/bin/python tests/support/vllm_argparse.py < lists.json

stdin: a JSON object {label: [arg, ...]} (args as after `vllm serve`: the
model first). stdout: a JSON object {label: {"ok": bool, "error": str,
"args": {dest: value} of the flags given}} plus "_known": the registered
quantization methods, reasoning parsers and tool parsers, which argparse
itself does not check, and the activation dtypes of each quantization method
(vLLM refuses any other --dtype at engine start).
Each list goes through the same steps `vllm serve` takes before it starts an
engine: the `serve` subparser (make_arg_parser) and validate_parsed_serve_args,
so a renamed or removed flag, a bad value or a choice vLLM no longer offers
fails here. (AsyncEngineArgs.from_cli_args is left out: it resolves the model
on the hub.)
"""

import contextlib
import io
import json
import os
import sys

os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def build_parser():
    from vllm.entrypoints.cli.serve import ServeSubcommand
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    root = FlexibleArgumentParser(prog="vllm")
    subparsers = root.add_subparsers(dest="subcommand")
    ServeSubcommand().subparser_init(subparsers)
    return root


def check(root, argv):
    from vllm.entrypoints.launchers.cli_args import validate_parsed_serve_args

    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            ns = root.parse_args(["serve"] + list(argv))
        validate_parsed_serve_args(ns)
    except SystemExit:
        return {"ok": False, "error": err.getvalue().strip().splitlines()[-1:] and
                err.getvalue().strip().splitlines()[-1] or "parser exited"}
    except Exception as exc:  # noqa: BLE001 - any failure is the answer
        return {"ok": False, "error": "%s: %s" % (type(exc).__name__, exc)}
    values = {"model": getattr(ns, "model_tag", None) or ns.model}
    given = [a[2:].split("=", 1)[0].replace("-", "_") for a in argv if a.startswith("--")]
    for dest in given:
        if hasattr(ns, dest):
            value = getattr(ns, dest)
            values[dest] = value if isinstance(value, (str, int, float, bool, list, type(None))) \
                else str(value)
    return {"ok": True, "error": "", "args": values}


def known():
    """What the parser does not check itself: the registered names."""
    from vllm.model_executor.layers.quantization import QUANTIZATION_METHODS
    from vllm.reasoning import ReasoningParserManager
    from vllm.tool_parsers import ToolParserManager

    from vllm.model_executor.layers.quantization import get_quantization_config

    act_dtypes = {}
    for method in QUANTIZATION_METHODS:
        config = get_quantization_config(method)
        try:
            # a classmethod in most configs, a plain method in some
            dtypes = config.get_supported_act_dtypes()
        except TypeError:
            dtypes = config.get_supported_act_dtypes(config)
        act_dtypes[method] = sorted(str(d).replace("torch.", "") for d in dtypes)
    import typing

    from vllm.config.cache import CacheDType

    return {
        "act_dtypes": act_dtypes,
        "kv_cache_dtype": sorted(typing.get_args(CacheDType)),
        "quantization": sorted(QUANTIZATION_METHODS),
        "reasoning_parser": sorted(ReasoningParserManager.list_registered()),
        "tool_call_parser": sorted(ToolParserManager.list_registered()),
    }


def main():
    lists = json.load(sys.stdin)
    root = build_parser()
    out = dict((label, check(root, argv)) for label, argv in lists.items())
    out["_known"] = known()
    json.dump(out, sys.stdout, indent=1, sort_keys=True, default=str)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
