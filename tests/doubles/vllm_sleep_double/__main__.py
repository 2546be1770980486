"""python -m vllm_sleep_double --listen HOST:PORT --served-name NAME [--api-key KEY] [--hold-s S]
(see __init__.py for what it imitates and cannot show)."""

import argparse
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


class State:
    def __init__(self):
        self.lock = threading.Condition()
        self.asleep = {"weights": False, "kv_cache": False}
        self.zeroed = False  # level 2 dropped the weights; a bare wake leaves zeros
        self.log = []

    def sleeping(self):
        return any(self.asleep.values())


def make_handler(state, served_name, api_key, hold_s):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # as uvicorn: no 40 ms wait on a kept-alive reply

        def log_message(self, *_args):
            pass

        def _record(self, method):
            state.log.append((method, self.path))
            sys.stderr.write("vllm-sleep-double: %s %s\n" % (method, self.path))
            sys.stderr.flush()

        def _send(self, code, body):
            data = json.dumps(body).encode() if body is not None else b""
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _body(self):
            n = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(n) if n else b""
            return json.loads(raw) if raw else {}

        def do_GET(self):
            url = urlparse(self.path)
            self._record("GET")
            if url.path == "/health":
                return self._send(200, None)
            if url.path == "/is_sleeping":
                return self._send(200, {"is_sleeping": state.sleeping()})
            if url.path == "/v1/models":
                if api_key and self.headers.get("Authorization") != "Bearer " + api_key:
                    return self._send(401, {"error": "Unauthorized"})
                return self._send(200, {"object": "list", "data": [{"id": served_name, "object": "model"}]})
            return self._send(404, {"detail": "Not Found"})

        def do_POST(self):
            url = urlparse(self.path)
            query = parse_qs(url.query)
            body = self._body()
            self._record("POST")
            with state.lock:
                if url.path == "/sleep":
                    level = (query.get("level") or ["1"])[0]
                    if level not in ("1", "2"):
                        return self._send(400, {"error": "level must be 1 or 2"})
                    state.asleep = {"weights": True, "kv_cache": True}
                    state.zeroed = level == "2"
                    state.lock.notify_all()
                    return self._send(200, None)
                if url.path == "/wake_up":
                    tags = query.get("tags") or ["weights", "kv_cache"]
                    for tag in tags:
                        state.asleep[tag] = False
                    state.lock.notify_all()
                    return self._send(200, None)
                if url.path == "/collective_rpc":
                    if body.get("method") != "reload_weights":
                        return self._send(400, {"error": "only reload_weights is imitated"})
                    if state.asleep["weights"]:
                        return self._send(500, {"error": "weights are asleep"})
                    state.zeroed = False
                    return self._send(200, {"results": [None]})
            if url.path == "/v1/chat/completions":
                if api_key and self.headers.get("Authorization") != "Bearer " + api_key:
                    return self._send(401, {"error": "Unauthorized"})
                with state.lock:
                    # Queued silently while asleep: no answer until a wake.
                    if not state.lock.wait_for(lambda: not state.sleeping(), timeout=hold_s):
                        self.close_connection = True
                        return None
                    text = "!!!!" if state.zeroed else "hi"
                return self._send(200, {"id": "chatcmpl-double", "object": "chat.completion", "created": int(time.time()),
                                        "model": body.get("model") or served_name,
                                        "choices": [{"index": 0, "finish_reason": "stop",
                                                     "message": {"role": "assistant", "content": text}}],
                                        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}})
            return self._send(404, {"detail": "Not Found"})
    return Handler


def main(argv=None):
    ap = argparse.ArgumentParser(prog="vllm_sleep_double")
    ap.add_argument("--listen", required=True)
    ap.add_argument("--served-name", required=True)
    ap.add_argument("--api-key", default="")
    ap.add_argument("--hold-s", type=float, default=30.0)
    args = ap.parse_args(argv)
    host, port = args.listen.rsplit(":", 1)
    server = ThreadingHTTPServer((host, int(port)), make_handler(State(), args.served_name, args.api_key, args.hold_s))
    sys.stderr.write("vllm-sleep-double: %s on %s\n" % (args.served_name, args.listen))
    sys.stderr.flush()
    server.serve_forever()


if __name__ == "__main__":
    main()
