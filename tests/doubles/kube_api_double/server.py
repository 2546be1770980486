"""The HTTPS front: authentication, discovery, the REST verbs, watch streams
and the subresources, over http.server with one thread per connection."""

import base64
import copy
import ipaddress
import json
import re
import socket
import ssl
import sys
import time
import traceback
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, unquote, urlsplit

import yaml

from . import controllers, merge, rbac
from .schema import Invalid
from .selectors import SelectorError, field_reqs_match, label_reqs_match, parse_field_selector, parse_label_selector
from .store import ApiError, invalid, managers_of, not_found
from .tls import client_identity

PATCH_TYPES = {"application/merge-patch+json", "application/strategic-merge-patch+json", "application/json-patch+json",
               "application/apply-patch+yaml"}


# Never passed on by the proxies: the caller's credentials (the API server's authentication filter
# drops Authorization), the headers of one hop, and Accept-Encoding (only the answer's Content-Type
# comes back, so a compressed answer would reach the caller undecodable).
NOT_FORWARDED = {"authorization", "host", "connection", "keep-alive", "proxy-authorization", "proxy-authenticate", "proxy-connection",
                 "te", "trailer", "transfer-encoding", "upgrade", "content-length", "accept-encoding"}
PROXY_TIMEOUT_S = 300   # the real proxy is a long-running request (no request timeout); a hung pod still ends here


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A proxy passes a redirect back; it does not follow it."""

    def redirect_request(self, *args, **kwargs):
        return None


def _proxy_address_allowed(ip, host_ip):
    """pod.ResourceLocation refuses an address that is not global unicast ("address not allowed": no IP yet,
    loopback, link-local). One exception: a pod in its node's network whose node's address is loopback,
    as the node-agent double runs every pod and as the k3s double's server node has 127.0.0.1; a real
    node's address is never loopback, so this lets through nothing a real cluster could refuse."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    if addr.is_loopback and ip == host_ip:
        return True
    return not (addr.is_loopback or addr.is_link_local or addr.is_multicast or addr.is_unspecified
                or (addr.version == 4 and str(addr) == "255.255.255.255"))


class Unauthorized(ApiError):
    def __init__(self):
        super().__init__(401, "Unauthorized", "Unauthorized")


def _truthy(v):
    return v is not None and v.lower() in ("true", "1")


class Api:
    """Everything the handler needs, shared by all request threads."""

    def __init__(self, store, ctl, ca_pem, node_token, k8s_version, server_url):
        self.store, self.ctl, self.ca_pem = store, ctl, ca_pem
        self.node_token, self.k8s_version, self.server_url = node_token, k8s_version, server_url

    def version_info(self):
        minor = self.k8s_version.split(".")[1]
        return {"major": "1", "minor": minor, "emulationMajor": "1", "emulationMinor": minor,
                "minCompatibilityMajor": "1", "minCompatibilityMinor": str(int(minor) - 1),
                "gitVersion": "v%s.5+k3s1" % self.k8s_version, "gitCommit": "0000000000000000000000000000000000000000",
                "gitTreeState": "clean", "buildDate": "2025-01-01T00:00:00Z", "goVersion": "go1.24.6",
                "compiler": "gc", "platform": "linux/amd64"}

    def authenticate(self, handler):
        """(user, groups), system:authenticated among the groups as the real authenticators add it."""
        user, groups = self._identity(handler)
        return user, groups + ["system:authenticated"]

    def _identity(self, handler):
        cert = handler.connection.getpeercert() if isinstance(handler.connection, ssl.SSLSocket) else None
        if cert:
            return client_identity(cert)
        auth = handler.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            try:
                user, _sep, pw = base64.b64decode(auth[6:]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                raise Unauthorized()
            if user == "node" and self._token_ok(pw):
                return "system:node", ["system:nodes"]
        elif auth.startswith("Bearer "):
            sa = self.ctl.service_account_for_token(auth[7:].strip())
            if sa:
                return sa, ["system:serviceaccounts", "system:serviceaccounts:" + sa.split(":")[2]]
        raise Unauthorized()

    def _token_ok(self, pw):
        # k3s agents send the full token; a secure token K10<ca-hash>::server:<secret> also matches by its secret.
        t = self.node_token
        return bool(t) and (pw == t or ("::" in t and pw == t.split("::", 1)[1].split(":", 1)[-1]))


def discovery_list(store, group, version):
    from .schema import discovery_entry
    res = []
    for rt in sorted(store.rtypes.values(), key=lambda r: r.plural):
        if rt.group == group and rt.version == version:
            res.extend(discovery_entry(rt))
    if not res:
        return None
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "%s/%s" % (group, version) if group else version,
            "resources": res}


