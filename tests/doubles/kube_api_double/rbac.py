"""Authorization: the request attributes kube-apiserver derives from a request
(apiserver's RequestInfoFactory) and the RBAC authorizer's decision over the
stored Roles, ClusterRoles, RoleBindings and ClusterRoleBindings
(plugin/pkg/auth/authorizer/rbac), with the 403 Status the real server
answers (responsewriters.ForbiddenStatusError).

Only callers that are neither system:masters nor a node are asked: the
double imitates no Node authorizer (k3s runs Node,RBAC), so a node's
credential keeps every right."""

from dataclasses import dataclass
from urllib.parse import unquote

from .store import ApiError

RBAC_GROUP = "rbac.authorization.k8s.io"
UNRESTRICTED_GROUPS = ("system:masters", "system:nodes")
# What the bootstrap ClusterRoles system:discovery and system:public-info-viewer grant to every
# authenticated caller (bound to system:authenticated); GET only.
DISCOVERY_URLS = ("/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/readyz", "/openapi", "/openapi/*",
                  "/version", "/version/")
VERBS = {"POST": "create", "GET": "get", "HEAD": "get", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
# Subresources of namespaces that are not resources in their own right (RequestInfoFactory).
NAMESPACE_SUBRESOURCES = ("status", "finalize")


@dataclass
class Attributes:
    verb: str
    path: str
    resource_request: bool = False
    group: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""


def _truthy(v):
    return v is not None and v.lower() in ("1", "t", "true")


def _name_from_field_selector(sel):
    """fields.Selector.RequiresExactMatch("metadata.name") over the and-ed terms."""
    for term in (sel or "").split(","):
        term = term.strip()
        if "!=" in term:
            continue
        key, op, value = term.partition("==") if "==" in term else term.partition("=")
        if op and key.strip() == "metadata.name":
            value = value.strip()
            return value if value and "/" not in value and "%" not in value and value not in (".", "..") else ""
    return ""


def request_attributes(method, path, query):
    """What RBAC is asked about a request: /api/v1/[namespaces/NS/]RESOURCE[/NAME[/SUBRESOURCE[/...]]]
    (and /apis/GROUP/VERSION/...) is a resource request, anything else (discovery too) a non-resource one
    whose verb is the lower-case method. Segments are read decoded, as Go's URL.Path holds them."""
    segs = list(unquote(path).strip("/").split("/"))
    segs = segs if segs != [""] else []
    other = Attributes(verb=method.lower(), path=path)
    if not segs or segs[0] not in ("api", "apis"):
        return other
    if segs[0] == "api":
        if len(segs) < 3:
            return other
        group, rest = "", segs[2:]
    else:
        if len(segs) < 4:
            return other
        group, rest = segs[1], segs[3:]
    a = Attributes(verb=VERBS.get(method, method.lower()), path=path, resource_request=True, group=group)
    if rest[0] == "namespaces" and len(rest) > 1:
        a.namespace = rest[1]
        if len(rest) > 2 and rest[2] not in NAMESPACE_SUBRESOURCES:
            rest = rest[2:]
    a.resource = rest[0]
    a.name = rest[1] if len(rest) > 1 else ""
    a.subresource = rest[2] if len(rest) > 2 else ""
    if a.verb == "get" and not a.name:
        a.verb = "watch" if _truthy(query.get("watch")) else "list"
        a.name = _name_from_field_selector(query.get("fieldSelector"))
    if a.verb == "delete" and not a.name:
        a.verb = "deletecollection"
    return a


# --------------------------------------------------------------------------- rule matching (rbacv1helpers)

def _rule_allows(a, rule):
    verbs = rule.get("verbs") or []
    if "*" not in verbs and a.verb not in verbs:
        return False
    if not a.resource_request:
        return any(u == "*" or u == a.path or (u.endswith("*") and a.path.startswith(u[:-1]))
                   for u in rule.get("nonResourceURLs") or [])
    groups = rule.get("apiGroups") or []
    if "*" not in groups and a.group not in groups:
        return False
    combined = a.resource + ("/" + a.subresource if a.subresource else "")
    if not any(r == "*" or r == combined or (a.subresource and r == "*/" + a.subresource) for r in rule.get("resources") or []):
        return False
    names = rule.get("resourceNames") or []
    return not names or a.name in names


def _applies(subjects, user, groups, binding_ns):
    for s in subjects or []:
        kind = s.get("kind")
        if kind == "User" and s.get("name") == user:
            return True
        if kind == "Group" and s.get("name") in groups:
            return True
        if kind == "ServiceAccount":
            # A RoleBinding's ServiceAccount subject without a namespace means one in the binding's.
            ns = s.get("namespace") or binding_ns
            if ns and user == "system:serviceaccount:%s:%s" % (ns, s.get("name")):
                return True
    return False


def _rules(store, ref, binding_ns):
    """The rules a binding's roleRef points at, or the error the real authorizer records."""
    if ref.get("kind") == "Role":
        role = store.get_obj(store.rtype(RBAC_GROUP, "v1", "roles"), binding_ns, ref.get("name"))
        what = "role"
    else:
        role = store.get_obj(store.rtype(RBAC_GROUP, "v1", "clusterroles"), "", ref.get("name"))
        what = "clusterrole"
    if role is None:
        return [], '%s.%s "%s" not found' % (what, RBAC_GROUP, ref.get("name"))
    return role.get("rules") or [], None


def _aggregate(errors):
    """utilerrors.NewAggregate(...).Error(): one message as is, several (deduplicated) in brackets."""
    seen = []
    for e in errors:
        if e not in seen:
            seen.append(e)
    return seen[0] if len(seen) == 1 else "[" + ", ".join(seen) + "]"


def authorize(store, user, groups, a):
    """(allowed, reason): ClusterRoleBindings, then (for a namespaced request) the RoleBindings of the
    request's namespace, stopping at the first rule that allows it."""
    if not a.resource_request and a.verb == "get" and any(
            u == a.path or (u.endswith("*") and a.path.startswith(u[:-1])) for u in DISCOVERY_URLS):
        return True, ""
    errors = []
    for crb in store.all(RBAC_GROUP, "clusterrolebindings"):
        if not _applies(crb.get("subjects"), user, groups, ""):
            continue
        rules, err = _rules(store, crb.get("roleRef") or {}, "")
        if err:
            errors.append(err)
        if any(_rule_allows(a, r) for r in rules):
            return True, ""
    if a.namespace:
        for rb in store.all(RBAC_GROUP, "rolebindings", a.namespace):
            if not _applies(rb.get("subjects"), user, groups, a.namespace):
                continue
            rules, err = _rules(store, rb.get("roleRef") or {}, a.namespace)
            if err:
                errors.append(err)
            if any(_rule_allows(a, r) for r in rules):
                return True, ""
    return False, ("RBAC: " + _aggregate(errors)) if errors else ""


def forbidden(user, a, reason=""):
    """The 403 of responsewriters.ForbiddenStatusError and apierrors.NewForbidden."""
    msg = 'User "%s" cannot %s' % (user, a.verb)
    if a.resource_request:
        msg += ' resource "%s" in API group "%s"' % (a.resource + ("/" + a.subresource if a.subresource else ""), a.group)
        msg += ' in the namespace "%s"' % a.namespace if a.namespace else " at the cluster scope"
    else:
        msg += ' path "%s"' % a.path
    if reason:
        msg += ": " + reason
    qualified = a.resource + ("." + a.group if a.group else "") if a.resource_request else ""
    if not qualified:
        message = "forbidden: " + msg
    elif not a.name:
        message = "%s is forbidden: %s" % (qualified, msg)
    else:
        message = '%s "%s" is forbidden: %s' % (qualified, a.name, msg)
    details = {k: v for k, v in (("name", a.name), ("group", a.group), ("kind", a.resource if a.resource_request else ""))
               if v}
    return ApiError(403, "Forbidden", message, details)


def check(store, user, groups, method, path, query):
    """Raise the real 403 when RBAC does not allow the request; system:masters and nodes are not asked."""
    if any(g in groups for g in UNRESTRICTED_GROUPS):
        return
    a = request_attributes(method, path, query)
    with store.lock:
        allowed, reason = authorize(store, user, groups, a)
    if not allowed:
        raise forbidden(user, a, reason)
