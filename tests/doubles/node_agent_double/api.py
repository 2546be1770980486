"""A small Kubernetes API client over http.client + ssl: only what a kubelet calls.

Two ways in, as on a k3s node: a kubeconfig with a client certificate (the
kubelet's own kubeconfig), or the node token as Basic `node:<token>` with the
cluster CA fetched from the server's /cacerts. When the token is a secure one
(K10<sha256 of the CA bundle>::...), the fetched CA must hash to it, as the k3s
agent checks; a plain token trusts the first CA it gets (k3s does the same).
Each thread keeps one HTTP/1.1 connection open, as client-go does: a TLS
handshake per poll would cost the sandbox's two cores more than the polls.
"""

import base64
import hashlib
import http.client
import json
import os
import ssl
import threading
import urllib.parse
import urllib.request

import yaml


class ApiError(Exception):
    def __init__(self, code, body):
        self.code, self.body = code, body
        try:
            self.status = json.loads(body)
        except ValueError:
            self.status = {}
        super().__init__("HTTP %s: %s" % (code, self.status.get("message") or body[:300]))


class Client:
    def __init__(self, server, tls_dir, kubeconfig=None, token_file=None, ca_file=None, timeout=15):
        self.server = server.rstrip("/")
        self.timeout = timeout
        self.headers = {}
        os.makedirs(tls_dir, mode=0o700, exist_ok=True)
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        ca_pem = open(ca_file).read() if ca_file else None
        if kubeconfig:
            ca_pem = ca_pem or self._load_kubeconfig(kubeconfig, tls_dir, ctx)
        elif token_file:
            token = open(token_file).read().strip()
            self.headers["Authorization"] = "Basic " + base64.b64encode(("node:" + token).encode()).decode()
            ca_pem = ca_pem or self._fetch_cacerts(token)
        else:
            raise ValueError("a kubeconfig or a token file is needed")
        ctx.load_verify_locations(cadata=ca_pem)
        self.ctx = ctx
        self._local = threading.local()

    def _load_kubeconfig(self, path, tls_dir, ctx):
        with open(path) as f:
            kc = yaml.safe_load(f)
        cur = kc.get("current-context")
        context = next((c["context"] for c in kc.get("contexts", []) if c["name"] == cur), kc["contexts"][0]["context"])
        cluster = next(c["cluster"] for c in kc["clusters"] if c["name"] == context["cluster"])
        user = next(u["user"] for u in kc["users"] if u["name"] == context["user"])

        def material(key, name):
            if key + "-data" in user:
                p = os.path.join(tls_dir, name)
                with open(os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
                    f.write(base64.b64decode(user[key + "-data"]))
                return p
            return user.get(key)

        cert, key = material("client-certificate", "client.crt"), material("client-key", "client.key")
        if cert and key:
            ctx.load_cert_chain(cert, key)
        if user.get("token"):
            self.headers["Authorization"] = "Bearer " + user["token"]
        if "certificate-authority-data" in cluster:
            return base64.b64decode(cluster["certificate-authority-data"]).decode()
        if cluster.get("certificate-authority"):
            return open(cluster["certificate-authority"]).read()
        raise ValueError("%s: the cluster has no certificate-authority; pass --ca-file" % path)

    def _fetch_cacerts(self, token):
        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE
        with urllib.request.urlopen(self.server + "/cacerts", context=insecure, timeout=self.timeout) as r:
            pem = r.read()
        if token.startswith("K10") and "::" in token:
            want = token[3:].split("::", 1)[0]
            if hashlib.sha256(pem).hexdigest() != want:
                raise ValueError("the server's /cacerts does not hash to the CA hash in the token")
        return pem.decode()

    def _send(self, method, target, data, headers):
        """One request on this thread's kept-open connection; a connection the
        server closed while idle is reopened once (the request never left)."""
        conn = getattr(self._local, "conn", None)
        reused = conn is not None
        if conn is None:
            split = urllib.parse.urlsplit(self.server)
            conn = http.client.HTTPSConnection(split.hostname, split.port or 443, timeout=self.timeout,
                                               context=self.ctx)
            self._local.conn = conn
        try:
            conn.request(method, target, body=data, headers=headers)
            response = conn.getresponse()
            return response.status, response.read()
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
            conn.close()
            self._local.conn = None
            if not reused:
                raise
            return self._send(method, target, data, headers)
        except (OSError, http.client.HTTPException):
            conn.close()
            self._local.conn = None
            raise

    def request(self, method, path, body=None, query=None, ctype="application/json"):
        target = urllib.parse.urlsplit(self.server).path.rstrip("/") + path
        if query:
            target += "?" + urllib.parse.urlencode(query)
        data = json.dumps(body).encode() if body is not None else None
        headers = dict(self.headers, Accept="application/json")
        if data is not None:
            headers["Content-Type"] = ctype
        status, raw = self._send(method, target, data, headers)
        if status >= 400:
            raise ApiError(status, raw.decode(errors="replace"))
        return json.loads(raw) if raw.strip() else None

    def get(self, path, query=None):
        return self.request("GET", path, query=query)

    def get_or_none(self, path):
        try:
            return self.get(path)
        except ApiError as e:
            if e.code == 404:
                return None
            raise
