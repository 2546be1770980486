"""The bits of kube-controller-manager and kube-scheduler the collection
relies on, run as one reconcile loop in the server process, plus the
eviction subresource and the double-only node registration."""

import base64
import copy
import datetime
import hashlib
import json
import math
import secrets
import threading
import time
import traceback

# The kubelet's Ready rule is kept by the kubelet double (node_agent_double),
# which sits beside this package wherever it runs (the same PYTHONPATH).
from node_agent_double.podspec import readiness_gate_messages

from .schema import parse_quantity, quantities
from .selectors import label_selector_matches
from .store import ApiError, now, rand_suffix

MANAGER = "kube-controller-manager"
UNREACHABLE = "node.kubernetes.io/unreachable"
NOT_READY = "node.kubernetes.io/not-ready"


def _parse_ts(s):
    return datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc).timestamp()


def cond(obj, ctype):
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == ctype:
            return c
    return None


def pod_ready(p):
    c = cond(p, "Ready")
    return bool(c and c.get("status") == "True")


# The pod conditions a kubelet writes (kubetypes.PodConditionByKubelet); any other type (a readiness
# gate's) belongs to whoever sets it through pods/status, and a kubelet never writes it.
KUBELET_CONDITIONS = ("PodScheduled", "PodReadyToStartContainers", "Initialized", "ContainersReady", "Ready")


def terminating(o):
    return bool(o["metadata"].get("deletionTimestamp"))


def controller_of(o):
    for r in o["metadata"].get("ownerReferences") or []:
        if r.get("controller"):
            return r
    return None


def set_condition(status, ctype, value, reason, message, keep_update_time=False):
    """Set a condition; the transition time moves only when the status does,
    so an unchanged world writes nothing."""
    conds = status.setdefault("conditions", [])
    c = next((c for c in conds if c["type"] == ctype), None)
    t = now()
    if c is None:
        c = {"type": ctype}
        conds.append(c)
        c["lastTransitionTime"] = t
    elif c.get("status") != value:
        c["lastTransitionTime"] = t
    if not keep_update_time and (c.get("status") != value or c.get("reason") != reason or c.get("message") != message):
        if "lastUpdateTime" in c or ctype in ("Available", "Progressing"):
            c["lastUpdateTime"] = t
    c["status"], c["reason"], c["message"] = value, reason, message
    return c


def scaled(v, total, round_up):
    if isinstance(v, str) and v.endswith("%"):
        x = int(v[:-1]) * total / 100.0
        return int(math.ceil(x)) if round_up else int(math.floor(x))
    return int(v)


def template_hash(template):
    h = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).digest()
    alphabet = "bcdfghjklmnpqrstvwxz2456789"
    n = int.from_bytes(h[:8], "big")
    out = ""
    for _i in range(10):
        n, r = divmod(n, len(alphabet))
        out += alphabet[r]
    return out


def selector_string(sel):
    parts = ["%s=%s" % (k, v) for k, v in sorted((sel.get("matchLabels") or {}).items())]
    for e in sel.get("matchExpressions") or []:
        op = e["operator"]
        if op in ("In", "NotIn"):
            parts.append("%s %s (%s)" % (e["key"], op.lower(), ",".join(e.get("values") or [])))
        elif op == "Exists":
            parts.append(e["key"])
        else:
            parts.append("!" + e["key"])
    return ",".join(parts)


