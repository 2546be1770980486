# Copyright: homelab.gpu_stack contributors
# Apache License 2.0 (see LICENSE)
"""A client looping chat completions through the gateway, as a household app would,
until a stop file appears; it counts every answer and every failure.

    loop_client.py --base-url https://llm.../v1 --model tiny-chat --out STATS.json
        --stop-file PATH [--ca-file CA.pem] [--connect-address IP] [--api-key-env VAR]

The API key is read from the environment (never from argv, which `ps` shows).
STATS.json is rewritten after every request: {"ok", "failed", "errors" (the
last 20), "backends" ({api_base: count}: which tier answered), "pid"}. It
reaches the gateway as the collection's gate does (module_utils/openai_gate's
http_client: the collection's CA only, connections to --connect-address).
The harness starts it in the background and stops it with the stop file, by
PID as a fallback.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "plugins" / "module_utils"))
import openai_gate  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--stop-file", required=True)
    ap.add_argument("--ca-file")
    ap.add_argument("--connect-address")
    ap.add_argument("--api-key-env", default="LOOP_CLIENT_API_KEY")
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument("--pause", type=float, default=0.2)
    a = ap.parse_args(argv)

    from openai import OpenAI

    http = openai_gate.http_client(ca_path=a.ca_file, connect_address=a.connect_address)
    client = OpenAI(base_url=a.base_url, api_key=os.environ[a.api_key_env], http_client=http, max_retries=0,
                    timeout=a.timeout)
    stats = {"ok": 0, "failed": 0, "errors": [], "backends": {}, "pid": os.getpid()}
    out = Path(a.out)
    while not os.path.exists(a.stop_file):
        t0 = time.time()
        try:
            raw = client.chat.completions.with_raw_response.create(
                model=a.model, messages=[{"role": "user", "content": "Say hi."}], max_tokens=4)
            raw.parse()
            stats["ok"] += 1
            base = raw.headers.get("x-litellm-model-api-base") or "?"
            stats["backends"][base] = stats["backends"].get(base, 0) + 1
        except Exception as exc:  # noqa: BLE001 - every failure is counted, whatever its kind
            stats["failed"] += 1
            stats["errors"] = (stats["errors"] + ["%.1f %s" % (t0, openai_gate.describe(exc))])[-20:]
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(stats))
        os.replace(tmp, out)
        time.sleep(a.pause)
    return 0


if __name__ == "__main__":
    sys.exit(main())
