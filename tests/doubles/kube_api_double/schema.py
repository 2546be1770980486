"""What the API server knows about kinds: the served resources (discovery),
the schemas objects are validated against, the defaults it fills in, the
rules that make fields immutable, and list merge keys for strategic merge
and server-side apply."""

import copy
import json
import re
from dataclasses import dataclass, field

import jsonschema
import referencing
import yaml
from importlib import resources as importlib_resources

VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


@dataclass
class RType:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    short: list = field(default_factory=list)
    subresources: tuple = ()
    crd_schema: dict = None   # openAPIV3Schema for custom resources; None: the pinned k8s schema
    crd_name: str = None

    @property
    def api_version(self):
        return "%s/%s" % (self.group, self.version) if self.group else self.version

    @property
    def singular(self):
        return self.kind.lower()

    @property
    def has_status(self):
        return "status" in self.subresources


def _b(group, version, plural, kind, namespaced, short=(), subs=()):
    return RType(group, version, plural, kind, namespaced, list(short), tuple(subs))


BUILTIN = [
    _b("", "v1", "namespaces", "Namespace", False, ["ns"], ["status"]),
    _b("", "v1", "nodes", "Node", False, ["no"], ["status"]),
    _b("", "v1", "pods", "Pod", True, ["po"], ["status", "eviction", "proxy"]),
    _b("", "v1", "services", "Service", True, ["svc"], ["status", "proxy"]),
    _b("", "v1", "endpoints", "Endpoints", True, ["ep"]),
    _b("", "v1", "configmaps", "ConfigMap", True, ["cm"]),
    _b("", "v1", "secrets", "Secret", True),
    _b("", "v1", "serviceaccounts", "ServiceAccount", True, ["sa"]),
    _b("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", True, ["pvc"], ["status"]),
    _b("", "v1", "persistentvolumes", "PersistentVolume", False, ["pv"], ["status"]),
    _b("", "v1", "events", "Event", True, ["ev"]),
    _b("apps", "v1", "deployments", "Deployment", True, ["deploy"], ["status", "scale"]),
    _b("apps", "v1", "replicasets", "ReplicaSet", True, ["rs"], ["status", "scale"]),
    _b("apps", "v1", "statefulsets", "StatefulSet", True, ["sts"], ["status", "scale"]),
    _b("apps", "v1", "daemonsets", "DaemonSet", True, ["ds"], ["status"]),
    _b("apps", "v1", "controllerrevisions", "ControllerRevision", True),
    _b("batch", "v1", "jobs", "Job", True, [], ["status"]),
    _b("batch", "v1", "cronjobs", "CronJob", True, ["cj"], ["status"]),
    _b("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", True, ["pdb"], ["status"]),
    _b("networking.k8s.io", "v1", "ingresses", "Ingress", True, ["ing"], ["status"]),
    _b("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", True, ["netpol"]),
    _b("networking.k8s.io", "v1", "ingressclasses", "IngressClass", False),
    _b("node.k8s.io", "v1", "runtimeclasses", "RuntimeClass", False),
    _b("rbac.authorization.k8s.io", "v1", "roles", "Role", True),
    _b("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True),
    _b("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False),
    _b("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", False),
    _b("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", False, ["crd", "crds"], ["status"]),
    _b("coordination.k8s.io", "v1", "leases", "Lease", True),
    _b("storage.k8s.io", "v1", "storageclasses", "StorageClass", False, ["sc"]),
    _b("scheduling.k8s.io", "v1", "priorityclasses", "PriorityClass", False, ["pc"]),
]

SUBRESOURCE_KINDS = {"scale": ("autoscaling", "v1", "Scale", ["get", "patch", "update"]),
                     "eviction": ("policy", "v1", "Eviction", ["create"])}


def discovery_entry(rt):
    out = [{"name": rt.plural, "singularName": rt.singular, "namespaced": rt.namespaced, "kind": rt.kind,
            "verbs": VERBS, "storageVersionHash": ""}]
    if rt.short:
        out[0]["shortNames"] = rt.short
    if rt.group == "" and rt.plural == "pods" or rt.plural in ("deployments", "daemonsets", "statefulsets", "replicasets"):
        out[0]["categories"] = ["all"]
    for sub in rt.subresources:
        if sub == "proxy":
            out.append({"name": "%s/proxy" % rt.plural, "singularName": "", "namespaced": rt.namespaced,
                        "kind": rt.kind + "ProxyOptions", "verbs": ["create", "delete", "get", "patch", "update"]})
        elif sub in SUBRESOURCE_KINDS:
            g, v, k, verbs = SUBRESOURCE_KINDS[sub]
            out.append({"name": "%s/%s" % (rt.plural, sub), "singularName": "", "namespaced": rt.namespaced,
                        "group": g, "version": v, "kind": k, "verbs": verbs})
        else:
            out.append({"name": "%s/%s" % (rt.plural, sub), "singularName": "", "namespaced": rt.namespaced,
                        "kind": rt.kind, "verbs": ["get", "patch", "update"]})
    return out


def crd_to_rtypes(crd):
    """The resource types a CustomResourceDefinition serves (one per served version)."""
    spec = crd["spec"]
    names = spec["names"]
    out = []
    for v in spec.get("versions", []):
        if not v.get("served", True):
            continue
        subs = ["status"] if "status" in (v.get("subresources") or {}) else []
        if "scale" in (v.get("subresources") or {}):
            subs.append("scale")
        schema = (v.get("schema") or {}).get("openAPIV3Schema") or {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        out.append(RType(spec["group"], v["name"], names["plural"], names["kind"], spec.get("scope") == "Namespaced",
                         list(names.get("shortNames") or []), tuple(subs), schema, crd["metadata"]["name"]))
    return out


def make_crd(group, plural, kind, version, schema, namespaced=True, short=(), status=True):
    v = {"name": version, "served": True, "storage": True, "schema": {"openAPIV3Schema": schema}}
    if status:
        v["subresources"] = {"status": {}}
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "%s.%s" % (plural, group)},
            "spec": {"group": group, "scope": "Namespaced" if namespaced else "Cluster",
                     "names": {"plural": plural, "singular": kind.lower(), "kind": kind, "listKind": kind + "List",
                               "shortNames": list(short)},
                     "versions": [v]}}


# --------------------------------------------------------------------------- validation

class Invalid(Exception):
    """A 422: causes are (field path, message) pairs, message the whole text."""

    def __init__(self, kind, group, name, causes, reason="FieldValueInvalid"):
        self.kind, self.group, self.name, self.causes, self.reason = kind, group, name, causes, reason
        qual = kind + ("." + group if group else "")
        body = "; ".join("%s: %s" % (p, m) if p else m for p, m in causes)
        if len(causes) > 1:
            body = "[" + ", ".join("%s: %s" % (p, m) if p else m for p, m in causes) + "]"
        self.message = '%s "%s" is invalid: %s' % (qual, name, body)
        super().__init__(self.message)


def _path(parts):
    out = ""
    for p in parts:
        out += "[%d]" % p if isinstance(p, int) else ("." if out else "") + str(p)
    return out


class Validator:
    def __init__(self, k8s_version):
        self.dir = "kubernetes-json-schema/v%s.0-local-strict" % k8s_version
        root = importlib_resources.files("kubernetes_validate").joinpath(self.dir)
        if not root.is_dir():
            raise SystemExit("kube-api-double: kubernetes_validate has no strict schemas for %s" % k8s_version)
        defs = json.loads(root.joinpath("_definitions.json").read_text())
        self.defs = defs["$defs"]
        self.registry = referencing.Resource.from_contents(defs) @ referencing.Registry()
        self.root = root
        self.cache = {}

    def _validator(self, rt):
        key = (rt.group, rt.version, rt.kind)
        if key not in self.cache:
            if rt.crd_schema is not None:
                schema = crd_json_schema(rt.crd_schema)
                schema["properties"]["metadata"] = {"$ref": "/api/_definitions.json#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}
                # The definitions are registered under kubernetes.io's base URI; the
                # built-in schemas carry an $id there, so the CRD's must too.
                schema["$id"] = "https://kubernetes.io/api/%s/%s/%s" % (rt.kind.lower(), rt.group, rt.version)
            else:
                gv = (rt.group.split(".")[0] + "-" if rt.group else "") + rt.version
                schema = json.loads(self.root.joinpath("%s-%s.json" % (rt.kind.lower(), gv)).read_text())
            self.cache[key] = jsonschema.Draft202012Validator(schema, registry=self.registry)
        return self.cache[key]

    def validate(self, rt, obj):
        name = obj.get("metadata", {}).get("name", "")
        errors = list(self._validator(rt).iter_errors(obj))
        if not errors:
            return
        causes = []
        for e in sorted(errors, key=lambda e: list(map(str, e.absolute_path))):
            e = jsonschema.exceptions.best_match([e]) if not e.context else _deepest(e)
            path = _path(e.absolute_path)
            if e.validator == "additionalProperties":
                extra = [k for k in e.instance if k not in e.schema.get("properties", {})]
                for k in extra:
                    full = (path + "." if path else "") + k
                    causes.append((full, 'strict decoding error: unknown field "%s"' % full))
            elif e.validator == "required":
                m = re.match(r"'([^']+)' is a required property", e.message)
                causes.append(((path + "." if path else "") + (m.group(1) if m else "?"), "Required value"))
            elif e.validator == "enum":
                causes.append((path, 'Unsupported value: %s: supported values: %s' % (
                    json.dumps(e.instance), ", ".join('"%s"' % x for x in e.validator_value if x is not None))))
            else:
                causes.append((path, "Invalid value: %s: %s" % (json.dumps(e.instance)[:200], e.message[:300])))
        raise Invalid(rt.kind, rt.group, name, causes)


def _deepest(e):
    best = e
    for sub in e.context:
        cand = _deepest(sub)
        if len(cand.absolute_path) > len(best.absolute_path):
            best = cand
    return best


def crd_json_schema(s):
    """openAPIV3Schema (structural) to a JSON schema that rejects unknown fields
    the way a CRD with pruning and fieldValidation=Strict does."""
    s = copy.deepcopy(s)

    def walk(n):
        if not isinstance(n, dict):
            return n
        n.pop("x-kubernetes-validations", None)
        if n.pop("x-kubernetes-int-or-string", False):
            n.pop("type", None)
            n["anyOf"] = [{"type": "integer"}, {"type": "string"}]
        if n.pop("nullable", False) and "type" in n:
            n["type"] = [n["type"], "null"]
        if n.get("type") == "object" and "properties" in n and not n.get("x-kubernetes-preserve-unknown-fields") \
                and "additionalProperties" not in n:
            n["additionalProperties"] = False
        for k in ("properties",):
            for v in (n.get(k) or {}).values():
                walk(v)
        for k in ("items", "additionalProperties"):
            if isinstance(n.get(k), dict):
                walk(n[k])
        for k in ("allOf", "anyOf", "oneOf"):
            for v in n.get(k) or []:
                walk(v)
        return n
    s = walk(s)
    s.setdefault("properties", {})
    s["additionalProperties"] = False
    s["properties"].setdefault("apiVersion", {"type": "string"})
    s["properties"].setdefault("kind", {"type": "string"})
    return s


def load_crd_file(path):
    docs = [d for d in yaml.safe_load_all(open(path)) if d]
    crds = [d for d in docs if d.get("kind") == "CustomResourceDefinition"]
    if not crds:
        raise SystemExit("kube-api-double: %s holds no CustomResourceDefinition" % path)
    return crds


# --------------------------------------------------------------------------- names

DNS1123_SUBDOMAIN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
DNS1123_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1035_LABEL = r"[a-z]([-a-z0-9]*[a-z0-9])?"
NAME_RULES = {
    "subdomain": (DNS1123_SUBDOMAIN, 253, "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
                  "and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '%s')"),
    "label": (DNS1123_LABEL, 63, "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start "
              "and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '%s')"),
    "dns1035": (DNS1035_LABEL, 63, "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic "
                "character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '%s')"),
}
NAME_KIND = {"Namespace": "label", "Service": "dns1035"}
# RBAC and a few others accept path segment names (anything without / or %).
PATH_SEGMENT_KINDS = {"Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding", "Node"}


def name_errors(kind, name):
    if kind in PATH_SEGMENT_KINDS:
        if name in (".", "..") or "/" in name or "%" in name:
            return ["may not contain '/' or '%'"]
        return []
    rx, maxlen, msg = NAME_RULES[NAME_KIND.get(kind, "subdomain")]
    out = []
    if len(name) > maxlen:
        out.append("must be no more than %d characters" % maxlen)
    if not re.fullmatch(rx, name):
        out.append(msg % rx)
    return out


QUALIFIED_NAME = r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
QUALIFIED_MSG = ("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
                 "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '%s')"
                 % QUALIFIED_NAME)
LABEL_VALUE = r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?"


def qualified_name_errors(key):
    """apimachinery's IsQualifiedName: [prefix/]name, the prefix a DNS-1123 subdomain."""
    prefix, slash, name = key.rpartition("/")
    out = []
    if "/" in prefix or (slash and not prefix):
        return ["a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
                "with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "
                "validation is '%s') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
                % QUALIFIED_NAME]
    if prefix:
        rx, maxlen, msg = NAME_RULES["subdomain"]
        if len(prefix) > maxlen:
            out.append("prefix part must be no more than %d characters" % maxlen)
        if not re.fullmatch(rx, prefix):
            out.append("prefix part " + msg % rx)
    if not name:
        out.append("name part must be non-empty")
    elif len(name) > 63:
        out.append("name part must be no more than 63 characters")
    if name and not re.fullmatch(QUALIFIED_NAME, name):
        out.append(QUALIFIED_MSG)
    return out


def metadata_errors(meta, path):
    """ValidateLabels and ValidateAnnotations: what a real API server refuses in label and annotation keys."""
    errs = []
    for key, value in ((meta or {}).get("labels") or {}).items():
        errs += [("%s.labels" % path, "Invalid value: %s: %s" % (json.dumps(key), m)) for m in qualified_name_errors(key)]
        value = value if isinstance(value, str) else ""
        if len(value) > 63 or not re.fullmatch(LABEL_VALUE, value):
            errs.append(("%s.labels" % path, "Invalid value: %s: a valid label must be an empty string or consist of "
                         "alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric "
                         "character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '%s')"
                         % (json.dumps(value), LABEL_VALUE)))
    for key in ((meta or {}).get("annotations") or {}):
        errs += [("%s.annotations" % path, "Invalid value: %s: %s" % (json.dumps(key), m))
                 for m in qualified_name_errors(key.lower())]
    return errs


# --------------------------------------------------------------------------- list merge keys

# Associative lists (strategic merge patchMergeKey / SSA listMapKeys) by field
# name; every list not named here is atomic (replaced whole), as most lists
# in the Kubernetes schema are.
LIST_KEYS = {
    "containers": ["name"], "initContainers": ["name"], "ephemeralContainers": ["name"],
    "env": ["name"], "volumes": ["name"], "volumeMounts": ["mountPath"], "volumeDevices": ["devicePath"],
    "imagePullSecrets": ["name"], "hostAliases": ["ip"], "conditions": ["type"], "ownerReferences": ["uid"],
    "resourceClaims": ["name"], "topologySpreadConstraints": ["topologyKey", "whenUnsatisfiable"],
    "addresses": ["type"],
}
# Not here, as in the real schema (listType atomic, no patchMergeKey): pod status containerStatuses and
# initContainerStatuses, so a strategic merge patch replaces them whole (a kubelet's patch leaves no stale
# `waiting` beside a new `running`).
SET_LISTS = {"finalizers"}


def list_keys(field_name, items):
    if field_name == "ports":
        if any(isinstance(i, dict) and "containerPort" in i for i in items):
            return ["containerPort"]
        if any(isinstance(i, dict) and "port" in i for i in items):
            return ["port"]
        return None
    keys = LIST_KEYS.get(field_name)
    if keys and all(isinstance(i, dict) and keys[0] in i for i in items):
        return keys
    return None


# --------------------------------------------------------------------------- defaults

def _pod_spec_defaults(spec):
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("securityContext", {})
    for c in spec.get("containers", []) + spec.get("initContainers", []):
        image = c.get("image", "")
        tag = image.rsplit("/", 1)[-1]
        if "imagePullPolicy" not in c:
            c["imagePullPolicy"] = "Always" if ("@" not in tag and (":" not in tag or tag.endswith(":latest"))) else "IfNotPresent"
        c.setdefault("terminationMessagePath", "/dev/termination-log")
        c.setdefault("terminationMessagePolicy", "File")
        res = c.setdefault("resources", {})
        for part in ("requests", "limits"):
            if isinstance(res.get(part), dict):
                res[part] = quantities(res[part])
        for p in c.get("ports", []):
            p.setdefault("protocol", "TCP")
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            pr = c.get(probe)
            if isinstance(pr, dict):
                for k, v in (("timeoutSeconds", 1), ("periodSeconds", 10), ("successThreshold", 1), ("failureThreshold", 3)):
                    pr.setdefault(k, v)
                hg = pr.get("httpGet")
                if isinstance(hg, dict):
                    hg.setdefault("scheme", "HTTP")
                    hg.setdefault("path", "/")
        for ev in c.get("env", []):
            fr = (ev.get("valueFrom") or {}).get("fieldRef")
            if isinstance(fr, dict):
                fr.setdefault("apiVersion", "v1")
    for v in spec.get("volumes", []):
        for src, key in (("configMap", "defaultMode"), ("secret", "defaultMode")):
            if isinstance(v.get(src), dict):
                v[src].setdefault(key, 420)
        if isinstance(v.get("hostPath"), dict):
            v["hostPath"].setdefault("type", "")
    for t in spec.get("tolerations", []) or []:
        pass
    return spec


def _template_defaults(tpl):
    tpl.setdefault("metadata", {})
    _pod_spec_defaults(tpl.setdefault("spec", {}))


def _intstr_default(d, key, value):
    d.setdefault(key, value)


def apply_defaults(kind, obj):
    """Fill in the defaults the real server's defaulting functions set and that
    clients read back. Must be idempotent: a re-apply compares against it."""
    spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else None
    if kind == "Pod" and spec is not None:
        _pod_spec_defaults(spec)
        # A container's requests default to its limits (pods only, not templates).
        for c in spec.get("containers", []) + spec.get("initContainers", []):
            res = c.get("resources") or {}
            for k, v in (res.get("limits") or {}).items():
                res.setdefault("requests", {}).setdefault(k, v)
        spec.setdefault("enableServiceLinks", True)
        spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
        spec.setdefault("priority", 0)
    elif kind == "Deployment" and spec is not None:
        spec.setdefault("replicas", 1)
        st = spec.setdefault("strategy", {"type": "RollingUpdate"})
        st.setdefault("type", "RollingUpdate")
        if st["type"] == "RollingUpdate":
            ru = st.setdefault("rollingUpdate", {})
            ru.setdefault("maxSurge", "25%")
            ru.setdefault("maxUnavailable", "25%")
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)
        _template_defaults(spec.setdefault("template", {}))
    elif kind == "ReplicaSet" and spec is not None:
        spec.setdefault("replicas", 1)
        _template_defaults(spec.setdefault("template", {}))
    elif kind == "StatefulSet" and spec is not None:
        spec.setdefault("replicas", 1)
        spec.setdefault("podManagementPolicy", "OrderedReady")
        us = spec.setdefault("updateStrategy", {"type": "RollingUpdate"})
        if us.get("type") == "RollingUpdate":
            us.setdefault("rollingUpdate", {"partition": 0})
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("persistentVolumeClaimRetentionPolicy", {"whenDeleted": "Retain", "whenScaled": "Retain"})
        _template_defaults(spec.setdefault("template", {}))
    elif kind == "DaemonSet" and spec is not None:
        us = spec.setdefault("updateStrategy", {"type": "RollingUpdate"})
        if us.get("type") == "RollingUpdate":
            ru = us.setdefault("rollingUpdate", {})
            ru.setdefault("maxUnavailable", 1)
            ru.setdefault("maxSurge", 0)
        spec.setdefault("revisionHistoryLimit", 10)
        _template_defaults(spec.setdefault("template", {}))
    elif kind == "Job" and spec is not None:
        spec.setdefault("backoffLimit", 6)
        spec.setdefault("completions", 1)
        spec.setdefault("parallelism", 1)
        spec.setdefault("completionMode", "NonIndexed")
        spec.setdefault("suspend", False)
        spec.setdefault("podReplacementPolicy", "TerminatingOrFailed")
        spec.setdefault("manualSelector", False)
        _template_defaults(spec.setdefault("template", {}))
        spec["template"]["spec"]["restartPolicy"] = spec["template"]["spec"].get("restartPolicy", "Never")
    elif kind == "Service":
        spec = obj.setdefault("spec", {})
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        if spec["type"] != "ExternalName":
            spec.setdefault("internalTrafficPolicy", "Cluster")
            spec.setdefault("ipFamilyPolicy", "SingleStack")
            spec.setdefault("ipFamilies", ["IPv4"])
        if spec["type"] in ("NodePort", "LoadBalancer"):
            spec.setdefault("externalTrafficPolicy", "Cluster")
        for p in spec.get("ports", []):
            p.setdefault("protocol", "TCP")
            p.setdefault("targetPort", p.get("port"))
    elif kind == "Namespace":
        md = obj.setdefault("metadata", {})
        md.setdefault("labels", {})["kubernetes.io/metadata.name"] = md.get("name")
        obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
    elif kind == "Secret":
        obj.setdefault("type", "Opaque")
    elif kind == "PersistentVolumeClaim" and spec is not None:
        spec.setdefault("volumeMode", "Filesystem")
    elif kind == "PodDisruptionBudget" and spec is not None:
        pass
    elif kind == "IngressClass":
        pass
    elif kind == "Ingress" and spec is not None:
        for r in spec.get("rules", []):
            for p in (r.get("http") or {}).get("paths", []):
                p.setdefault("pathType", "ImplementationSpecific")
    return obj


# --------------------------------------------------------------------------- semantic checks

def _selector_matches_labels(sel, labels):
    from .selectors import label_selector_matches
    return label_selector_matches(sel, labels)


def semantic_errors(kind, obj, old):
    """Rules outside the OpenAPI schema that the real validation enforces and
    that this collection can trip over: immutable fields, required images,
    selectors that must select their template."""
    errs = metadata_errors(obj.get("metadata"), "metadata")
    spec = obj.get("spec") or {}
    ospec = (old or {}).get("spec") or {}
    if isinstance(spec.get("template"), dict):
        errs += metadata_errors(spec["template"].get("metadata"), "spec.template.metadata")
    if kind in ("Deployment", "ReplicaSet", "StatefulSet", "DaemonSet"):
        sel = spec.get("selector")
        labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        if sel is not None and not (sel.get("matchLabels") or sel.get("matchExpressions")):
            errs.append(("spec.selector", "Invalid value: %s: empty selector is invalid for deployment" % json.dumps(sel)))
        elif sel is not None and not _selector_matches_labels(sel, labels):
            errs.append(("spec.template.metadata.labels", "Invalid value: %s: `selector` does not match template `labels`" % json.dumps(labels)))
        if old is not None and ospec.get("selector") != spec.get("selector"):
            errs.append(("spec.selector", "Invalid value: %s: field is immutable" % json.dumps(spec.get("selector"))))
        if kind == "StatefulSet" and old is not None:
            for k in ("serviceName", "volumeClaimTemplates", "podManagementPolicy"):
                if ospec.get(k) != spec.get(k):
                    errs.append(("spec", "Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', "
                                 "'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"))
                    break
        pod_spec, prefix = (spec.get("template") or {}).get("spec") or {}, "spec.template.spec"
    elif kind == "Job":
        if old is not None and ospec.get("template") != spec.get("template"):
            errs.append(("spec.template", "Invalid value: %s: field is immutable" % json.dumps(spec.get("template"))[:200]))
        pod_spec, prefix = (spec.get("template") or {}).get("spec") or {}, "spec.template.spec"
    elif kind == "Pod":
        pod_spec, prefix = spec, "spec"
        if old is not None:
            a, b = _pod_mutable_stripped(ospec), _pod_mutable_stripped(spec)
            if a != b:
                errs.append(("spec", "Forbidden: pod updates may not change fields other than `spec.containers[*].image`,"
                             "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to "
                             "existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)"))
    else:
        pod_spec, prefix = None, None
    if pod_spec is not None:
        for group in ("containers", "initContainers"):
            for i, c in enumerate(pod_spec.get(group) or []):
                if not c.get("image"):
                    errs.append(("%s.%s[%d].image" % (prefix, group, i), "Required value"))
                for part in ("requests", "limits"):
                    for rname, q in ((c.get("resources") or {}).get(part) or {}).items():
                        if parse_quantity(q) is None:
                            errs.append(("%s.%s[%d].resources.%s[%s]" % (prefix, group, i, part, rname),
                                         "Invalid value: %s: quantities must match the regular expression "
                                         "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'" % json.dumps(q)))
        if not pod_spec.get("containers"):
            errs.append((prefix + ".containers", "Required value"))
        # validateReadinessGates: each conditionType a qualified name.
        for i, gate in enumerate(pod_spec.get("readinessGates") or []):
            ctype = gate.get("conditionType") if isinstance(gate, dict) else None
            if isinstance(ctype, str):
                errs += [("%s.readinessGates[%d].conditionType" % (prefix, i), "Invalid value: %s: %s" % (json.dumps(ctype), m))
                         for m in qualified_name_errors(ctype)]
    if kind == "Service":
        if spec.get("type") != "ExternalName" and not spec.get("ports") and spec.get("clusterIP") != "None":
            errs.append(("spec.ports", "Required value"))
        if old is not None:
            oip, nip = ospec.get("clusterIP"), spec.get("clusterIP")
            if oip and oip != nip and spec.get("type") != "ExternalName":
                errs.append(("spec.clusterIPs[0]", "Invalid value: %s: may not change once set" % json.dumps(spec.get("clusterIPs") or [nip])))
    if kind in ("Secret", "ConfigMap") and old is not None and old.get("immutable"):
        for k in ("data", "binaryData", "stringData"):
            if old.get(k) != obj.get(k):
                errs.append((k, "Forbidden: field is immutable when `immutable` is set"))
        if not obj.get("immutable"):
            errs.append(("immutable", "Forbidden: field is immutable when `immutable` is set"))
    if kind == "Secret" and old is not None and old.get("type") != obj.get("type"):
        errs.append(("type", "Invalid value: %s: field is immutable" % json.dumps(obj.get("type"))))
    if kind == "PersistentVolumeClaim" and old is not None:
        a, b = copy.deepcopy(ospec), copy.deepcopy(spec)
        oreq = parse_quantity(((a.get("resources") or {}).get("requests") or {}).get("storage", "0"))
        nreq = parse_quantity(((b.get("resources") or {}).get("requests") or {}).get("storage", "0"))
        for s in (a, b):
            s.setdefault("resources", {}).setdefault("requests", {}).pop("storage", None)
            s.pop("volumeName", None)
        if a != b:
            errs.append(("spec", "Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims"))
        elif nreq is not None and oreq is not None and nreq < oreq:
            errs.append(("spec.resources.requests.storage", "Forbidden: field can not be less than status.capacity"))
    return errs


def _pod_mutable_stripped(spec):
    s = copy.deepcopy(spec)
    for group in ("containers", "initContainers"):
        for c in s.get(group) or []:
            c.pop("image", None)
    for k in ("activeDeadlineSeconds", "tolerations", "terminationGracePeriodSeconds", "nodeName"):
        s.pop(k, None)
    return s


_Q = re.compile(r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$")
_SUFFIX = {"": 1, "n": 1e-9, "u": 1e-6, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
           "Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30, "Ti": 2 ** 40, "Pi": 2 ** 50, "Ei": 2 ** 60}


def quantities(d):
    """The server always answers quantities as strings."""
    return {k: (str(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v) for k, v in d.items()}


def parse_quantity(q):
    """A resource.Quantity as a float; None when the real parser would reject it."""
    if isinstance(q, (int, float)) and not isinstance(q, bool):
        return float(q)
    if not isinstance(q, str):
        return None
    m = _Q.match(q.strip())
    if not m:
        return None
    num, suf = m.groups()
    try:
        n = float(num)
    except ValueError:
        return None
    if suf in _SUFFIX:
        return n * _SUFFIX[suf]
    em = re.fullmatch(r"[eE]([-+]?[0-9]+)", suf)
    if em:
        return n * 10 ** int(em.group(1))
    return None
