"""CLI: python -m kube_api_double serve ... (see the package header)."""

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

import yaml

from .controllers import Controllers
from .schema import load_crd_file, make_crd
from .server import Api, make_server
from .store import Store
from .tls import ensure_certs, write_kubeconfig

HELMCHART_SCHEMA = Path(__file__).resolve().parents[2] / "render" / "fixtures" / "helm-controller" / "helmchart-v1-openapiv3.yaml"


def builtin_crds():
    """The CRDs k3s itself installs (only HelmChart is imitated)."""
    schema = yaml.safe_load(HELMCHART_SCHEMA.read_text())
    return [make_crd("helm.cattle.io", "helmcharts", "HelmChart", "v1", schema)]


def parse_args(argv):
    p = argparse.ArgumentParser(prog="kube_api_double", description="TEST DOUBLE of kube-apiserver")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--data-dir", required=True)
    s.add_argument("--listen", default="127.0.0.1:6443")
    s.add_argument("--tls-san", action="append", default=[])
    s.add_argument("--token-file", required=True)
    s.add_argument("--kubeconfig-out", required=True)
    s.add_argument("--kubeconfig-server", default="https://127.0.0.1:6443")
    s.add_argument("--k8s-version", default="1.33")
    s.add_argument("--crd-schema", action="append", default=[], help="a YAML file with CustomResourceDefinition(s) to serve from start")
    s.add_argument("--node-grace-s", type=float, default=40)
    s.add_argument("--pidfile")
    s.add_argument("--fake-kubelet", action="store_true", help="ONLY for this double's own tests: run bound pods on paper")
    s.add_argument("--shared-pod-network", action="store_true",
                   help="the kubelets run pods in their node's network (node_agent_double): schedule containerPorts as hostPorts")
    s.add_argument("--verbose", action="store_true")
    return p.parse_args(argv)


def main(argv=None):
    a = parse_args(sys.argv[1:] if argv is None else argv)
    os.makedirs(a.data_dir, exist_ok=True)
    host, _sep, port = a.listen.rpartition(":")
    certs = ensure_certs(a.data_dir, a.tls_san)
    write_kubeconfig(a.kubeconfig_out, certs, a.kubeconfig_server)
    token = Path(a.token_file).read_text().strip() if os.path.exists(a.token_file) else ""
    if not token:
        sys.exit("kube-api-double: token file %s is missing or empty" % a.token_file)
    crds = builtin_crds()
    for f in a.crd_schema:
        crds.extend(load_crd_file(f))
    store = Store(a.data_dir, a.k8s_version, crds)
    ctl = Controllers(store, node_grace_s=a.node_grace_s, fake_kubelet=a.fake_kubelet,
                      shared_pod_network=a.shared_pod_network)
    ca_pem = Path(certs["ca.crt"]).read_text()
    ctl.ca_pem = ca_pem
    api = Api(store, ctl, ca_pem, token, a.k8s_version, a.kubeconfig_server)
    srv = make_server(host.strip("[]") or "0.0.0.0", int(port), api, certs)
    srv.verbose = a.verbose
    if a.pidfile:
        Path(a.pidfile).write_text("%d\n" % os.getpid())

    def stop(*_):
        srv.stopping = True
        ctl.stop.set()
        threading.Thread(target=srv.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    t = threading.Thread(target=ctl.run, name="controllers", daemon=True)
    t.start()
    print("kube-api-double: serving on https://%s (k8s %s)" % (a.listen, a.k8s_version), flush=True)
    try:
        srv.serve_forever(poll_interval=0.2)
    finally:
        with store.lock:
            store.persist()
        srv.server_close()
        if a.pidfile and os.path.exists(a.pidfile):
            os.unlink(a.pidfile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
