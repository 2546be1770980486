# Copyright: homelab.gpu_stack contributors
# Apache License 2.0 (see LICENSE)
"""k8s_service_metrics (the summary's reading of each vLLM's /metrics) through
the Kubernetes API double's service proxy, against a real HTTP server on
loopback standing behind a Service's Endpoints."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from test_kube_api_double import Double, run_module

PAGE = 'vllm:cache_config_info{block_size="16",num_gpu_blocks="1888"} 1.0\n'


class Metrics(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's name
        body = PAGE.encode() if self.path == "/metrics" else b"not here"
        self.send_response(200 if self.path == "/metrics" else 404)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    server = ThreadingHTTPServer(("127.0.0.1", 0), Metrics)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    api = Double(tmp_path_factory.mktemp("kad-metrics"))
    api.start()
    from kubernetes import client, config
    core = client.CoreV1Api(config.new_client_from_config(str(api.kubeconfig)))
    for name in ("chat", "idle"):  # no selector: the Endpoints are ours, as for a Service outside the cluster
        core.create_namespaced_service("default", {"metadata": {"name": name}, "spec": {
            "ports": [{"name": "http", "port": 8000, "targetPort": server.server_port}]}})
    core.create_namespaced_endpoints("default", {"metadata": {"name": "chat"}, "subsets": [{
        "addresses": [{"ip": "127.0.0.1"}], "ports": [{"name": "http", "port": server.server_port}]}]})
    yield api
    api.stop()
    server.shutdown()


def test_reads_the_page_a_service_serves(cluster):
    result = run_module(cluster, "homelab.gpu_stack.k8s_service_metrics", {"namespace": "default", "name": "chat"})
    assert result["ok"] is True and result["text"] == PAGE, result
    assert result["changed"] is False


def test_says_why_without_failing_the_run(cluster):
    result = run_module(cluster, "homelab.gpu_stack.k8s_service_metrics", {"namespace": "default", "name": "idle"})
    assert not result.get("failed"), result
    assert result["ok"] is False and "503" in result["error"], result
    result = run_module(cluster, "homelab.gpu_stack.k8s_service_metrics",
                        {"namespace": "default", "name": "chat", "path": "nothing"})
    assert result["ok"] is False and "404" in result["error"], result
