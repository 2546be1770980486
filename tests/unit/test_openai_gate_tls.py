# Copyright: homelab.gpu_stack contributors
# Apache License 2.0 (see LICENSE)
"""The gate reaches an HTTPS Ingress host the way site.yml needs it to.

A real TLS server on loopback, with a certificate for llm.gpu-stack.home.arpa
from a CA made here, stands in for the Ingress; the gate's own HTTP client
(the openai client's) must connect to the address given (no DNS knows the
name), send the name in SNI and Host, and trust only the CA given. The
server side answers the three gate steps with fixed OpenAI-shaped JSON: what
is under test is the client's TLS and addressing, not the answers.
"""

import datetime
import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ansible_collections.homelab.gpu_stack.plugins.module_utils.openai_gate import (
    Gate, GateError, client_get, http_client, openai_client_factory)

HOST = "llm.gpu-stack.home.arpa"


def _cert(subject, issuer_key, issuer_name, key, ca=False, dns=None):
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer_name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=1)).not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if dns:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(d) for d in dns]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(obj):
    if isinstance(obj, x509.Certificate):
        return obj.public_bytes(serialization.Encoding.PEM)
    return obj.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


@pytest.fixture(scope="module")
def ingress(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tls")
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gpu-stack-ca")])
    ca = _cert(ca_name, ca_key, ca_name, ca_key, ca=True)
    cert = _cert(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)]), ca_key, ca_name, key, dns=[HOST])
    (tmp / "ca.crt").write_bytes(_pem(ca))
    (tmp / "server.pem").write_bytes(_pem(cert) + _pem(key))
    seen = []

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, body):
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            seen.append((self.headers["Host"], self.connection.server_hostname, self.path))
            if self.path == "/v1/models":
                self._answer({"object": "list", "data": [{"id": "tiny-chat", "object": "model"}]})
            else:
                self._answer({"status": "ok"})

        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            seen.append((self.headers["Host"], self.connection.server_hostname, self.path))
            self._answer({"id": "c", "object": "chat.completion", "created": 0, "model": "tiny-chat",
                          "choices": [{"index": 0, "finish_reason": "stop",
                                       "message": {"role": "assistant", "content": "hello"}}]})

        def log_message(self, *args):
            pass

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp / "server.pem")
    names = []
    ctx.sni_callback = lambda sock, name, _ctx: names.append(name)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield {"port": server.server_address[1], "ca": str(tmp / "ca.crt"), "seen": seen, "sni": names}
    server.shutdown()
    server.server_close()


def _gate(ingress, **client_args):
    client = http_client(**client_args)
    return Gate("https://%s:%d/v1" % (HOST, ingress["port"]), ["tiny-chat"], api_key="sk-test",
                deadline=5, health_path="/health/liveliness", http_get=client_get(client),
                client_factory=openai_client_factory(client))


def test_reaches_the_host_by_address_with_its_name_and_ca(ingress):
    result = _gate(ingress, ca_path=ingress["ca"], connect_address="127.0.0.1").run()
    assert result["passed"] and result["chat"]["tiny-chat"]["content"] == "hello"
    hosts = set(h for h, _sni, _path in ingress["seen"])
    assert hosts == {"%s:%d" % (HOST, ingress["port"])}
    assert set(ingress["sni"]) == {HOST}


def test_ca_as_text_works_too(ingress):
    with open(ingress["ca"]) as handle:
        assert _gate(ingress, ca_data=handle.read(), connect_address="127.0.0.1").run()["passed"]


def test_without_the_address_the_name_does_not_resolve(ingress):
    with pytest.raises(GateError, match="health"):
        _gate(ingress, ca_path=ingress["ca"]).run()


def test_the_controllers_trust_store_is_not_enough(ingress):
    with pytest.raises(GateError, match="(?i)certificate"):
        _gate(ingress, connect_address="127.0.0.1").run()
