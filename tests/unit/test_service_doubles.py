"""The kube-proxy double (Service names and forwarding) and the ingress double's
nginx config, with their API client replaced by fixed lists: real sockets on
loopback, a real hosts file in tmp. molecule-k3s runs both against the API
double on the sandbox nodes, with Debian's nginx."""

import http.server
import socket
import sys
import threading
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "doubles"))
from ingress_double.nginx import render, routes  # noqa: E402
from kube_proxy_double.proxy import BEGIN, ServiceProxy, service_address  # noqa: E402


class Lists(object):
    """Stands in for node_agent_double.api.Client: list calls answer from fixed lists."""

    def __init__(self, services, endpoints, pods=()):
        self.services, self.endpoints, self.pods = services, endpoints, list(pods)

    def get(self, path, query=None):
        if path.endswith("/pods"):
            assert query == {"fieldSelector": "spec.nodeName=gs-cpu"}
            return {"items": self.pods}
        return {"items": self.services if path.endswith("/services") else self.endpoints}


def backend(name, address="127.0.0.1", port=0):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = name.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer((address, port), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def service(name, ip, port, target="http"):
    return {"metadata": {"name": name, "namespace": "llm"},
            "spec": {"clusterIP": ip, "ports": [{"name": "http", "port": port, "targetPort": target}]}}


def endpoints(name, ready, not_ready=()):
    subset = {"ports": [{"name": "http", "port": p} for p in {port for _ip, port in list(ready) + list(not_ready)}][:1]}
    if ready:
        subset["addresses"] = [{"ip": ip} for ip, _port in ready]
    if not_ready:
        subset["notReadyAddresses"] = [{"ip": ip} for ip, _port in not_ready]
    return {"metadata": {"name": name, "namespace": "llm"}, "subsets": [subset]}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def hosts(tmp_path):
    path = tmp_path / "hosts"
    path.write_text("127.0.0.1 localhost\n10.89.0.2 gs-server\n")
    return path


def get(address, port, timeout=5):
    with urllib.request.urlopen("http://%s:%d/" % (address, port), timeout=timeout) as r:
        return r.read().decode()


def test_service_names_resolve_and_forward_to_ready_endpoints_only(hosts):
    a = backend("a")
    b = backend("b")
    # Same endpoint port, another address: a not-ready pod that would answer.
    c = backend("c", "127.0.0.2", a.server_port)
    port = free_port()
    ep = endpoints("tiny-chat", [("127.0.0.1", a.server_port)])
    api = Lists([service("tiny-chat", "10.43.7.9", port)], [ep])
    proxy = ServiceProxy(api, str(hosts))
    try:
        proxy.sync()
        text = hosts.read_text()
        assert text.startswith("127.0.0.1 localhost\n10.89.0.2 gs-server\n" + BEGIN)
        assert "127.43.7.9 tiny-chat.llm.svc tiny-chat.llm.svc.cluster.local\n" in text
        # Service port != targetPort: the listener is on the Service's port.
        assert {get("127.43.7.9", port) for _i in range(4)} == {"a"}

        # A not-ready endpoint never gets traffic; two ready ones share it.
        ep["subsets"][0]["notReadyAddresses"] = [{"ip": "127.0.0.2"}]
        proxy.sync()
        assert {get("127.43.7.9", port) for _i in range(4)} == {"a"}
        ep["subsets"][0]["addresses"].append(ep["subsets"][0].pop("notReadyAddresses")[0])
        proxy.sync()
        assert {get("127.43.7.9", port) for _i in range(4)} == {"a", "c"}

        # No ready endpoint: refused at once, as kube-proxy's REJECT does.
        ep["subsets"][0].pop("addresses")
        proxy.sync()
        with pytest.raises(OSError) as refused:
            get("127.43.7.9", port, timeout=2)
        assert "refused" in str(refused.value).lower()

        ep["subsets"][0]["addresses"] = [{"ip": "127.0.0.1"}]
        ep["subsets"][0]["ports"] = [{"name": "http", "port": b.server_port}]
        proxy.sync()
        assert get("127.43.7.9", port) == "b"

        # The Service goes: its name and its listener go with it.
        api.services, api.endpoints = [], []
        proxy.sync()
        assert "tiny-chat" not in hosts.read_text()
        with pytest.raises(OSError):
            get("127.43.7.9", port, timeout=2)
    finally:
        proxy.close()
        for srv in (a, b, c):
            srv.shutdown()
    assert hosts.read_text() == "127.0.0.1 localhost\n10.89.0.2 gs-server\n%s\n# END kube-proxy-double Services\n" % BEGIN


def ingress(name, host, service_name, port, tls_secret=None, cls="traefik", path="/", path_type="Prefix", ts="2026-12-03T00:00:00Z"):
    backend = {"service": {"name": service_name, "port": port}}
    spec = {"rules": [{"host": host, "http": {"paths": [{"path": path, "pathType": path_type, "backend": backend}]}}]}
    if cls:
        spec["ingressClassName"] = cls
    if tls_secret:
        spec["tls"] = [{"hosts": [host], "secretName": tls_secret}]
    return {"metadata": {"name": name, "namespace": "llm", "creationTimestamp": ts}, "spec": spec}


def test_ingress_routes_by_host_to_the_service_address_with_its_tls_secret():
    services = {("llm", "litellm"): service("litellm", "10.43.0.20", 4000),
                ("llm", "tiny-chat"): service("tiny-chat", "10.43.0.21", 8000)}
    hosts, tls = routes([
        ingress("litellm", "llm.example.test", "litellm", {"name": "http"}, tls_secret="gpu-stack-tls"),
        ingress("tiny-chat", "tiny-chat.example.test", "tiny-chat", {"number": 8000}, path="/v1"),
        ingress("gone", "gone.example.test", "missing", {"number": 80}),
        ingress("other-class", "nginx.example.test", "litellm", {"name": "http"}, cls="nginx"),
        ingress("no-class", "default.example.test", "litellm", {"number": 4000}, cls=None),
        ingress("wrong-port", "wrong.example.test", "litellm", {"number": 81}),
    ], services)
    assert hosts == {
        "llm.example.test": {"/": "127.43.0.20:4000"},
        "tiny-chat.example.test": {"= /v1": "127.43.0.21:8000", "/v1/": "127.43.0.21:8000"},
        "gone.example.test": {"/": None},
        "default.example.test": {"/": "127.43.0.20:4000"},
        "wrong.example.test": {"/": None},
    }
    assert tls == {"llm.example.test": ("llm", "gpu-stack-tls")}
    conf = render(hosts, {"llm.example.test": ("/c/llm.crt", "/c/llm.key")}, "0.0.0.0", 80, 443, "/r", "www-data")
    llm = conf[conf.index("server_name llm.example.test;"):]
    llm = llm[:llm.index("\n  }")]
    assert "listen 0.0.0.0:443 ssl;" in llm and "ssl_certificate /c/llm.crt;" in llm
    assert "proxy_pass http://127.43.0.20:4000;" in llm and "proxy_buffering off;" in llm
    tiny = conf[conf.index("server_name tiny-chat.example.test;"):]
    tiny = tiny[:tiny.index("\n  }")]
    assert "443" not in tiny   # no tls entry: HTTP only
    gone = conf[conf.index("server_name gone.example.test;"):]
    assert "return 503;" in gone[:gone.index("\n  }")]
    assert "listen 0.0.0.0:443 ssl default_server; ssl_reject_handshake on;" in conf


def test_the_oldest_ingress_keeps_a_contested_path():
    services = {("llm", "a"): service("a", "10.43.0.30", 80), ("llm", "b"): service("b", "10.43.0.31", 80)}
    newer = ingress("new", "x.test", "b", {"number": 80}, ts="2026-12-03T10:00:00Z")
    older = ingress("old", "x.test", "a", {"number": 80}, ts="2026-12-03T09:00:00Z")
    hosts, _tls = routes([newer, older], services)
    assert hosts == {"x.test": {"/": service_address("10.43.0.30") + ":80"}}


def test_a_service_port_a_local_pod_declares_is_left_to_that_pod(hosts):
    """Pods share the node's network in the node-agent double: the local pod has the port on every address."""
    a = backend("a")
    port = free_port()
    pod = {"spec": {"containers": [{"ports": [{"containerPort": port}]}]}, "status": {"phase": "Running"}}
    api = Lists([service("tiny-chat", "10.43.7.10", port)], [endpoints("tiny-chat", [("127.0.0.1", a.server_port)])], [pod])
    proxy = ServiceProxy(api, str(hosts), node="gs-cpu")
    try:
        proxy.sync()
        assert proxy.listeners == {}
        assert "127.43.7.10 tiny-chat.llm.svc" in hosts.read_text()
        # The pod went (Failed): the Service port is the proxy's again.
        pod["status"]["phase"] = "Failed"
        proxy.sync()
        assert get("127.43.7.10", port) == "a"
    finally:
        proxy.close()
        a.shutdown()
