"""TEST DOUBLE of k3s's Traefik ingress, with Debian's nginx (see __init__.py).

    python -m ingress_double run --api https://HOST:PORT (--token-file PATH | --kubeconfig PATH)
        --root DIR [--nginx /usr/sbin/nginx] [--http-port 80] [--https-port 443] [--poll-s 1]
"""

import argparse
import os
import signal
import sys
import threading

from node_agent_double.api import Client

from .nginx import IngressNginx, log


def main(argv=None):
    ap = argparse.ArgumentParser(prog="ingress_double", description="test double of k3s's Traefik ingress (nginx)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run")
    run.add_argument("--api", required=True)
    cred = run.add_mutually_exclusive_group(required=True)
    cred.add_argument("--kubeconfig")
    cred.add_argument("--token-file")
    run.add_argument("--root", required=True, help="nginx's config, certificates, logs and pid file")
    run.add_argument("--nginx", default="/usr/sbin/nginx")
    run.add_argument("--listen", default="0.0.0.0", help="the address nginx listens on")
    run.add_argument("--http-port", type=int, default=80)
    run.add_argument("--https-port", type=int, default=443)
    run.add_argument("--poll-s", type=float, default=1.0)
    a = ap.parse_args(argv)
    root = os.path.abspath(a.root)
    os.makedirs(root, mode=0o700, exist_ok=True)
    client = Client(a.api, os.path.join(root, "tls"), kubeconfig=a.kubeconfig, token_file=a.token_file)
    ingress = IngressNginx(client, root, a.nginx, a.listen, a.http_port, a.https_port)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    log("api %s, nginx %s, ports %d/%d" % (a.api, a.nginx, a.http_port, a.https_port))
    try:
        while not done.is_set():
            if ingress.exited():
                log("nginx exited with %s" % ingress.proc.returncode)
                return 1
            try:
                ingress.sync()
            except Exception as exc:  # noqa: BLE001 - the API may be restarting; keep the last config
                log("sync: %s" % exc)
            done.wait(a.poll_s)
    finally:
        ingress.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
