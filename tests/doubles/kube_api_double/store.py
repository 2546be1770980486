"""Objects, resourceVersions, watch events and persistence, plus the write
path every API request and controller goes through (defaulting, validation,
generation, managedFields)."""

import base64
import collections
import copy
import datetime
import ipaddress
import json
import os
import random
import threading
import time
import uuid

from . import merge
from .schema import BUILTIN, Invalid, Validator, apply_defaults, crd_to_rtypes, name_errors, semantic_errors
from .selectors import field_reqs_match, label_reqs_match

SERVICE_CIDR = ipaddress.ip_network("10.43.0.0/16")   # k3s's default --service-cidr
# Kinds whose real objects carry no metadata.generation.
NO_GENERATION = {"Namespace", "Node", "Service", "Pod", "PersistentVolumeClaim", "PersistentVolume", "Endpoints"}
DEFAULT_NAMESPACES = ["default", "kube-system", "kube-public", "kube-node-lease"]
# Of the API server's bootstrap RBAC policy only cluster-admin (the aggregated admin/edit/view and the
# system:* roles are not made; discovery is allowed to every authenticated caller in rbac.py).
_RBAC_DEFAULTS = {"labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
                  "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}}
DEFAULT_RBAC = [
    {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": dict(_RBAC_DEFAULTS, name="cluster-admin"),
     "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}, {"nonResourceURLs": ["*"], "verbs": ["*"]}]},
    {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": dict(_RBAC_DEFAULTS, name="cluster-admin"),
     "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
     "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:masters"}]},
]


def now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def rand_suffix(n=5):
    # The alphabet Kubernetes' rand.String uses (no vowels, no 0/1/3).
    return "".join(random.choice("bcdfghjklmnpqrstvwxz2456789") for _i in range(n))


class ApiError(Exception):
    def __init__(self, code, reason, message, details=None):
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details

    def status(self):
        s = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": self.message,
             "reason": self.reason, "code": self.code}
        if self.details is not None:
            s["details"] = self.details
        return s


def qualified(rt):
    return rt.plural + ("." + rt.group if rt.group else "")


def not_found(rt, name):
    d = {"name": name, "kind": rt.plural}
    if rt.group:
        d["group"] = rt.group
    return ApiError(404, "NotFound", '%s "%s" not found' % (qualified(rt), name), d)


def invalid(exc):
    d = {"name": exc.name, "kind": exc.kind,
         "causes": [{"reason": "FieldValueInvalid" if "Invalid value" in m else
                     ("FieldValueRequired" if "Required" in m else
                      ("FieldValueNotSupported" if "Unsupported" in m else "FieldValueForbidden"
                       if "Forbidden" in m else "FieldValueInvalid")),
                     "message": m, "field": p} for p, m in exc.causes]}
    if exc.group:
        d["group"] = exc.group
    return ApiError(422, "Invalid", exc.message, d)


def conflict(rt, name):
    d = {"name": name, "kind": rt.plural}
    if rt.group:
        d["group"] = rt.group
    return ApiError(409, "Conflict", 'Operation cannot be fulfilled on %s "%s": the object has been modified; please apply your '
                    'changes to the latest version and try again' % (qualified(rt), name), d)


def managers_of(obj):
    out = {}
    for e in (obj.get("metadata") or {}).get("managedFields") or []:
        key = (e.get("manager", ""), e.get("operation", "Update"), e.get("subresource", ""))
        out[key] = merge.fieldset_from_v1(e.get("fieldsV1"))
    return out


def _strip_volatile(obj):
    o = copy.deepcopy(obj)
    md = o.get("metadata", {})
    for k in ("managedFields", "resourceVersion"):
        md.pop(k, None)
    return o