def scale_of(rt, obj):
    md = obj["metadata"]
    return {"kind": "Scale", "apiVersion": "autoscaling/v1",
            "metadata": {k: md[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp") if k in md},
            "spec": {"replicas": (obj.get("spec") or {}).get("replicas", 0)},
            "status": {"replicas": (obj.get("status") or {}).get("replicas", 0),
                       "selector": selector_string((obj.get("spec") or {}).get("selector") or {})}}


def pod_requests(spec):
    total = {}
    for c in spec.get("containers") or []:
        res = c.get("resources") or {}
        req = dict(res.get("limits") or {})
        req.update(res.get("requests") or {})
        for k, v in req.items():
            total[k] = total.get(k, 0) + (parse_quantity(v) or 0)
    for c in spec.get("initContainers") or []:
        res = c.get("resources") or {}
        req = dict(res.get("limits") or {})
        req.update(res.get("requests") or {})
        for k, v in req.items():
            total[k] = max(total.get(k, 0), parse_quantity(v) or 0)
    for k, v in (spec.get("overhead") or {}).items():
        total[k] = total.get(k, 0) + (parse_quantity(v) or 0)
    return total


def tolerates(tols, taint):
    for t in tols or []:
        if t.get("effect") and t["effect"] != taint.get("effect"):
            continue
        if t.get("operator") == "Exists":
            if not t.get("key") or t["key"] == taint.get("key"):
                return True
        elif t.get("key") == taint.get("key") and (t.get("value") or "") == (taint.get("value") or ""):
            return True
    return False


def node_affinity_ok(spec, labels):
    for k, v in (spec.get("nodeSelector") or {}).items():
        if labels.get(k) != v:
            return False
    req = (((spec.get("affinity") or {}).get("nodeAffinity") or {})
           .get("requiredDuringSchedulingIgnoredDuringExecution") or {}).get("nodeSelectorTerms")
    if not req:
        return True
    for term in req:
        ok = True
        for e in term.get("matchExpressions") or []:
            op, key, vals = e.get("operator"), e.get("key"), e.get("values") or []
            have = labels.get(key)
            if (op == "In" and have not in vals) or (op == "NotIn" and have in vals) or \
                    (op == "Exists" and key not in labels) or (op == "DoesNotExist" and key in labels) or \
                    (op in ("Gt", "Lt") and not (have is not None and have.isdigit() and
                                                 (int(have) > int(vals[0]) if op == "Gt" else int(have) < int(vals[0])))):
                ok = False
        if ok and (term.get("matchExpressions") or term.get("matchFields")):
            return True
    return False


class Controllers:
    def __init__(self, store, node_grace_s=40, fake_kubelet=False, interval=0.2, shared_pod_network=False, resync_s=1.0):
        self.store = store
        self.grace = node_grace_s
        self.fake_kubelet = fake_kubelet
        self.shared_pod_network = shared_pod_network
        self.interval = interval
        self.resync_s = resync_s
        self.stop = threading.Event()
        self.rt = {k: store.rtype_by_kind(*k) for k in [
            ("Pod", ""), ("Node", ""), ("Namespace", ""), ("Service", ""), ("Endpoints", ""), ("Secret", ""),
            ("ServiceAccount", ""), ("Deployment", "apps"), ("ReplicaSet", "apps"), ("PodDisruptionBudget", "policy")]}
        self.rt = {k[0]: v for k, v in self.rt.items()}
        self.ip_seq = 0

    def run(self):
        # A pass when the store changed (as kube-controller-manager's informers wake it), at most one per
        # interval, and every resync_s for what time alone changes (a node's heartbeat grace,
        # minReadySeconds, a Deployment's progress deadline). Passing every interval regardless kept a
        # core ~30% busy copying an idle cluster's objects, time every other process on the host lost.
        seen, resync_at = None, 0.0
        while not self.stop.wait(self.interval):
            with self.store.lock:
                while self.store.rv == seen and time.monotonic() < resync_at and not self.stop.is_set():
                    self.store.changed.wait(min(resync_at - time.monotonic(), 0.5))
                seen = self.store.rv
            resync_at = time.monotonic() + self.resync_s
            for step in (self.node_lifecycle, self.garbage_collect, self.namespaces, self.deployments, self.replicasets,
                         self.schedule, self.kubelet, self.disruption_budgets, self.endpoints, self.tokens):
                try:
                    step()
                except ApiError as e:
                    if e.code not in (404, 409):
                        print("kube-api-double: %s: %s" % (step.__name__, e.message), flush=True)
                except Exception:
                    traceback.print_exc()

    def _all(self, kind, ns=None, where=None):
        rt = self.rt[kind]
        return self.store.all(rt.group, rt.plural, ns, where)

    # ------------------------------------------------------------------ nodes

    def register_node(self, name, info):
        """Double-only: what a k3s agent's kubelet does at start and on every heartbeat."""
        rt = self.rt["Node"]
        store = self.store
        with store.lock:
            node = store.get_obj(rt, "", name)
            if node is None:
                labels = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
                          "beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": "amd64"}
                labels.update(info.get("labels") or {})
                body = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels,
                                                                         "annotations": {"k3s.io/hostname": name}},
                        "spec": {"podCIDR": "10.42.%d.0/24" % (len(self._all("Node")) % 250),
                                 "podCIDRs": ["10.42.%d.0/24" % (len(self._all("Node")) % 250)],
                                 "providerID": "k3s://" + name}}
                if info.get("taints"):
                    body["spec"]["taints"] = info["taints"]
                node = store.create(rt, "", body, "k3s")
            t = now()
            status = copy.deepcopy(node.get("status") or {})
            status["capacity"] = quantities(info.get("capacity") or status.get("capacity") or {})
            status["allocatable"] = quantities(info.get("allocatable") or status.get("allocatable") or status["capacity"])
            status["addresses"] = info.get("addresses") or status.get("addresses") or []
            status["daemonEndpoints"] = {"kubeletEndpoint": {"Port": 10250}}
            status["nodeInfo"] = {"architecture": "amd64", "bootID": "", "containerRuntimeVersion": info.get("containerRuntimeVersion", ""),
                                  "kernelVersion": info.get("kernelVersion", ""), "kubeProxyVersion": info.get("kubeletVersion", ""),
                                  "kubeletVersion": info.get("kubeletVersion", ""), "machineID": "", "operatingSystem": "linux",
                                  "osImage": info.get("osImage", "Debian GNU/Linux 12 (bookworm)"), "systemUUID": ""}
            for ctype, reason, msg in (("MemoryPressure", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                                       ("DiskPressure", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                                       ("PIDPressure", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                                       ("Ready", "KubeletReady", "kubelet is posting ready status")):
                c = set_condition(status, ctype, "False" if ctype != "Ready" else "True", reason, msg, keep_update_time=True)
                c["lastHeartbeatTime"] = t
            new = copy.deepcopy(node)
            new["status"] = status
            return store.system_update(rt, new)

    def node_lifecycle(self):
        rt = self.rt["Node"]
        for node in self._all("Node"):
            new = copy.deepcopy(node)
            ready = cond(node, "Ready")
            status = new.setdefault("status", {})
            age = time.time() - _parse_ts(node["metadata"]["creationTimestamp"])
            if ready is None and age > self.grace:
                set_condition(status, "Ready", "Unknown", "NodeStatusNeverUpdated", "Kubelet never posted node status.")
            elif ready is not None and ready.get("status") != "Unknown" and \
                    time.time() - _parse_ts(ready.get("lastHeartbeatTime") or ready["lastTransitionTime"]) > self.grace:
                for c in status.get("conditions") or []:
                    if c["type"] in ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure") and c["status"] != "Unknown":
                        c["status"], c["reason"], c["message"] = "Unknown", "NodeStatusUnknown", "Kubelet stopped posting node status."
                        c["lastTransitionTime"] = now()
            ready = cond(new, "Ready")
            want = []
            if ready is None or ready["status"] == "False":
                want = [NOT_READY]
            elif ready["status"] == "Unknown":
                want = [UNREACHABLE]
            taints = [t for t in (new.get("spec") or {}).get("taints") or [] if t.get("key") not in (UNREACHABLE, NOT_READY)]
            for key in want:
                for eff in ("NoSchedule", "NoExecute"):
                    old_t = next((t for t in (node.get("spec") or {}).get("taints") or [] if t.get("key") == key and t.get("effect") == eff), None)
                    taints.append(old_t or ({"key": key, "effect": eff, "timeAdded": now()} if eff == "NoExecute" else {"key": key, "effect": eff}))
            if taints:
                new.setdefault("spec", {})["taints"] = taints
            else:
                new.get("spec", {}).pop("taints", None)
            self.store.system_update(rt, new)

    # ------------------------------------------------------------------ GC and namespaces

    def garbage_collect(self):
        store = self.store
        with store.lock:
            uids = {o["metadata"]["uid"] for o in store.objects.values()}
            doomed = [(k, o) for k, o in store.objects.items()
                      if o["metadata"].get("ownerReferences") and not any(r.get("uid") in uids for r in o["metadata"]["ownerReferences"])]
        for (g, p, ns, name), o in doomed:
            rt = store.rtype_any(g, p)
            if rt and not terminating(o):
                store.delete(rt, ns, name)

    def namespaces(self):
        store = self.store
        for ns in self._all("Namespace"):
            if not terminating(ns):
                continue
            name = ns["metadata"]["name"]
            with store.lock:
                left = [(k, o) for k, o in store.objects.items() if k[2] == name and k[1] != "namespaces"]
            for (g, p, n, oname), o in left:
                rt = store.rtype_any(g, p)
                if rt is not None and rt.namespaced and not terminating(o):
                    store.delete(rt, n, oname)
            if not left:
                store.system_remove(self.rt["Namespace"], ns)

    # ------------------------------------------------------------------ deployments

    def deployments(self):
        store, rs_rt, d_rt = self.store, self.rt["ReplicaSet"], self.rt["Deployment"]
        for d in self._all("Deployment"):
            if terminating(d):
                continue
            ns, spec = d["metadata"]["namespace"], d["spec"]
            owned = self._all("ReplicaSet", ns, lambda rs, uid=d["metadata"]["uid"]: (controller_of(rs) or {}).get("uid") == uid)
            tpl = copy.deepcopy(spec["template"])
            h = template_hash(tpl)
            new_rs = next((rs for rs in owned if rs["metadata"].get("labels", {}).get("pod-template-hash") == h), None)
            old = [rs for rs in owned if rs is not new_rs]
            desired = spec.get("replicas", 1)
            strategy = spec.get("strategy") or {}
            revs = [int(rs["metadata"].get("annotations", {}).get("deployment.kubernetes.io/revision", "0")) for rs in owned]
            created = False
            if new_rs is None:
                rev = max(revs + [0]) + 1
                labels = dict(tpl.get("metadata", {}).get("labels") or {}, **{"pod-template-hash": h})
                tpl.setdefault("metadata", {})["labels"] = labels
                sel = copy.deepcopy(spec["selector"])
                sel.setdefault("matchLabels", {})["pod-template-hash"] = h
                first = 0 if (strategy.get("type") == "Recreate" and any(self._pods_of(rs) for rs in old)) else \
                    (desired if not old else 0)
                body = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
                        "metadata": {"name": "%s-%s" % (d["metadata"]["name"], h), "namespace": ns, "labels": labels,
                                     "annotations": {"deployment.kubernetes.io/desired-replicas": str(desired),
                                                     "deployment.kubernetes.io/max-replicas": str(desired),
                                                     "deployment.kubernetes.io/revision": str(rev)},
                                     "ownerReferences": [self._owner_ref(d, "apps/v1", "Deployment")]},
                        "spec": {"replicas": first, "minReadySeconds": spec.get("minReadySeconds", 0), "selector": sel, "template": tpl}}
                new_rs = store.create(rs_rt, ns, body, MANAGER)
                created = True
            if strategy.get("type") == "Recreate":
                for rs in old:
                    self._set_rs_replicas(rs, 0)
                if not any(self._pods_of(rs, include_terminating=True) for rs in old):
                    self._set_rs_replicas(new_rs, desired)
            else:
                ru = strategy.get("rollingUpdate") or {}
                surge = scaled(ru.get("maxSurge", "25%"), desired, True)
                unavail = scaled(ru.get("maxUnavailable", "25%"), desired, False)
                if surge == 0 and unavail == 0:
                    unavail = 1
                total = sum(rs["spec"].get("replicas", 0) for rs in old) + new_rs["spec"].get("replicas", 0)
                cur = new_rs["spec"].get("replicas", 0)
                if cur > desired:
                    self._set_rs_replicas(new_rs, desired)
                elif cur < desired:
                    room = desired + surge - total
                    if room > 0:
                        self._set_rs_replicas(new_rs, min(desired, cur + room))
                new_rs = store.get_obj(rs_rt, ns, new_rs["metadata"]["name"]) or new_rs
                available = sum(self._available(rs) for rs in old) + self._available(new_rs)
                budget = available - (desired - unavail)
                for rs in sorted(old, key=lambda r: r["metadata"]["creationTimestamp"]):
                    r = rs["spec"].get("replicas", 0)
                    if r == 0:
                        continue
                    unhealthy = max(0, r - self._available(rs))
                    cut = min(r, unhealthy + max(0, budget))
                    budget -= max(0, cut - unhealthy)
                    if cut:
                        self._set_rs_replicas(rs, r - cut)
            self._deployment_status(d, store.get_obj(rs_rt, ns, new_rs["metadata"]["name"]) or new_rs,
                                    [store.get_obj(rs_rt, ns, rs["metadata"]["name"]) or rs for rs in old], created, d_rt)

    def _owner_ref(self, o, api_version, kind):
        return {"apiVersion": api_version, "kind": kind, "name": o["metadata"]["name"], "uid": o["metadata"]["uid"],
                "controller": True, "blockOwnerDeletion": True}

    def _set_rs_replicas(self, rs, n):
        if rs["spec"].get("replicas", 0) == n:
            return
        new = copy.deepcopy(rs)
        new["spec"]["replicas"] = n
        new["metadata"]["generation"] = rs["metadata"].get("generation", 1) + 1
        new["metadata"].setdefault("annotations", {})["deployment.kubernetes.io/desired-replicas"] = \
            rs["metadata"].get("annotations", {}).get("deployment.kubernetes.io/desired-replicas", str(n))
        self.store.system_update(self.rt["ReplicaSet"], new)
        rs["spec"]["replicas"] = n

    def _pods_of(self, rs, include_terminating=False):
        # Like the real controller's FilterActivePods: a Succeeded or Failed pod
        # (say refused by its kubelet's admission) no longer counts, so it is replaced.
        uid = rs["metadata"]["uid"]
        return self._all("Pod", rs["metadata"]["namespace"], lambda p: (controller_of(p) or {}).get("uid") == uid
                         and (include_terminating or not terminating(p))
                         and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed"))

    def _available(self, rs):
        mrs = (rs.get("spec") or {}).get("minReadySeconds", 0)
        n = 0
        for p in self._pods_of(rs):
            c = cond(p, "Ready")
            if c and c.get("status") == "True" and (mrs == 0 or time.time() - _parse_ts(c["lastTransitionTime"]) >= mrs):
                n += 1
        return n

    def _deployment_status(self, d, new_rs, old, created, d_rt):
        spec = d["spec"]
        desired = spec.get("replicas", 1)
        all_rs = [new_rs] + old
        pods = [p for rs in all_rs for p in self._pods_of(rs)]
        replicas = len(pods)
        updated = len(self._pods_of(new_rs))
        ready = sum(1 for p in pods if pod_ready(p))
        available = sum(self._available(rs) for rs in all_rs)
        total_spec = sum(rs["spec"].get("replicas", 0) for rs in all_rs)
        ru = (spec.get("strategy") or {}).get("rollingUpdate") or {}
        max_unavail = scaled(ru.get("maxUnavailable", "25%"), desired, False) if (spec.get("strategy") or {}).get("type") != "Recreate" else 0
        status = copy.deepcopy(d.get("status") or {})
        status["observedGeneration"] = d["metadata"].get("generation", 1)
        for k, v in (("replicas", replicas), ("updatedReplicas", updated), ("readyReplicas", ready), ("availableReplicas", available),
                     ("unavailableReplicas", max(0, total_spec - available))):
            if v:
                status[k] = v
            else:
                status.pop(k, None)
        status.pop("terminatingReplicas", None)
        if available >= desired - max_unavail:
            set_condition(status, "Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
        else:
            set_condition(status, "Available", "False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability.")
        rs_name = new_rs["metadata"]["name"]
        complete = updated == desired and replicas == desired and available >= desired and not any(self._pods_of(rs) for rs in old)
        prog = cond(d, "Progressing")
        if complete:
            set_condition(status, "Progressing", "True", "NewReplicaSetAvailable", 'ReplicaSet "%s" has successfully progressed.' % rs_name)
        elif created:
            set_condition(status, "Progressing", "True", "NewReplicaSetCreated", 'Created new replica set "%s"' % rs_name)
        else:
            deadline = spec.get("progressDeadlineSeconds", 600)
            last = _parse_ts(prog["lastUpdateTime"]) if prog and prog.get("lastUpdateTime") else time.time()
            moved = d.get("status", {}) and (d["status"].get("updatedReplicas", 0), d["status"].get("availableReplicas", 0)) != \
                (status.get("updatedReplicas", 0), status.get("availableReplicas", 0))
            if moved or prog is None or prog.get("reason") in ("NewReplicaSetAvailable", "NewReplicaSetCreated") and \
                    prog.get("message", "").find(rs_name) < 0:
                set_condition(status, "Progressing", "True", "ReplicaSetUpdated", 'ReplicaSet "%s" is progressing.' % rs_name)
                for c in status["conditions"]:
                    if c["type"] == "Progressing":
                        c["lastUpdateTime"] = now()
            elif time.time() - last > deadline:
                set_condition(status, "Progressing", "False", "ProgressDeadlineExceeded", 'ReplicaSet "%s" has timed out progressing.' % rs_name)
        status["conditions"].sort(key=lambda c: {"Available": 0, "Progressing": 1}.get(c["type"], 2))
        new = copy.deepcopy(d)
        new["status"] = status
        rev = new_rs["metadata"].get("annotations", {}).get("deployment.kubernetes.io/revision")
        if rev:
            new["metadata"].setdefault("annotations", {})["deployment.kubernetes.io/revision"] = rev
        self.store.system_update(d_rt, new)

    # ------------------------------------------------------------------ replicasets

    def replicasets(self):
        store, pod_rt, rs_rt = self.store, self.rt["Pod"], self.rt["ReplicaSet"]
        for rs in self._all("ReplicaSet"):
            if terminating(rs):
                continue
            ns = rs["metadata"]["namespace"]
            pods = self._pods_of(rs)
            want = rs["spec"].get("replicas", 1)
            if len(pods) < want:
                tpl = copy.deepcopy(rs["spec"]["template"])
                for _i in range(want - len(pods)):
                    md = copy.deepcopy(tpl.get("metadata") or {})
                    md.pop("creationTimestamp", None)
                    md["generateName"] = rs["metadata"]["name"] + "-"
                    md["name"] = md["generateName"] + rand_suffix()
                    md["ownerReferences"] = [self._owner_ref(rs, "apps/v1", "ReplicaSet")]
                    store.create(pod_rt, ns, {"apiVersion": "v1", "kind": "Pod", "metadata": md, "spec": copy.deepcopy(tpl["spec"])}, MANAGER)
            elif len(pods) > want:
                # Unscheduled first, then not ready, then the youngest, as the real controller ranks them.
                ranked = sorted(pods, key=lambda p: (bool(p["spec"].get("nodeName")), pod_ready(p), p["metadata"]["creationTimestamp"]),)
                for p in ranked[:len(pods) - want]:
                    store.delete(pod_rt, ns, p["metadata"]["name"])
            pods = self._pods_of(rs)
            status = {"replicas": len(pods), "observedGeneration": rs["metadata"].get("generation", 1)}
            labeled = sum(1 for p in pods if all(p["metadata"].get("labels", {}).get(k) == v
                                                 for k, v in ((rs["spec"].get("template") or {}).get("metadata") or {}).get("labels", {}).items()))
            for k, v in (("fullyLabeledReplicas", labeled), ("readyReplicas", sum(1 for p in pods if pod_ready(p))),
                         ("availableReplicas", self._available(rs))):
                if v:
                    status[k] = v
            if rs.get("status") != status:
                new = copy.deepcopy(rs)
                new["status"] = status
                store.system_update(rs_rt, new)

    # ------------------------------------------------------------------ scheduler

    def pod_host_ports(self, spec):
        """(port, protocol) a pod takes on its node: hostPorts, and every containerPort where pods share the node's network."""
        out = set()
        for c in spec.get("containers") or []:
            for p in c.get("ports") or []:
                if p.get("hostPort") or self.shared_pod_network:
                    out.add((p.get("hostPort") or p["containerPort"], p.get("protocol", "TCP")))
        return out

    def schedule(self):
        nodes = self._all("Node")
        pods = self._all("Pod")
        pending = [p for p in pods if not p["spec"].get("nodeName") and not terminating(p)
                   and p["spec"].get("schedulerName", "default-scheduler") == "default-scheduler"]
        if not pending:
            return
        used, ports = {}, {}
        for p in pods:
            n = p["spec"].get("nodeName")
            if n and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
                ports.setdefault(n, set()).update(self.pod_host_ports(p["spec"]))
                u = used.setdefault(n, {})
                for k, v in pod_requests(p["spec"]).items():
                    u[k] = u.get(k, 0) + v
                u["pods"] = u.get("pods", 0) + 1
        for p in sorted(pending, key=lambda p: p["metadata"]["creationTimestamp"]):
            reasons = {}
            chosen = None
            req = pod_requests(p["spec"])
            for node in sorted(nodes, key=lambda n: sum(used.get(n["metadata"]["name"], {}).values())):
                why = self._unfit(p, req, node, used.get(node["metadata"]["name"], {}), ports.get(node["metadata"]["name"], set()))
                if why:
                    for w in why:
                        reasons[w] = reasons.get(w, 0) + 1
                elif chosen is None:
                    chosen = node
            if chosen is not None:
                name = chosen["metadata"]["name"]
                ports.setdefault(name, set()).update(self.pod_host_ports(p["spec"]))
                u = used.setdefault(name, {})
                for k, v in req.items():
                    u[k] = u.get(k, 0) + v
                u["pods"] = u.get("pods", 0) + 1
                new = copy.deepcopy(p)
                new["spec"]["nodeName"] = name
                set_condition(new.setdefault("status", {}), "PodScheduled", "True", None, None)
                c = cond(new, "PodScheduled")
                c.pop("reason", None)
                c.pop("message", None)
                c["lastProbeTime"] = None
                self.store.system_update(self.rt["Pod"], new)
            else:
                if nodes:
                    hist = ", ".join(sorted("%d %s" % (n, r) for r, n in reasons.items()))
                    msg = "0/%d nodes are available: %s. preemption: 0/%d nodes are available: %d Preemption is not helpful for scheduling." \
                        % (len(nodes), hist, len(nodes), len(nodes))
                else:
                    msg = "no nodes available to schedule pods"
                new = copy.deepcopy(p)
                status = new.setdefault("status", {})
                status["phase"] = "Pending"
                c = cond(p, "PodScheduled")
                if not (c and c.get("message") == msg):
                    set_condition(status, "PodScheduled", "False", "Unschedulable", msg)
                    cond(new, "PodScheduled")["lastProbeTime"] = None
                    self.store.system_update(self.rt["Pod"], new)

    def _unfit(self, pod, req, node, used, ports=frozenset()):
        spec = pod["spec"]
        out = []
        if (node.get("spec") or {}).get("unschedulable") and not tolerates(spec.get("tolerations"), {"key": "node.kubernetes.io/unschedulable",
                                                                                                     "effect": "NoSchedule"}):
            return ["node(s) were unschedulable"]
        if not node_affinity_ok(spec, node["metadata"].get("labels") or {}):
            return ["node(s) didn't match Pod's node affinity/selector"]
        taints = list((node.get("spec") or {}).get("taints") or [])
        ready = cond(node, "Ready")
        if not (ready and ready.get("status") == "True") and not any(t.get("key") in (NOT_READY, UNREACHABLE) for t in taints):
            taints.append({"key": NOT_READY, "effect": "NoSchedule"})
        for t in taints:
            if t.get("effect") in ("NoSchedule", "NoExecute") and not tolerates(spec.get("tolerations"), t):
                return ["node(s) had untolerated taint {%s: %s}" % (t.get("key"), t.get("value", ""))]
        if self.pod_host_ports(spec) & ports:
            out.append("node(s) didn't have free ports for the requested pod ports")
        alloc = (node.get("status") or {}).get("allocatable") or {}
        for k, v in sorted(req.items()):
            if v <= 0:
                continue
            have = parse_quantity(alloc.get(k, 0)) or 0
            if used.get(k, 0) + v > have:
                out.append("Insufficient %s" % k)
        if used.get("pods", 0) + 1 > (parse_quantity(alloc.get("pods", 110)) or 110):
            out.append("Too many pods")
        return out

    # ------------------------------------------------------------------ fake kubelet (tests of this double only)

    def kubelet(self):
        if not self.fake_kubelet:
            return
        nodes = {n["metadata"]["name"]: n for n in self._all("Node")}
        for p in self._all("Pod"):
            node = nodes.get(p["spec"].get("nodeName") or "")
            if node is None or (cond(node, "Ready") or {}).get("status") != "True":
                continue
            if terminating(p):
                self.store.finalize_pod(p["metadata"]["namespace"], p["metadata"]["name"])
                continue
            phase = (p.get("status") or {}).get("phase")
            if phase == "Running":
                # Readiness gates: Ready follows the gate conditions others set through pods/status.
                new = copy.deepcopy(p)
                self._kubelet_ready(new)
                if new != p:
                    self.store.system_update(self.rt["Pod"], new)
                continue
            if phase != "Pending":
                continue
            new = copy.deepcopy(p)
            st = new["status"]
            t = now()
            self.ip_seq += 1
            st.update({"phase": "Running", "startTime": t, "podIP": "10.42.0.%d" % (self.ip_seq % 250 + 2),
                       "hostIP": next((a["address"] for a in (node["status"].get("addresses") or []) if a["type"] == "InternalIP"), "")})
            st["podIPs"] = [{"ip": st["podIP"]}]
            for ctype in ("PodReadyToStartContainers", "Initialized", "ContainersReady"):
                set_condition(st, ctype, "True", None, None)
            for c in st["conditions"]:
                if c["type"] in KUBELET_CONDITIONS:
                    c.pop("reason", None)
                    c.pop("message", None)
                    c["lastProbeTime"] = None
            st["containerStatuses"] = [{"name": c["name"], "image": c["image"], "imageID": "", "ready": True, "restartCount": 0,
                                        "started": True, "state": {"running": {"startedAt": t}}, "containerID": "containerd://fake"}
                                       for c in p["spec"]["containers"]]
            self._kubelet_ready(new)
            self.store.system_update(self.rt["Pod"], new)

    @staticmethod
    def _kubelet_ready(pod):
        """Ready as the kubelet computes it for a pod whose containers are all ready: True unless a readiness
        gate's condition is missing or not "True". Only the Ready condition is touched, never a gate's."""
        gates = readiness_gate_messages(pod)
        st = pod["status"]
        if gates:
            set_condition(st, "Ready", "False", "ReadinessGatesNotReady", ", ".join(gates))
        else:
            set_condition(st, "Ready", "True", None, None)
        c = cond(pod, "Ready")
        for k in ("reason", "message"):
            if c.get(k) is None:
                c.pop(k, None)
        c["lastProbeTime"] = None

    # ------------------------------------------------------------------ disruption budgets

    def _expected_scale(self, pods):
        seen, total = set(), 0
        for p in pods:
            ref = controller_of(p)
            if not ref or ref["uid"] in seen:
                continue
            seen.add(ref["uid"])
            ns = p["metadata"]["namespace"]
            if ref["kind"] == "ReplicaSet":
                rs = self.store.get_obj(self.rt["ReplicaSet"], ns, ref["name"])
                if rs is None:
                    continue
                dref = controller_of(rs)
                d = self.store.get_obj(self.rt["Deployment"], ns, dref["name"]) if dref and dref["kind"] == "Deployment" else None
                if d is not None:
                    if d["metadata"]["uid"] not in seen:
                        seen.add(d["metadata"]["uid"])
                        total += d["spec"].get("replicas", 1)
                else:
                    total += rs["spec"].get("replicas", 1)
            else:
                rt = self.store.rtype_for(ref["apiVersion"], ref["kind"])
                o = self.store.get_obj(rt, ns, ref["name"])
                if o is not None:
                    total += (o.get("spec") or {}).get("replicas", 1)
        return total

    def pdb_numbers(self, pdb):
        ns = pdb["metadata"]["namespace"]
        sel = pdb["spec"].get("selector")
        pods = self._all("Pod", ns, lambda p: sel is not None and label_selector_matches(sel, p["metadata"].get("labels")))
        healthy = sum(1 for p in pods if pod_ready(p) and not terminating(p))
        spec = pdb["spec"]
        if "maxUnavailable" in spec:
            expected = self._expected_scale(pods)
            desired = max(0, expected - scaled(spec["maxUnavailable"], expected, True))
        elif isinstance(spec.get("minAvailable"), str) and spec["minAvailable"].endswith("%"):
            expected = self._expected_scale(pods)
            desired = scaled(spec["minAvailable"], expected, True)
        else:
            expected = len(pods)
            desired = int(spec.get("minAvailable", 1))
        return pods, healthy, desired, expected

    def disruption_budgets(self):
        for pdb in self._all("PodDisruptionBudget"):
            self._pdb_status(pdb)

    def _pdb_status(self, pdb, consumed=0):
        _pods, healthy, desired, expected = self.pdb_numbers(pdb)
        allowed = max(0, healthy - desired - consumed)
        status = copy.deepcopy(pdb.get("status") or {})
        status.update({"currentHealthy": healthy, "desiredHealthy": desired, "expectedPods": expected,
                       "disruptionsAllowed": allowed, "observedGeneration": pdb["metadata"].get("generation", 1)})
        if allowed > 0:
            set_condition(status, "DisruptionAllowed", "True", "SufficientPods", "")
        else:
            set_condition(status, "DisruptionAllowed", "False", "InsufficientPods", "")
        for c in status["conditions"]:
            c["observedGeneration"] = status["observedGeneration"]
        new = copy.deepcopy(pdb)
        new["status"] = status
        return self.store.system_update(self.rt["PodDisruptionBudget"], new)

    def evict(self, ns, name, body, dry_run=False):
        store, pod_rt = self.store, self.rt["Pod"]
        ok = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}
        with store.lock:
            pod = store.get(pod_rt, ns, name)
            opts = body.get("deleteOptions") or {}
            grace = opts.get("gracePeriodSeconds")
            if terminating(pod):
                return ok
            phase = (pod.get("status") or {}).get("phase")
            pdbs = [b for b in self._all("PodDisruptionBudget", ns)
                    if b["spec"].get("selector") is not None and label_selector_matches(b["spec"]["selector"], pod["metadata"].get("labels"))]
            if phase not in ("Pending", "Succeeded", "Failed") and pdbs:
                if len(pdbs) > 1:
                    raise ApiError(500, "InternalError", "This pod has more than one PodDisruptionBudget, which the eviction subresource "
                                   "does not support.")
                pdb = pdbs[0]
                _pods, healthy, desired, _expected = self.pdb_numbers(pdb)
                policy = pdb["spec"].get("unhealthyPodEvictionPolicy", "IfHealthyBudget")
                unhealthy_ok = not pod_ready(pod) and (policy == "AlwaysAllow" or healthy >= desired)
                if not unhealthy_ok and healthy - desired <= 0:
                    self._pdb_status(pdb)
                    raise ApiError(429, "TooManyRequests", "Cannot evict pod as it would violate the pod's disruption budget.",
                                   {"causes": [{"reason": "DisruptionBudget", "message": "The disruption budget %s needs %d healthy pods and "
                                                "has %d currently" % (pdb["metadata"]["name"], desired, healthy)}]})
            if dry_run:
                return ok
            store.delete(pod_rt, ns, name, grace=grace)
            for pdb in pdbs:
                self._pdb_status(store.get_obj(self.rt["PodDisruptionBudget"], ns, pdb["metadata"]["name"]))
            return ok

    # ------------------------------------------------------------------ endpoints and tokens

    def endpoints(self):
        store, ep_rt = self.store, self.rt["Endpoints"]
        for svc in self._all("Service"):
            sel = (svc.get("spec") or {}).get("selector")
            if not sel or terminating(svc):
                continue
            ns, name = svc["metadata"]["namespace"], svc["metadata"]["name"]
            pods = self._all("Pod", ns, lambda p, sel=sel: all((p["metadata"].get("labels") or {}).get(k) == v for k, v in sel.items())
                             and (p.get("status") or {}).get("podIP") and not terminating(p))
            ready, not_ready = [], []
            for p in sorted(pods, key=lambda p: p["status"]["podIP"]):
                a = {"ip": p["status"]["podIP"], "nodeName": p["spec"].get("nodeName"),
                     "targetRef": {"kind": "Pod", "namespace": ns, "name": p["metadata"]["name"], "uid": p["metadata"]["uid"]}}
                (ready if pod_ready(p) else not_ready).append(a)
            ports = []
            for sp in svc["spec"].get("ports") or []:
                tp = sp.get("targetPort", sp["port"])
                if isinstance(tp, str):
                    tp = next((cp["containerPort"] for p in pods for c in p["spec"]["containers"] for cp in c.get("ports") or []
                               if cp.get("name") == tp), None)
                if tp is not None:
                    e = {"port": tp, "protocol": sp.get("protocol", "TCP")}
                    if sp.get("name"):
                        e["name"] = sp["name"]
                    ports.append(e)
            subset = {}
            if ready:
                subset["addresses"] = ready
            if not_ready:
                subset["notReadyAddresses"] = not_ready
            if subset and ports:
                subset["ports"] = ports
            subsets = [subset] if subset else []
            cur = store.get_obj(ep_rt, ns, name)
            if cur is None:
                body = {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": name, "namespace": ns,
                                                                              "labels": dict(svc["metadata"].get("labels") or {})}}
                if subsets:
                    body["subsets"] = subsets
                store.create(ep_rt, ns, body, "endpoint-controller")
            elif cur.get("subsets", []) != subsets:
                new = copy.deepcopy(cur)
                new["subsets"] = subsets
                if not subsets:
                    new.pop("subsets")
                store.system_update(ep_rt, new)

    def tokens(self):
        """The token controller: a kubernetes.io/service-account-token Secret gets a token, the CA and its namespace."""
        for s in self._all("Secret", where=lambda s: s.get("type") == "kubernetes.io/service-account-token"
                           and not (s.get("data") or {}).get("token")):
            sa_name = (s["metadata"].get("annotations") or {}).get("kubernetes.io/service-account.name")
            ns = s["metadata"]["namespace"]
            sa = self.store.get_obj(self.rt["ServiceAccount"], ns, sa_name) if sa_name else None
            if sa is None:
                continue
            new = copy.deepcopy(s)

            def b(v):
                return base64.b64encode(v.encode()).decode()

            new.setdefault("data", {}).update({"token": b(secrets.token_urlsafe(48)), "namespace": b(ns), "ca.crt": b(self.ca_pem)})
            new["metadata"].setdefault("annotations", {})["kubernetes.io/service-account.uid"] = sa["metadata"]["uid"]
            self.store.system_update(self.rt["Secret"], new)

    ca_pem = ""

    def service_account_for_token(self, token):
        for s in self._all("Secret", where=lambda s: s.get("type") == "kubernetes.io/service-account-token"):
            t = (s.get("data") or {}).get("token")
            if t and base64.b64decode(t).decode() == token:
                return "system:serviceaccount:%s:%s" % (s["metadata"]["namespace"],
                                                        (s["metadata"].get("annotations") or {}).get("kubernetes.io/service-account.name"))
        return None