def group_list(store):
    groups = {}
    for rt in store.rtypes.values():
        if rt.group:
            groups.setdefault(rt.group, set()).add(rt.version)
    out = []
    for g in sorted(groups):
        vs = sorted(groups[g], reverse=True)
        out.append({"name": g, "versions": [{"groupVersion": "%s/%s" % (g, v), "version": v} for v in vs],
                    "preferredVersion": {"groupVersion": "%s/%s" % (g, vs[0]), "version": vs[0]}})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": out}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "kube-api-double"
    # A response is written as headers, then body: with Nagle's algorithm on,
    # the body waits for the client's delayed ACK, 40 ms a request (Go's
    # net/http, kube-apiserver's, sets TCP_NODELAY).
    disable_nagle_algorithm = True
    api: Api = None

    def log_message(self, fmt, *args):
        if getattr(self.server, "verbose", False):
            sys.stderr.write("kube-api-double: %s %s\n" % (self.address_string(), fmt % args))

    # ---------------------------------------------------------------- plumbing

    def _send(self, code, body, ctype="application/json"):
        data = body if isinstance(body, bytes) else (json.dumps(body) + "\n").encode() if ctype == "application/json" else body.encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        self.wfile.write(data)

    def _raw_body(self):
        """The request body, read once: a request refused before its body was read (RBAC, say) still has
        it drained, or the next request on the kept-alive connection would start inside it."""
        if self._raw is None:
            n = int(self.headers.get("Content-Length") or 0)
            self._raw = self.rfile.read(n) if n > 0 else b""
        return self._raw

    def _body(self):
        raw = self._raw_body()
        if not raw.strip():
            return None
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        try:
            if ctype.endswith("yaml"):
                return yaml.safe_load(raw)
            return json.loads(raw)
        except (ValueError, yaml.YAMLError) as e:
            raise ApiError(400, "BadRequest", "the body of the request was in an unknown format - accepted media types include: "
                           "application/json, application/yaml (%s)" % e)

    def _dispatch(self, method):
        self._raw = None
        try:
            url = urlsplit(self.path)
            self.q = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
            path = url.path.rstrip("/") or "/"
            if method == "GET" and path == "/cacerts":
                return self._send(200, self.api.ca_pem, "text/plain")
            if method == "GET" and path in ("/healthz", "/readyz", "/livez"):
                return self._send(200, "ok", "text/plain")
            self.user = self.api.authenticate(self)
            rbac.check(self.api.store, *self.user, method, url.path, self.q)
            if method == "GET" and path == "/version":
                return self._send(200, self.api.version_info())
            m = re.fullmatch(r"/v1-k3s-double/nodes/([^/]+)", path)
            if m and method == "POST":
                return self._send(200, self.api.ctl.register_node(m.group(1), self._body() or {}))
            if method == "GET" and path == "/api":
                return self._send(200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
                    {"clientCIDR": "0.0.0.0/0", "serverAddress": urlsplit(self.api.server_url).netloc}]})
            if method == "GET" and path == "/apis":
                return self._send(200, group_list(self.api.store))
            m = re.fullmatch(r"/api/(v1)(/.*)?", path) or re.fullmatch(r"/apis/([^/]+)/([^/]+)(/.*)?", path)
            if not m:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            if path.startswith("/api/"):
                group, version, rest = "", m.group(1), m.group(2) or ""
            else:
                group, version, rest = m.group(1), m.group(2), m.group(3) or ""
            if not rest:
                if method != "GET":
                    raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
                d = discovery_list(self.api.store, group, version)
                if d is None:
                    raise ApiError(404, "NotFound", "the server could not find the requested resource")
                return self._send(200, d)
            return self._resource(method, group, version, [p for p in rest.split("/") if p])
        except ApiError as e:
            try:
                self._raw_body()
                self._send(e.code, e.status())
            except OSError:
                pass
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            self.close_connection = True
        except Exception as e:  # a bug in the double: say so the way the real server does
            traceback.print_exc()
            try:
                self._send(500, ApiError(500, "InternalError", "Internal error occurred: %s" % e).status())
            except OSError:
                pass

    def do_GET(self):
        return self._dispatch("GET")

    def do_POST(self):
        return self._dispatch("POST")

    def do_PUT(self):
        return self._dispatch("PUT")

    def do_PATCH(self):
        return self._dispatch("PATCH")

    def do_DELETE(self):
        return self._dispatch("DELETE")

    # ---------------------------------------------------------------- routing

    def _resource(self, method, group, version, parts):
        store = self.api.store
        ns = ""
        if parts[0] == "namespaces" and len(parts) >= 3 and parts[2] not in ("status", "finalize"):
            ns, parts = parts[1], parts[2:]
        rt = store.rtype(group, version, parts[0])
        if rt is None or (ns and not rt.namespaced):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        name = parts[1] if len(parts) > 1 else None
        sub = parts[2] if len(parts) > 2 else ""
        if rt.kind == "Service" and sub == "proxy":
            return self._service_proxy(method, ns, name, "/".join(parts[3:]))
        if rt.kind == "Pod" and sub == "proxy":
            return self._pod_proxy(method, ns, name)
        if len(parts) > 3 or (sub and sub not in rt.subresources):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        dry = self.q.get("dryRun") == "All"
        if self.q.get("dryRun") not in (None, "", "All"):
            raise ApiError(400, "BadRequest", 'Invalid dry run value: %s, valid values are: [All]' % self.q["dryRun"])
        manager = self.q.get("fieldManager") or (self.headers.get("User-Agent") or "unknown").split("/")[0]
        if name is None:
            if method == "GET":
                return self._list(rt, ns)
            if method == "POST":
                body = self._body() or {}
                self._check_kind(rt, body)
                return self._send(201, self._out(rt, store.create(rt, ns, body, manager, dry_run=dry)))
            if method == "DELETE":
                return self._delete_collection(rt, ns, dry)
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
        if sub == "eviction":
            if method != "POST":
                raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
            return self._send(201, self.api.ctl.evict(ns, name, self._body() or {}, dry))
        if sub == "scale":
            return self._scale(method, rt, ns, name, manager, dry)
        if method == "GET":
            return self._send(200, self._out(rt, store.get(rt, ns, name)))
        if method == "PUT":
            body = self._body() or {}
            self._check_kind(rt, body)
            old = store.get(rt, ns, name)
            if not (body.get("metadata") or {}).get("resourceVersion") and rt.kind not in ("Namespace",):
                # An unconditional update is allowed for most kinds; keep the check for a stale one only.
                pass
            if sub == "status":
                new = copy.deepcopy(old)
                new["status"] = body.get("status")
                if new["status"] is None:
                    new.pop("status")
                new["metadata"]["resourceVersion"] = (body.get("metadata") or {}).get("resourceVersion") or old["metadata"]["resourceVersion"]
                return self._send(200, self._out(rt, store.write(rt, ns, name, old, new, manager, subresource="status", dry_run=dry)))
            return self._send(200, self._out(rt, store.write(rt, ns, name, old, body, manager, dry_run=dry)))
        if method == "PATCH":
            return self._patch(rt, ns, name, sub, manager, dry)
        if method == "DELETE":
            body = self._body() or {}
            grace = self.q.get("gracePeriodSeconds", body.get("gracePeriodSeconds"))
            prop = self.q.get("propagationPolicy", body.get("propagationPolicy"))
            if body.get("orphanDependents") is True or _truthy(self.q.get("orphanDependents")):
                prop = "Orphan"
            out = store.delete(rt, ns, name, grace=int(grace) if grace is not None else None, propagation=prop, dry_run=dry,
                               preconditions=body.get("preconditions"))
            still = store.get_obj(rt, ns, name)
            if still is not None or rt.kind == "Pod":
                return self._send(200, self._out(rt, still or out))
            return self._send(200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                                    "details": {"name": name, "group": rt.group, "kind": rt.plural, "uid": out["metadata"]["uid"]}})
        raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")

    def _check_kind(self, rt, body):
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "the body of the request was in an unknown format")
        if body.get("kind") and body["kind"] != rt.kind:
            raise ApiError(400, "BadRequest", "%s in version \"%s\" cannot be handled as a %s: the kind is wrong"
                           % (body["kind"], rt.version, rt.kind))
        if body.get("apiVersion") and body["apiVersion"] != rt.api_version:
            raise ApiError(400, "BadRequest", "the API version in the data (%s) does not match the expected API version (%s)"
                           % (body["apiVersion"], rt.api_version))

    def _out(self, rt, obj):
        obj["apiVersion"], obj["kind"] = rt.api_version, rt.kind
        return obj

    # ---------------------------------------------------------------- list / watch

    def _selectors(self, rt):
        try:
            return parse_label_selector(self.q.get("labelSelector")), parse_field_selector(self.q.get("fieldSelector"), rt.kind)
        except SelectorError as e:
            raise ApiError(400, "BadRequest", str(e))

    def _service_proxy(self, method, ns, ref, path):
        """services/NAME[:PORT]/proxy/PATH: a GET to the Service's first ready endpoint (its Endpoints
        object), as the API server's proxy sends it; no other method, no websockets."""
        if method != "GET":
            raise ApiError(405, "MethodNotAllowed", "the double's service proxy only GETs")
        name, _sep, port = unquote(ref).partition(":")  # clients send the colon as %3A
        endpoints = self.api.store.get_obj(self.api.store.rtype("", "v1", "endpoints"), ns, name) or {}
        subset = (endpoints.get("subsets") or [{}])[0]
        ports = [p for p in subset.get("ports") or [] if not port or port in (p.get("name"), str(p["port"]))]
        if not subset.get("addresses") or not ports:
            raise ApiError(503, "ServiceUnavailable", 'no endpoints available for service "%s"' % name)
        return self._forward("GET", "http://%s:%d/%s" % (subset["addresses"][0]["ip"], ports[0]["port"], path), with_body=False)

    def _pod_proxy(self, method, ns, ref):
        """pods/[SCHEME:]NAME[:PORT]/proxy[/PATH]: the request (method, query, body, headers but the caller's
        credentials) sent to the pod's IP, the answer passed back, as pod.ResourceLocation and the
        upgrade-aware proxy do. PORT is used as given (a container port's name is not looked up, as in the
        real server: Go's dialer reads it as a service name); none: the first container port declared."""
        ident = unquote(ref)   # clients send the colons as %3A
        parts = ident.split(":")
        scheme, name, port = parts if len(parts) == 3 else ("", parts[0], parts[1] if len(parts) == 2 else "")
        if len(parts) > 3 or not name or scheme not in ("", "http", "https"):
            raise ApiError(400, "BadRequest", 'invalid pod request "%s"' % ident)
        pod = self.api.store.get(self.api.store.rtype("", "v1", "pods"), ns, name)
        if not port:
            port = next((str(c["ports"][0]["containerPort"]) for c in pod["spec"].get("containers") or [] if c.get("ports")), "")
        st = pod.get("status") or {}
        ip = ((st.get("podIPs") or [{}])[0]).get("ip") or ""
        if not _proxy_address_allowed(ip, st.get("hostIP")):
            raise ApiError(400, "BadRequest", "address not allowed")
        if port and not port.isdigit():
            try:
                port = str(socket.getservbyname(port, "tcp"))
            except OSError:
                raise ApiError(503, "ServiceUnavailable", "error trying to reach service: dial tcp: lookup tcp/%s: unknown port" % port)
        host = "[%s]" % ip if ":" in ip else ip
        raw = urlsplit(self.path)
        marker = "/pods/%s/proxy" % ref
        rest = raw.path[raw.path.find(marker) + len(marker):]
        url = "%s://%s%s%s%s" % (scheme or "http", host, ":" + port if port else "",
                                 quote(unquote(rest), safe="/:@!$&'()*+,;=-._~") or "/", "?" + raw.query if raw.query else "")
        return self._forward(method, url)

    def _forward(self, method, url, with_body=True):
        """One proxied request: plain HTTP (HTTPS unverified, as the API server's proxy transport), no
        redirect followed, no environment proxy; the backend's status, Content-Type and body come back."""
        raw = self._raw_body()
        data = (raw or None) if with_body else None
        req = urllib.request.Request(url, data=data, method=method)
        for k, v in self.headers.items():
            if k.lower() not in NOT_FORWARDED:
                req.add_header(k, v)
        req.add_header("X-Forwarded-For", self.client_address[0])
        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect(), urllib.request.HTTPSHandler(context=insecure))
        try:
            with opener.open(req, timeout=PROXY_TIMEOUT_S) as answer:
                return self._send(answer.status, answer.read(), answer.headers.get("Content-Type", "text/plain"))
        except urllib.error.HTTPError as exc:
            return self._send(exc.code, exc.read(), exc.headers.get("Content-Type", "text/plain"))
        except OSError as exc:
            where = urlsplit(url).netloc
            why = "connect: connection refused" if isinstance(getattr(exc, "reason", exc), ConnectionRefusedError) else str(exc)
            raise ApiError(503, "ServiceUnavailable", "error trying to reach service: dial tcp %s: %s" % (where, why))

    def _list(self, rt, ns):
        lreq, freq = self._selectors(rt)
        if _truthy(self.q.get("watch")):
            return self._watch(rt, ns, lreq, freq)
        with self.api.store.lock:
            items = self.api.store.list(rt, ns, lreq, freq)
            rv = str(self.api.store.rv)
        if rt.crd_schema is None:
            for o in items:
                o.pop("apiVersion", None)
                o.pop("kind", None)
        self._send(200, {"kind": rt.kind + "List", "apiVersion": rt.api_version, "metadata": {"resourceVersion": rv}, "items": items})

    def _watch(self, rt, ns, lreq, freq):
        store = self.api.store
        timeout = min(int(self.q.get("timeoutSeconds") or 1800), 3600)
        deadline = time.monotonic() + timeout
        rv_param = self.q.get("resourceVersion")
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        self.close_connection = True

        def chunk(ev):
            data = (json.dumps(ev) + "\n").encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

        def matches(o):
            return (not rt.namespaced or not ns or o["metadata"].get("namespace") == ns) and \
                label_reqs_match(lreq, o["metadata"].get("labels")) and field_reqs_match(freq, o)

        try:
            with store.lock:
                if not rv_param or rv_param == "0":
                    last = store.rv
                    initial = list(store.list(rt, ns, lreq, freq))
                else:
                    last = int(rv_param)
                    initial = []
                    if last < store.oldest_event_rv() - 1 and len(store.events) == store.events.maxlen:
                        initial = None
            if initial is None:
                chunk({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                                   "message": "too old resource version: %s (%d)" % (rv_param, store.oldest_event_rv()),
                                                   "reason": "Expired", "code": 410}})
                initial = []
            else:
                for o in initial:
                    chunk({"type": "ADDED", "object": self._out(rt, o)})
            while time.monotonic() < deadline:
                with store.lock:
                    evs = store.events_since(last, rt.group, rt.plural)
                    if not evs:
                        store.changed.wait(timeout=min(1.0, max(0.0, deadline - time.monotonic())))
                        evs = store.events_since(last, rt.group, rt.plural)
                for rv, etype, _g, _p, obj in evs:
                    last = max(last, rv)
                    if matches(obj):
                        chunk({"type": etype, "object": self._out(rt, obj)})
                if self.server.stopping:
                    break
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
            pass

    def _delete_collection(self, rt, ns, dry):
        lreq, freq = self._selectors(rt)
        items = self.api.store.list(rt, ns, lreq, freq)
        out = []
        for o in items:
            try:
                out.append(self.api.store.delete(rt, o["metadata"].get("namespace", ""), o["metadata"]["name"], dry_run=dry))
            except ApiError:
                pass
        self._send(200, {"kind": rt.kind + "List", "apiVersion": rt.api_version, "metadata": {"resourceVersion": str(self.api.store.rv)},
                         "items": out})

    # ---------------------------------------------------------------- patch / apply

    def _patched(self, ctype, base, body, rt):
        if ctype == "application/merge-patch+json":
            if not isinstance(body, dict):
                raise ApiError(400, "BadRequest", "a merge patch must be a JSON object")
            return merge.json_merge_patch(base, body)
        if ctype == "application/strategic-merge-patch+json":
            if rt.crd_schema is not None:
                raise ApiError(415, "UnsupportedMediaType", "the body of the request was in an unknown format - accepted media types "
                               "include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml")
            if not isinstance(body, dict):
                raise ApiError(400, "BadRequest", "a strategic merge patch must be a JSON object")
            return merge.strategic_merge_patch(base, body)
        try:
            return merge.json_patch(base, body)
        except merge.PatchError as e:
            raise ApiError(422, "Invalid", str(e))

    def _patch(self, rt, ns, name, sub, manager, dry):
        store = self.api.store
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        if ctype not in PATCH_TYPES:
            raise ApiError(415, "UnsupportedMediaType", "the body of the request was in an unknown format - accepted media types include: "
                           + ", ".join(sorted(PATCH_TYPES)))
        body = self._body()
        if ctype == "application/apply-patch+yaml":
            return self._apply(rt, ns, name, sub, body, dry)
        with store.lock:
            old = store.get(rt, ns, name)
            cand = self._patched(ctype, self._out(rt, copy.deepcopy(old)), body, rt)
            if not isinstance(cand, dict):
                raise ApiError(422, "Invalid", "patch result is not an object")
            if sub == "status":
                new = copy.deepcopy(old)
                if "status" in cand:
                    new["status"] = cand["status"]
                else:
                    new.pop("status", None)
                new["metadata"]["resourceVersion"] = (cand.get("metadata") or {}).get("resourceVersion")
                out = store.write(rt, ns, name, old, new, manager, subresource="status", dry_run=dry)
            else:
                out = store.write(rt, ns, name, old, cand, manager, dry_run=dry)
        self._send(200, self._out(rt, out))

    def _apply(self, rt, ns, name, sub, body, dry):
        store = self.api.store
        manager = self.q.get("fieldManager")
        if not manager:
            raise ApiError(400, "BadRequest", 'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch')
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "the body of the request was in an unknown format")
        if not body.get("apiVersion") or not body.get("kind"):
            raise ApiError(400, "BadRequest", "invalid object type: /, Kind=" if not body.get("kind") else
                           "apiVersion must be set in the applied configuration")
        self._check_kind(rt, body)
        bmd = body.get("metadata") or {}
        if bmd.get("name") and bmd["name"] != name:
            raise ApiError(400, "BadRequest", "the name of the object (%s) does not match the name on the URL (%s)" % (bmd["name"], name))
        force = _truthy(self.q.get("force"))
        if rt.kind == "Secret" and body.get("stringData"):
            body = copy.deepcopy(body)
            for k, v in body.pop("stringData").items():
                body.setdefault("data", {})[k] = base64.b64encode(str(v).encode()).decode()
        with store.lock:
            old = store.get_obj(rt, ns, name)
            if old is None and sub:
                raise not_found(rt, name)
            if old is None:
                store._ns_check(rt, ns, creating=True)
                live = {"apiVersion": rt.api_version, "kind": rt.kind, "metadata": {"name": name}}
            else:
                live = self._out(rt, copy.deepcopy(old))
            applied = copy.deepcopy(body)
            applied.setdefault("metadata", {})["name"] = name
            if rt.namespaced:
                applied["metadata"]["namespace"] = ns
            if sub == "status":
                applied = {"apiVersion": body["apiVersion"], "kind": body["kind"], "metadata": {"name": name},
                           "status": body.get("status") or {}}
            try:
                new, managers = merge.server_side_apply(live, applied, manager, managers_of(old) if old else {}, force,
                                                        rt.api_version, skip_status=rt.has_status and sub == "")
            except merge.ApplyConflict as e:
                raise ApiError(409, "Conflict", e.message, {"causes": [
                    {"reason": "FieldManagerConflict", "message": 'conflict with "%s" using %s' % (m, rt.api_version), "field": p}
                    for m, p in e.conflicts]})
            if sub == "status":
                full = copy.deepcopy(old)
                full["status"] = new.get("status")
                new = full
            if old is None:
                if rt.kind == "Pod":
                    store._admit_pod(new)
                out = store.write(rt, ns, name, None, new, manager, "Apply", dry_run=dry, managers=managers)
            else:
                new["metadata"]["resourceVersion"] = bmd.get("resourceVersion") or old["metadata"]["resourceVersion"]
                out = store.write(rt, ns, name, old, new, manager, "Apply", subresource=sub, dry_run=dry, managers=managers)
        self._send(201 if old is None and not dry else 200, self._out(rt, out))

    # ---------------------------------------------------------------- scale

    def _scale(self, method, rt, ns, name, manager, dry):
        store = self.api.store
        with store.lock:
            old = store.get(rt, ns, name)
            scale = controllers.scale_of(rt, old)
            if method == "GET":
                return self._send(200, scale)
            if method == "PUT":
                body = self._body() or {}
                replicas = (body.get("spec") or {}).get("replicas")
            elif method == "PATCH":
                ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
                body = self._body()
                if ctype == "application/apply-patch+yaml":
                    replicas = ((body or {}).get("spec") or {}).get("replicas")
                else:
                    replicas = (self._patched(ctype, scale, body, rt).get("spec") or {}).get("replicas")
            else:
                raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
            if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
                raise invalid(Invalid("Scale", "autoscaling", name, [("spec.replicas", "Invalid value: %s: must be greater than or equal to 0"
                                                                     % json.dumps(replicas))]))
            new = copy.deepcopy(old)
            new["spec"]["replicas"] = replicas
            out = store.write(rt, ns, name, old, new, manager, subresource="scale", dry_run=dry)
        self._send(200, controllers.scale_of(rt, out))


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    stopping = False
    verbose = False


def make_server(host, port, api, certs):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(certs["server.crt"], certs["server.key"])
    ctx.load_verify_locations(certs["ca.crt"])
    # Client certs are checked when offered; Basic/Bearer auth covers the rest, as in kube-apiserver.
    ctx.verify_mode = ssl.CERT_OPTIONAL
    handler = type("BoundHandler", (Handler,), {"api": api})
    srv = Server((host, port), handler)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True, do_handshake_on_connect=False)
    return srv