class Store:
    def __init__(self, data_dir, k8s_version, extra_crds=()):
        self.path = os.path.join(data_dir, "state.json")
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.validator = Validator(k8s_version)
        self.rtypes = {}                      # (group, version, plural) -> RType
        for rt in BUILTIN:
            self.rtypes[(rt.group, rt.version, rt.plural)] = rt
        self.objects = {}                     # (group, plural, ns, name) -> obj
        self.rv = 0
        self.events = collections.deque(maxlen=20000)   # (rv, type, group, plural, obj)
        self.listeners = []
        if os.path.exists(self.path):
            with open(self.path) as f:
                state = json.load(f)
            self.rv = state["rv"]
            for obj in state["objects"]:
                g, _sep, p = obj.pop("_resource").partition("|")
                md = obj["metadata"]
                self.objects[(g, p, md.get("namespace", ""), md["name"])] = obj
            for obj in self.all("apiextensions.k8s.io", "customresourcedefinitions"):
                self._register_crd(obj)
        for crd in extra_crds:
            self._bootstrap(crd)
        for ns in DEFAULT_NAMESPACES:
            self._bootstrap({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        for obj in DEFAULT_RBAC:
            self._bootstrap(copy.deepcopy(obj))
        self.persist()

    # ------------------------------------------------------------------ types

    def _bootstrap(self, obj):
        rt = self.rtype_for(obj["apiVersion"], obj["kind"])
        if self.get_obj(rt, obj["metadata"].get("namespace", ""), obj["metadata"]["name"]) is None:
            self.create(rt, obj.get("metadata", {}).get("namespace", ""), obj, manager="k3s")

    def _register_crd(self, crd):
        for rt in crd_to_rtypes(crd):
            self.rtypes[(rt.group, rt.version, rt.plural)] = rt
            self.validator.cache.pop((rt.group, rt.version, rt.kind), None)

    def _unregister_crd(self, crd):
        for key in [k for k, rt in self.rtypes.items() if rt.crd_name == crd["metadata"]["name"]]:
            del self.rtypes[key]

    def rtype(self, group, version, plural):
        return self.rtypes.get((group, version, plural))

    def rtype_for(self, api_version, kind):
        group, _sep, version = api_version.rpartition("/")
        for rt in self.rtypes.values():
            if rt.group == group and rt.version == version and rt.kind == kind:
                return rt
        raise KeyError("%s %s" % (api_version, kind))

    def rtype_by_kind(self, kind, group=""):
        for rt in self.rtypes.values():
            if rt.kind == kind and rt.group == group:
                return rt
        raise KeyError(kind)

    # ------------------------------------------------------------------ reads

    def get_obj(self, rt, ns, name):
        with self.lock:
            o = self.objects.get((rt.group, rt.plural, ns if rt.namespaced else "", name))
            return copy.deepcopy(o) if o is not None else None

    def get(self, rt, ns, name):
        o = self.get_obj(rt, ns, name)
        if o is None:
            raise not_found(rt, name)
        return o

    def all(self, group, plural, ns=None, where=None):
        """Copies of the objects of a resource (in a namespace); `where`, given, sees each stored object
        read-only and picks what is copied: the controllers' passes copy only what they look at."""
        with self.lock:
            return [copy.deepcopy(o) for (g, p, n, _name), o in sorted(self.objects.items())
                    if g == group and p == plural and (ns is None or n == ns) and (where is None or where(o))]

    def list(self, rt, ns, label_reqs=(), field_reqs=()):
        items = [o for o in self.all(rt.group, rt.plural, ns if rt.namespaced and ns else None)
                 if label_reqs_match(label_reqs, o["metadata"].get("labels")) and field_reqs_match(field_reqs, o)]
        for o in items:
            o["apiVersion"], o["kind"] = rt.api_version, rt.kind
        return items

    # ------------------------------------------------------------------ persistence and events

    def persist(self):
        with self.lock:
            objs = []
            for (g, p, _ns, _name), o in sorted(self.objects.items()):
                o = dict(o)
                o["_resource"] = g + "|" + p
                objs.append(o)
            tmp = self.path + ".tmp"
            with open(tmp, "w") as f:
                json.dump({"rv": self.rv, "objects": objs}, f)
            os.replace(tmp, self.path)

    def _emit(self, etype, rt, obj):
        self.events.append((int(obj["metadata"]["resourceVersion"]), etype, rt.group, rt.plural, copy.deepcopy(obj)))
        self.changed.notify_all()

    def events_since(self, rv, group, plural):
        with self.lock:
            return [e for e in self.events if e[0] > rv and e[2] == group and e[3] == plural]

    def oldest_event_rv(self):
        with self.lock:
            return self.events[0][0] if self.events else self.rv

    # ------------------------------------------------------------------ writes

    def _ns_check(self, rt, ns, creating):
        if not rt.namespaced:
            return
        nsobj = self.objects.get(("", "namespaces", "", ns))
        if nsobj is None:
            raise ApiError(404, "NotFound", 'namespaces "%s" not found' % ns, {"name": ns, "kind": "namespaces"})
        if creating and nsobj["metadata"].get("deletionTimestamp"):
            raise ApiError(403, "Forbidden", "%s \"%s\" is forbidden: unable to create new content in namespace %s because it is "
                           "being terminated" % (qualified(rt), "", ns),
                           {"causes": [{"reason": "NamespaceTerminating", "message": "namespace %s is being terminated" % ns,
                                        "field": "metadata.namespace"}]})

    def _allocate_cluster_ip(self):
        used = {(o.get("spec") or {}).get("clusterIP") for (g, p, _ns, _name), o in self.objects.items() if p == "services" and g == ""}
        hosts = list(SERVICE_CIDR.hosts())
        # .1 is the kubernetes Service and .10 kube-dns in k3s.
        for _attempt in range(1000):
            ip = str(random.choice(hosts[11:]))
            if ip not in used:
                return ip
        raise ApiError(500, "InternalError", "range is full")

    def _prepare(self, rt, old, new, main_resource=True):
        new.setdefault("metadata", {})
        if rt.kind == "Secret":
            sd = new.pop("stringData", None) or {}
            for k, v in sd.items():
                new.setdefault("data", {})[k] = base64.b64encode(v.encode()).decode()
        if main_resource and rt.crd_schema is None:
            apply_defaults(rt.kind, new)
        if rt.kind == "Service":
            spec = new["spec"]
            if spec.get("type") != "ExternalName":
                if not spec.get("clusterIP"):
                    spec["clusterIP"] = ((old or {}).get("spec") or {}).get("clusterIP") or self._allocate_cluster_ip()
                spec.setdefault("clusterIPs", [spec["clusterIP"]])
            if old is None:
                new["status"] = {"loadBalancer": {}}
        if main_resource and rt.has_status:
            if old is not None:
                if "status" in old:
                    new["status"] = copy.deepcopy(old["status"])
                else:
                    new.pop("status", None)
            elif rt.kind == "Pod":
                new["status"] = {"phase": "Pending", "qosClass": qos_class(new.get("spec") or {})}
            elif rt.kind == "Namespace":
                new["status"] = {"phase": "Active"}
            elif rt.kind not in ("Service", "Node"):
                new.pop("status", None)
        return new

    def write(self, rt, ns, name, old, new, manager, operation="Update", subresource="", dry_run=False,
              managers=None, validate=True):
        """Store `new` in place of `old` (None: create). managers: the field
        ownership to record, when the caller (apply) worked it out itself."""
        with self.lock:
            md = new.setdefault("metadata", {})
            new["apiVersion"], new["kind"] = rt.api_version, rt.kind
            if old is None:
                md["name"] = name
                if rt.namespaced:
                    md["namespace"] = ns
                else:
                    md.pop("namespace", None)
                md["uid"] = str(uuid.uuid4())
                md["creationTimestamp"] = now()
                for k in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "generation", "selfLink"):
                    md.pop(k, None)
            else:
                omd = old["metadata"]
                if md.get("name", name) != omd["name"] or (rt.namespaced and md.get("namespace", ns) != omd.get("namespace")):
                    raise invalid(Invalid(rt.kind, rt.group, omd["name"], [("metadata.name", "Invalid value: %s: field is immutable"
                                                                           % json.dumps(md.get("name")))]))
                if md.get("uid") and md["uid"] != omd["uid"]:
                    raise invalid(Invalid(rt.kind, rt.group, omd["name"], [("metadata.uid", "Invalid value: %s: field is immutable"
                                                                           % json.dumps(md["uid"]))]))
                for k in ("name", "namespace", "uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation"):
                    if k in omd:
                        md[k] = omd[k]
                    else:
                        md.pop(k, None)
                if md.get("resourceVersion") and md["resourceVersion"] != omd["resourceVersion"]:
                    raise conflict(rt, name)
            self._prepare(rt, old, new, main_resource=(subresource == ""))
            if validate:
                errs = [("metadata.name", "Invalid value: %s: %s" % (json.dumps(name), m)) for m in name_errors(rt.kind, name)] \
                    if old is None else []
                errs += semantic_errors(rt.kind, new, old)
                if errs:
                    raise invalid(Invalid(rt.kind, rt.group, name, errs))
                md.pop("managedFields", None)
                md.pop("resourceVersion", None)
                try:
                    self.validator.validate(rt, new)
                except Invalid as e:
                    raise invalid(e)
            # generation follows the spec (everything but metadata and status for custom resources)
            if old is None:
                if ("spec" in new and rt.kind not in NO_GENERATION) or rt.crd_schema is not None:
                    md["generation"] = 1
            elif "generation" in old["metadata"] and _spec_of(rt, old) != _spec_of(rt, new):
                md["generation"] = old["metadata"].get("generation", 0) + 1
            if managers is None:
                managers = merge.update_managers(old, _strip_volatile(new), manager, managers_of(old) if old else {}, subresource) \
                    if manager else managers_of(old or {})
            old_managers = managers_of(old) if old else None
            if old is not None and _strip_volatile(old) == _strip_volatile(new) and managers == old_managers:
                return copy.deepcopy(old)
            md["managedFields"] = self._managed_fields(old, managers, (manager, operation, subresource), rt)
            if dry_run:
                if old is not None:
                    md["resourceVersion"] = old["metadata"]["resourceVersion"]
                return copy.deepcopy(new)
            self.rv += 1
            md["resourceVersion"] = str(self.rv)
            key = (rt.group, rt.plural, ns if rt.namespaced else "", name)
            if old is None and key in self.objects:
                raise ApiError(409, "AlreadyExists", '%s "%s" already exists' % (qualified(rt), name),
                               {"name": name, "kind": rt.plural, **({"group": rt.group} if rt.group else {})})
            self.objects[key] = new
            if rt.plural == "customresourcedefinitions":
                self._register_crd(new)
            self._emit("ADDED" if old is None else "MODIFIED", rt, new)
            self._finish_if_deletable(rt, key)
            self.persist()
            return copy.deepcopy(new)

    def _managed_fields(self, old, managers, acting, rt):
        prev = {(e.get("manager", ""), e.get("operation", "Update"), e.get("subresource", "")): e
                for e in ((old or {}).get("metadata") or {}).get("managedFields") or []}
        old_sets = managers_of(old) if old else {}
        out = []
        for key in list(prev) + [k for k in managers if k not in prev]:
            if key not in managers or not managers[key]:
                continue
            e = {"manager": key[0], "operation": key[1], "apiVersion": rt.api_version, "fieldsType": "FieldsV1",
                 "fieldsV1": merge.fieldset_to_v1(managers[key])}
            if key[2]:
                e["subresource"] = key[2]
            if key in prev and old_sets.get(key) == managers[key] and key != acting:
                e["time"] = prev[key].get("time", now())
            else:
                e["time"] = now()
            out.append(e)
        return out

    def _finish_if_deletable(self, rt, key):
        o = self.objects.get(key)
        if o and o["metadata"].get("deletionTimestamp") and not o["metadata"].get("finalizers") \
                and rt.kind not in ("Pod", "Namespace"):
            self._remove(rt, key)

    def _remove(self, rt, key):
        o = self.objects.pop(key)
        self.rv += 1
        o["metadata"]["resourceVersion"] = str(self.rv)
        if rt.plural == "customresourcedefinitions":
            self._unregister_crd(o)
        self._emit("DELETED", rt, o)
        return o

    def create(self, rt, ns, body, manager, dry_run=False):
        md = body.setdefault("metadata", {})
        name = md.get("name")
        if not name and md.get("generateName"):
            name = md["generateName"] + rand_suffix()
        if not name:
            raise invalid(Invalid(rt.kind, rt.group, "", [("metadata.name", "Required value: name or generateName is required")]))
        if rt.namespaced:
            if md.get("namespace") and md["namespace"] != ns:
                raise ApiError(400, "BadRequest", "the namespace of the provided object does not match the namespace sent on the request")
            self._ns_check(rt, ns, creating=True)
        with self.lock:
            if self.get_obj(rt, ns, name) is not None:
                raise ApiError(409, "AlreadyExists", '%s "%s" already exists' % (qualified(rt), name),
                               {"name": name, "kind": rt.plural, **({"group": rt.group} if rt.group else {})})
            if rt.kind == "Pod":
                self._admit_pod(body)
            return self.write(rt, ns, name, None, body, manager, dry_run=dry_run)

    def _admit_pod(self, pod):
        """The RuntimeClass and DefaultTolerationSeconds admission plugins."""
        spec = pod.setdefault("spec", {})
        rc_name = spec.get("runtimeClassName")
        if rc_name:
            rc = self.objects.get(("node.k8s.io", "runtimeclasses", "", rc_name))
            if rc is None:
                raise ApiError(403, "Forbidden", 'pods "%s" is forbidden: pod rejected: RuntimeClass "%s" not found'
                               % (pod["metadata"].get("name") or pod["metadata"].get("generateName", ""), rc_name))
            sched = rc.get("scheduling") or {}
            if sched.get("nodeSelector"):
                ns_ = spec.setdefault("nodeSelector", {})
                for k, v in sched["nodeSelector"].items():
                    if k in ns_ and ns_[k] != v:
                        raise ApiError(403, "Forbidden", 'pods "%s" is forbidden: pod rejected: conflict: runtimeClass.scheduling.nodeSelector'
                                       '[%s] = %s; pod.spec.nodeSelector[%s] = %s' % (pod["metadata"].get("name", ""), k, v, k, ns_[k]))
                    ns_[k] = v
            for t in sched.get("tolerations") or []:
                if t not in spec.setdefault("tolerations", []):
                    spec["tolerations"].append(t)
            if rc.get("overhead", {}).get("podFixed"):
                spec["overhead"] = rc["overhead"]["podFixed"]
        tols = spec.setdefault("tolerations", [])
        for key in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"):
            if not any(t.get("key") == key and t.get("effect") in (None, "", "NoExecute") for t in tols) and \
                    not any(t.get("operator") == "Exists" and not t.get("key") for t in tols):
                tols.append({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300})

    def delete(self, rt, ns, name, grace=None, propagation=None, dry_run=False, preconditions=None):
        with self.lock:
            key = (rt.group, rt.plural, ns if rt.namespaced else "", name)
            o = self.objects.get(key)
            if o is None:
                raise not_found(rt, name)
            if preconditions and preconditions.get("uid") and preconditions["uid"] != o["metadata"]["uid"]:
                raise ApiError(409, "Conflict", 'Precondition failed: UID in precondition: %s, UID in object meta: %s'
                               % (preconditions["uid"], o["metadata"]["uid"]))
            if dry_run:
                return copy.deepcopy(o)
            if propagation == "Orphan":
                self._orphan(o["metadata"]["uid"])
            md = o["metadata"]
            if rt.kind == "Pod":
                bound = bool((o.get("spec") or {}).get("nodeName"))
                terminal = (o.get("status") or {}).get("phase") in ("Succeeded", "Failed")
                g = grace if grace is not None else (o.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
                if g == 0 or not bound or terminal:
                    if not md.get("finalizers"):
                        removed = self._remove(rt, key)
                        self.persist()
                        return removed
                if md.get("deletionTimestamp"):
                    cur = md.get("deletionGracePeriodSeconds", 30)
                    if g >= cur:
                        return copy.deepcopy(o)
                new = copy.deepcopy(o)
                new["metadata"]["deletionTimestamp"] = _ts_in(g)
                new["metadata"]["deletionGracePeriodSeconds"] = g
                return self._raw_update(rt, key, new)
            if rt.kind == "Namespace":
                if md.get("deletionTimestamp"):
                    return copy.deepcopy(o)
                new = copy.deepcopy(o)
                new["metadata"]["deletionTimestamp"] = now()
                new["metadata"]["deletionGracePeriodSeconds"] = 0
                new["status"] = {"phase": "Terminating"}
                return self._raw_update(rt, key, new)
            if md.get("finalizers"):
                if md.get("deletionTimestamp"):
                    return copy.deepcopy(o)
                new = copy.deepcopy(o)
                new["metadata"]["deletionTimestamp"] = now()
                new["metadata"]["deletionGracePeriodSeconds"] = 0
                return self._raw_update(rt, key, new)
            removed = self._remove(rt, key)
            self.persist()
            return removed

    def _orphan(self, uid):
        for key, o in list(self.objects.items()):
            refs = o["metadata"].get("ownerReferences") or []
            if any(r.get("uid") == uid for r in refs):
                new = copy.deepcopy(o)
                new["metadata"]["ownerReferences"] = [r for r in refs if r.get("uid") != uid] or None
                if new["metadata"]["ownerReferences"] is None:
                    del new["metadata"]["ownerReferences"]
                rt = self.rtype_any(key[0], key[1])
                self._raw_update(rt, key, new)

    def rtype_any(self, group, plural):
        for rt in self.rtypes.values():
            if rt.group == group and rt.plural == plural:
                return rt
        return None

    def _raw_update(self, rt, key, new):
        """A write by the server itself (deletion marks, controllers): no
        defaulting, validation or field manager, but a new resourceVersion
        and a watch event unless nothing changed."""
        with self.lock:
            old = self.objects.get(key)
            if old is None:
                return None
            if _strip_volatile(old) == _strip_volatile(new) and old["metadata"].get("managedFields") == new["metadata"].get("managedFields"):
                return copy.deepcopy(old)
            self.rv += 1
            new["metadata"]["resourceVersion"] = str(self.rv)
            self.objects[key] = new
            self._emit("MODIFIED", rt, new)
            self.persist()
            return copy.deepcopy(new)

    def system_update(self, rt, obj):
        """A controller's write of an object it read: as against the real API
        (a resourceVersion precondition, 409 on a stale read), it is dropped
        when the object changed since, and the controller's next pass works
        from the new one. Written blindly, a status update computed from a
        stale copy undid a scale or an apply that landed in between."""
        md = obj["metadata"]
        key = (rt.group, rt.plural, md.get("namespace", "") if rt.namespaced else "", md["name"])
        with self.lock:
            current = self.objects.get(key)
            if current is not None and md.get("resourceVersion") not in (None, current["metadata"].get("resourceVersion")):
                return None
            return self._raw_update(rt, key, obj)

    def system_remove(self, rt, obj):
        with self.lock:
            md = obj["metadata"]
            key = (rt.group, rt.plural, md.get("namespace", "") if rt.namespaced else "", md["name"])
            if key in self.objects and self.objects[key]["metadata"]["uid"] == md["uid"]:
                self._remove(rt, key)
                self.persist()

    def finalize_pod(self, ns, name):
        """The kubelet's final delete (gracePeriodSeconds=0) after its containers stopped."""
        rt = self.rtype("", "v1", "pods")
        with self.lock:
            key = ("", "pods", ns, name)
            o = self.objects.get(key)
            if o is not None and not o["metadata"].get("finalizers"):
                self._remove(rt, key)
                self.persist()


def _spec_of(rt, obj):
    if rt.crd_schema is not None:
        return {k: v for k, v in obj.items() if k not in ("metadata", "status")}
    return obj.get("spec")


def _ts_in(seconds):
    return datetime.datetime.fromtimestamp(time.time() + seconds, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def qos_class(spec):
    reqs, lims, any_set = [], [], False
    for c in spec.get("containers") or []:
        r = (c.get("resources") or {})
        reqs.append(r.get("requests") or {})
        lims.append(r.get("limits") or {})
        any_set = any_set or bool(r.get("requests") or r.get("limits"))
    if not any_set:
        return "BestEffort"
    for rq, lm in zip(reqs, lims):
        for res in ("cpu", "memory"):
            if res not in lm or rq.get(res, lm[res]) != lm[res]:
                return "Burstable"
    return "Guaranteed"
