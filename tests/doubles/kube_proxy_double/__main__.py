"""TEST DOUBLE of kube-proxy and CoreDNS's Service names (see __init__.py).

    python -m kube_proxy_double run --api https://HOST:PORT (--token-file PATH | --kubeconfig PATH)
        --root DIR [--node NAME] [--hosts /etc/hosts] [--poll-s 1]
"""

import argparse
import os
import signal
import sys
import threading

from node_agent_double.api import Client

from .proxy import ServiceProxy, log


def main(argv=None):
    ap = argparse.ArgumentParser(prog="kube_proxy_double", description="test double of kube-proxy and Service DNS")
    sub = ap.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run")
    run.add_argument("--api", required=True)
    cred = run.add_mutually_exclusive_group(required=True)
    cred.add_argument("--kubeconfig")
    cred.add_argument("--token-file")
    run.add_argument("--root", required=True, help="its TLS material")
    run.add_argument("--node", help="this node's name: Service ports its pods declare are left to them")
    run.add_argument("--hosts", default="/etc/hosts", help="the hosts file it keeps the Service names in")
    run.add_argument("--poll-s", type=float, default=1.0)
    a = ap.parse_args(argv)
    client = Client(a.api, os.path.join(os.path.abspath(a.root), "tls"), kubeconfig=a.kubeconfig, token_file=a.token_file)
    proxy = ServiceProxy(client, a.hosts, a.node)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    log("api %s, hosts file %s" % (a.api, a.hosts))
    while not done.is_set():
        try:
            proxy.sync()
        except Exception as exc:  # noqa: BLE001 - the API may be restarting; keep the last state
            log("sync: %s" % exc)
        done.wait(a.poll_s)
    proxy.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
