"""nginx configured from Ingress objects (see __init__.py)."""

import base64
import os
import pwd
import signal
import subprocess
import sys

from kube_proxy_double.proxy import service_address

CLASSES = (None, "traefik")


def log(msg):
    sys.stderr.write("ingress-double: %s\n" % msg)
    sys.stderr.flush()


def locations(path, path_type):
    """nginx location heads for one Ingress path (Prefix matches whole elements)."""
    if path_type == "Exact":
        return ["= %s" % path]
    if path in ("", "/"):
        return ["/"]
    path = path.rstrip("/")
    return ["= %s" % path, "%s/" % path]


def backend_target(ingress, backend, services):
    """'127.43.B.C:PORT' for the backend, or None when its Service or port does not exist."""
    svc_ref = (backend or {}).get("service") or {}
    svc = services.get((ingress["metadata"]["namespace"], svc_ref.get("name")))
    if svc is None or not (svc.get("spec") or {}).get("clusterIP") or svc["spec"]["clusterIP"] == "None":
        return None
    want = svc_ref.get("port") or {}
    for sp in svc["spec"].get("ports") or []:
        if ("number" in want and sp["port"] == want["number"]) or ("name" in want and sp.get("name") == want["name"]):
            return "%s:%d" % (service_address(svc["spec"]["clusterIP"]), sp["port"])
    return None


def routes(ingresses, services):
    """{host: {location head: target or None}} and {host: (namespace, tls secret name)}, over every Ingress of our class."""
    hosts, tls = {}, {}
    for ing in sorted(ingresses, key=lambda i: (i["metadata"].get("creationTimestamp", ""), i["metadata"]["namespace"],
                                                i["metadata"]["name"])):
        spec = ing.get("spec") or {}
        if spec.get("ingressClassName") not in CLASSES or ing["metadata"].get("deletionTimestamp"):
            continue
        for entry in spec.get("tls") or []:
            for host in entry.get("hosts") or []:
                if entry.get("secretName"):
                    tls.setdefault(host, (ing["metadata"]["namespace"], entry["secretName"]))
        for rule in spec.get("rules") or []:
            host = rule.get("host")
            if not host or host.startswith("*"):
                continue
            paths = hosts.setdefault(host, {})
            for p in (rule.get("http") or {}).get("paths") or []:
                target = backend_target(ing, p.get("backend"), services)
                for head in locations(p.get("path") or "/", p.get("pathType")):
                    paths.setdefault(head, target)   # the oldest Ingress keeps a path, as Traefik orders them
    return hosts, tls


def tls_pair(secret):
    data = (secret or {}).get("data") or {}
    if (secret or {}).get("type") != "kubernetes.io/tls" or not data.get("tls.crt") or not data.get("tls.key"):
        return None
    return base64.b64decode(data["tls.crt"]), base64.b64decode(data["tls.key"])


PROXY = """      proxy_pass http://{target};
      proxy_http_version 1.1;
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Forwarded-Host $host;
      proxy_set_header Connection "";
      proxy_buffering off;
      proxy_request_buffering off;
"""


def render(hosts, certs, listen, http_port, https_port, root, user):
    """The whole nginx.conf. certs: {host: (crt path, key path)} for the hosts served over HTTPS."""
    out = []
    if user:
        out.append("user %s;" % user)
    out += ["worker_processes 1;", "pid %s/nginx.pid;" % root, "error_log stderr warn;", "events { worker_connections 512; }",
            "http {", "  access_log %s/access.log;" % root,
            "  client_max_body_size 0;", "  proxy_read_timeout 600s;", "  proxy_send_timeout 600s;",
            "  server { listen %s:%d default_server; return 404; }" % (listen, http_port),
            "  server { listen %s:%d ssl default_server; ssl_reject_handshake on; }" % (listen, https_port)]
    for host in sorted(hosts):
        blocks = []
        for head, target in sorted(hosts[host].items()):
            body = PROXY.format(target=target) if target else "      return 503;\n"
            blocks.append("    location %s {\n%s    }" % (head, body))
        listens = ["    listen %s:%d;" % (listen, http_port)]
        if host in certs:
            listens.append("    listen %s:%d ssl;" % (listen, https_port))
            listens.append("    ssl_certificate %s;\n    ssl_certificate_key %s;" % certs[host])
        out.append("  server {\n    server_name %s;\n%s\n%s\n  }" % (host, "\n".join(listens), "\n".join(blocks)))
    out.append("}")
    return "\n".join(out) + "\n"


def write_if_changed(path, data, mode=0o600):
    try:
        with open(path, "rb") as f:
            if f.read() == data:
                return False
    except OSError:
        pass
    tmp = path + ".tmp"
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode), "wb") as f:
        f.write(data)
    os.replace(tmp, path)
    return True


class IngressNginx(object):
    def __init__(self, client, root, nginx, listen, http_port, https_port):
        self.client, self.root, self.nginx = client, root, nginx
        self.listen, self.http_port, self.https_port = listen, http_port, https_port
        self.conf = os.path.join(root, "nginx.conf")
        self.proc = None
        self.user = None
        if os.geteuid() == 0:
            self.user = next((u for u in ("www-data", "nobody") if self._has_user(u)), None)
        os.makedirs(os.path.join(root, "certs"), mode=0o700, exist_ok=True)

    @staticmethod
    def _has_user(name):
        try:
            pwd.getpwnam(name)
            return True
        except KeyError:
            return False

    def sync(self):
        ingresses = self.client.get("/apis/networking.k8s.io/v1/ingresses")["items"]
        services = {(s["metadata"]["namespace"], s["metadata"]["name"]): s for s in self.client.get("/api/v1/services")["items"]}
        hosts, tls = routes(ingresses, services)
        certs, changed = {}, False
        for host, (ns, name) in sorted(tls.items()):
            if host not in hosts:
                continue
            pair = tls_pair(self.client.get_or_none("/api/v1/namespaces/%s/secrets/%s" % (ns, name)))
            if pair is None:
                log("host %s: Secret %s/%s is missing or not kubernetes.io/tls: no HTTPS for it" % (host, ns, name))
                continue
            base = os.path.join(self.root, "certs", "%s_%s" % (ns, name))
            changed |= write_if_changed(base + ".crt", pair[0])
            changed |= write_if_changed(base + ".key", pair[1])
            certs[host] = (base + ".crt", base + ".key")
        text = render(hosts, certs, self.listen, self.http_port, self.https_port, self.root, self.user)
        candidate = self.conf + ".new"
        with open(candidate, "w") as f:
            f.write(text)
        try:
            with open(self.conf) as f:
                same = f.read() == text
        except OSError:
            same = False
        if same and not changed and self.proc is not None:
            return
        check = subprocess.run([self.nginx, "-t", "-q", "-p", self.root, "-c", candidate], capture_output=True, text=True, check=False)
        if check.returncode != 0:
            log("nginx refused the new config, keeping the last one: %s" % check.stderr.strip())
            return
        os.replace(candidate, self.conf)
        if self.proc is None:
            self.proc = subprocess.Popen([self.nginx, "-p", self.root, "-c", self.conf, "-g", "daemon off;"])
            log("nginx started (pid %d) for %d host(s)" % (self.proc.pid, len(hosts)))
        else:
            self.proc.send_signal(signal.SIGHUP)
            log("nginx reloaded for %d host(s)" % len(hosts))

    def exited(self):
        return self.proc is not None and self.proc.poll() is not None

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGQUIT)  # graceful
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
