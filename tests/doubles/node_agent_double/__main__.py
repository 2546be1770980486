"""TEST DOUBLE of the kubelet and containerd (see __init__.py for what it imitates and what it cannot show).

    python -m node_agent_double run --node NAME --api https://HOST:PORT
        (--kubeconfig PATH | --token-file PATH) [--ca-file PATH]
        [--images IMAGE_MAP.yaml] --root DIR [--node-address IP] [--poll-s 1]
        [--set NAME=VALUE ...] [--containerd-config PATH] [--heartbeat-s 10]
"""

import argparse
import os
import signal
import sys
import threading

from .agent import Agent, log
from .api import Client
from .images import ImageMap

DEFAULT_IMAGES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "images.yaml")
K3S_CONTAINERD_CONFIG = "/var/lib/rancher/k3s/agent/etc/containerd/config.toml"


def main(argv=None):
    ap = argparse.ArgumentParser(prog="node_agent_double", description="test double of the kubelet (and containerd)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="run the pods bound to one node")
    run.add_argument("--node", required=True)
    run.add_argument("--api", required=True, help="https://HOST:PORT of the API server")
    cred = run.add_mutually_exclusive_group(required=True)
    cred.add_argument("--kubeconfig", help="a kubeconfig with a client certificate (the kubelet's)")
    cred.add_argument("--token-file", help="the node token: Basic node:<token>, CA from the server's /cacerts")
    run.add_argument("--ca-file", help="trust this CA instead of the kubeconfig's or /cacerts'")
    run.add_argument("--images", default=DEFAULT_IMAGES, help="the image map (default: the package's images.yaml)")
    run.add_argument("--root", required=True, help="the agent's state: logs, pidfiles, volumes")
    run.add_argument("--node-address", help="the address pods get as podIP/hostIP (default: the Node's InternalIP)")
    run.add_argument("--poll-s", type=float, default=1.0)
    run.add_argument("--heartbeat-s", type=float, default=10.0, help="0: never post the Node's status")
    run.add_argument("--containerd-config", default=K3S_CONTAINERD_CONFIG, help="k3s's containerd config (its runtimes)")
    run.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="fills ${NAME} in the image map")
    a = ap.parse_args(argv)

    settings = {}
    for s in a.set:
        k, sep, v = s.partition("=")
        if not sep:
            ap.error("--set wants NAME=VALUE, got %r" % s)
        settings[k] = v
    root = os.path.abspath(a.root)
    os.makedirs(root, exist_ok=True)
    settings.setdefault("ROOT", root)
    images = ImageMap(a.images, settings)
    client = Client(a.api, os.path.join(root, "tls"), kubeconfig=a.kubeconfig, token_file=a.token_file, ca_file=a.ca_file)
    agent = Agent(a.node, client, images, root, a.containerd_config, node_address=a.node_address, poll_s=a.poll_s,
                  heartbeat_s=a.heartbeat_s)
    done = threading.Event()

    def on_term(signum, _frame):
        log("signal %d: stopping every container" % signum)
        done.set()
        agent.stopping.set()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    log("node %s, api %s, image map %s, root %s" % (a.node, a.api, a.images, root))
    loop = threading.Thread(target=agent.run, daemon=True)
    loop.start()
    while not done.wait(0.5):
        if not loop.is_alive():
            break
    agent.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
