"""Label and field selectors, in the query-string syntax and as LabelSelector
objects (matchLabels / matchExpressions)."""

import re


class SelectorError(ValueError):
    pass


def _split_top(s):
    """Split on commas that are not inside an in/notin (...) set."""
    out, depth, cur = [], 0, ""
    for ch in s:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        out.append(cur)
    return [p.strip() for p in out if p.strip()]


def parse_label_selector(s):
    reqs = []
    for part in _split_top(s or ""):
        m = re.fullmatch(r"([^\s!=,()]+)\s+(in|notin)\s+\(([^)]*)\)", part)
        if m:
            reqs.append((m.group(1), m.group(2), [v.strip() for v in m.group(3).split(",") if v.strip()]))
            continue
        m = re.fullmatch(r"([^\s!=,()]+)\s*(==|!=|=)\s*([^\s,()]*)", part)
        if m:
            op = {"=": "=", "==": "=", "!=": "!="}[m.group(2)]
            reqs.append((m.group(1), op, [m.group(3)]))
            continue
        m = re.fullmatch(r"!\s*([^\s!=,()]+)", part)
        if m:
            reqs.append((m.group(1), "!", []))
            continue
        if re.fullmatch(r"[^\s!=,()]+", part):
            reqs.append((part, "exists", []))
            continue
        raise SelectorError("unable to parse requirement: %r" % part)
    return reqs


def label_reqs_match(reqs, labels):
    labels = labels or {}
    for key, op, vals in reqs:
        have = key in labels
        v = labels.get(key)
        if op == "=" and not (have and v == vals[0]):
            return False
        if op == "!=" and have and v == vals[0]:
            return False
        if op == "in" and not (have and v in vals):
            return False
        if op == "notin" and have and v in vals:
            return False
        if op == "exists" and not have:
            return False
        if op == "!" and have:
            return False
    return True


def label_selector_matches(sel, labels):
    """metav1.LabelSelector semantics: an empty selector matches everything."""
    if sel is None:
        return False
    labels = labels or {}
    for k, v in (sel.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in sel.get("matchExpressions") or []:
        op, key, vals = e.get("operator"), e.get("key"), e.get("values") or []
        if op == "In" and labels.get(key) not in vals:
            return False
        if op == "NotIn" and key in labels and labels[key] in vals:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


FIELD_PATHS = {
    "metadata.name": lambda o: o["metadata"].get("name"),
    "metadata.namespace": lambda o: o["metadata"].get("namespace"),
    "spec.nodeName": lambda o: (o.get("spec") or {}).get("nodeName", ""),
    "status.phase": lambda o: (o.get("status") or {}).get("phase", ""),
    "spec.unschedulable": lambda o: str(bool((o.get("spec") or {}).get("unschedulable", False))).lower(),
    "spec.schedulerName": lambda o: (o.get("spec") or {}).get("schedulerName", ""),
    "spec.serviceAccountName": lambda o: (o.get("spec") or {}).get("serviceAccountName", ""),
    "status.podIP": lambda o: (o.get("status") or {}).get("podIP", ""),
    "type": lambda o: o.get("type", ""),
    "involvedObject.name": lambda o: (o.get("involvedObject") or {}).get("name", ""),
    "involvedObject.kind": lambda o: (o.get("involvedObject") or {}).get("kind", ""),
}
# The real server accepts only these per kind (plus metadata.name/namespace for all).
FIELD_BY_KIND = {
    "Pod": {"spec.nodeName", "status.phase", "spec.schedulerName", "spec.serviceAccountName", "status.podIP"},
    "Node": {"spec.unschedulable"},
    "Secret": {"type"},
    "Event": {"involvedObject.name", "involvedObject.kind", "type"},
}


def parse_field_selector(s, kind):
    reqs = []
    for part in _split_top(s or ""):
        m = re.fullmatch(r"([^\s!=]+)\s*(==|!=|=)\s*(.*)", part)
        if not m:
            raise SelectorError("invalid selector: '%s'; can't understand '%s'" % (s, part))
        key, op, val = m.groups()
        if key not in ("metadata.name", "metadata.namespace") and key not in FIELD_BY_KIND.get(kind, ()):
            raise SelectorError('field label not supported: %s' % key)
        reqs.append((key, "!=" if op == "!=" else "=", val))
    return reqs


def field_reqs_match(reqs, obj):
    for key, op, val in reqs:
        have = FIELD_PATHS[key](obj) or ""
        if (op == "=") != (have == val):
            return False
    return True
