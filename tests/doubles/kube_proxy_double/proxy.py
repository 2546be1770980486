"""Service names in /etc/hosts and a TCP forwarder per Service port (see __init__.py)."""

import itertools
import socket
import sys
import threading

BEGIN = "# BEGIN kube-proxy-double Services (a test double; rewritten every second)"
END = "# END kube-proxy-double Services"


def log(msg):
    sys.stderr.write("kube-proxy-double: %s\n" % msg)
    sys.stderr.flush()


def service_address(cluster_ip):
    """10.43.B.C -> 127.43.B.C: a loopback address as unique and stable as the clusterIP."""
    octets = cluster_ip.split(".")
    return "127.%s.%s.%s" % tuple(octets[1:])


def names(svc):
    ns, name = svc["metadata"]["namespace"], svc["metadata"]["name"]
    return ["%s.%s.svc" % (name, ns), "%s.%s.svc.cluster.local" % (name, ns)]


def ready_backends(endpoints, port_name):
    """(ip, port) of the ready addresses for the Service port called port_name."""
    out = []
    for subset in (endpoints or {}).get("subsets") or []:
        ports = subset.get("ports") or []
        port = next((p["port"] for p in ports if (p.get("name") or "") == (port_name or "")), None)
        if port is None and len(ports) == 1 and not port_name:
            port = ports[0]["port"]
        if port is None:
            continue
        out += [(a["ip"], port) for a in subset.get("addresses") or []]
    return out


def pump(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s, how in ((dst, socket.SHUT_WR), (src, socket.SHUT_RD)):
            try:
                s.shutdown(how)
            except OSError:
                pass


class Listener(object):
    """One Service port: accepts on (address, port), forwards to the ready backends in turn."""

    def __init__(self, address, port, backends):
        self.backends = list(backends)
        self.turn = itertools.count()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((address, port))
        self.sock.listen(128)
        self.where = "%s:%d" % (address, port)
        threading.Thread(target=self.serve, daemon=True, name="svc-" + self.where).start()

    def serve(self):
        while True:
            try:
                client, _peer = self.sock.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self.forward, args=(client,), daemon=True).start()

    def forward(self, client):
        backends = self.backends
        start = next(self.turn)
        for i in range(len(backends)):
            ip, port = backends[(start + i) % len(backends)]
            try:
                upstream = socket.create_connection((ip, port), timeout=5)
            except OSError:
                continue
            upstream.settimeout(None)
            # kube-proxy forwards in the kernel and adds no delay; a relay that
            # passes a reply on in pieces would wait on the peer's delayed ACK.
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=pump, args=(upstream, client), daemon=True).start()
            pump(client, upstream)
            return
        client.close()  # every endpoint refused: the client sees the connection close

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


def local_pod_ports(pods):
    """TCP ports the pods on this node declare: they bind them on every address of the node."""
    ports = set()
    for pod in pods:
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            continue
        for c in (pod.get("spec") or {}).get("containers") or []:
            for p in c.get("ports") or []:
                if p.get("protocol", "TCP") == "TCP":
                    ports.add(p.get("hostPort") or p["containerPort"])
    return ports


class ServiceProxy(object):
    def __init__(self, client, hosts_path, node=None):
        self.client, self.hosts_path, self.node = client, hosts_path, node
        self.listeners = {}   # (address, port) -> Listener
        self.hosts_block = None
        self.yielded = set()  # Service ports left to a local pod, logged once

    def sync(self):
        # Pods share the node's network here: a Service port a local pod
        # declares is that pod's on every address, so no listener takes it
        # (the pod would fail to bind), and the Service address reaches it.
        local = set()
        if self.node:
            local = local_pod_ports(self.client.get("/api/v1/pods", {"fieldSelector": "spec.nodeName=" + self.node})["items"])
        services = self.client.get("/api/v1/services")["items"]
        endpoints = {(e["metadata"]["namespace"], e["metadata"]["name"]): e
                     for e in self.client.get("/api/v1/endpoints")["items"]}
        wanted, lines = {}, []
        for svc in sorted(services, key=lambda s: (s["metadata"]["namespace"], s["metadata"]["name"])):
            spec = svc.get("spec") or {}
            ip = spec.get("clusterIP")
            if not ip or ip == "None" or spec.get("type") == "ExternalName":
                continue
            address = service_address(ip)
            lines.append("%s %s" % (address, " ".join(names(svc))))
            ep = endpoints.get((svc["metadata"]["namespace"], svc["metadata"]["name"]))
            for sp in spec.get("ports") or []:
                if sp.get("protocol", "TCP") != "TCP":
                    continue
                backends = ready_backends(ep, sp.get("name"))
                key = (address, sp["port"])
                if sp["port"] in local:
                    if key not in self.yielded:
                        log("%s:%d (%s) is left to the pod on this node that declares port %d"
                            % (address, sp["port"], names(svc)[0], sp["port"]))
                        self.yielded.add(key)
                elif backends:
                    wanted[key] = backends
        for key in [k for k in self.listeners if k not in wanted]:
            self.listeners.pop(key).close()
        for key, backends in wanted.items():
            if key in self.listeners:
                self.listeners[key].backends = backends
                continue
            try:
                self.listeners[key] = Listener(key[0], key[1], backends)
            except OSError as exc:
                log("cannot listen on %s:%d: %s" % (key[0], key[1], exc))
        self.write_hosts(lines)

    def write_hosts(self, lines):
        block = "\n".join([BEGIN] + lines + [END]) + "\n"
        if block == self.hosts_block:
            return
        with open(self.hosts_path) as f:
            text = f.read()
        head, sep, rest = text.partition(BEGIN)
        tail = rest.partition(END + "\n")[2] if sep else ""
        if head and not head.endswith("\n"):
            head += "\n"
        # In place, not by rename: Podman bind-mounts /etc/hosts into the node.
        with open(self.hosts_path, "r+") as f:
            f.seek(0)
            f.write(head + block + tail)
            f.truncate()
        self.hosts_block = block

    def close(self):
        for listener in self.listeners.values():
            listener.close()
        self.listeners = {}
        if self.hosts_block is not None:
            self.write_hosts([])
