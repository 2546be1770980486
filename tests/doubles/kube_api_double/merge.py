"""Patches and server-side apply.

Field sets use the fieldsV1 path syntax: ("f:spec", "f:containers",
'k:{"name":"app"}', "f:image"). A path names either a leaf value or a
keyed list item (an associative list member, which the real server also
records with a "." entry)."""

import copy
import json

from .schema import SET_LISTS, list_keys


class PatchError(ValueError):
    pass


# --------------------------------------------------------------------------- RFC 7386 / strategic merge

def json_merge_patch(target, patch):
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = json_merge_patch(out.get(k), v)
    return out


def strategic_merge_patch(target, patch, field_name=None):
    """Strategic merge: maps merge, lists with a merge key merge by key (with
    `$patch: delete` items), every other list is replaced; `$patch: replace`
    on a map replaces it; `$retainKeys` and `$setElementOrder` are ignored."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if patch.get("$patch") == "delete":
        return None
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if k.startswith("$") or k.startswith("$setElementOrder/") or k.startswith("$deleteFromPrimitiveList/"):
            if k.startswith("$deleteFromPrimitiveList/"):
                name = k.split("/", 1)[1]
                out[name] = [x for x in out.get(name) or [] if x not in v]
            continue
        if v is None:
            out.pop(k, None)
        elif isinstance(v, list) and isinstance(out.get(k), list):
            keys = list_keys(k, [i for i in v if isinstance(i, dict) and i.get("$patch") != "delete"] + out[k])
            if keys:
                cur = copy.deepcopy(out[k])
                for item in v:
                    ident = tuple(item.get(x) for x in keys)
                    idx = next((i for i, c in enumerate(cur) if tuple(c.get(x) for x in keys) == ident), None)
                    if item.get("$patch") == "delete":
                        if idx is not None:
                            cur.pop(idx)
                    elif idx is None:
                        cur.append(strategic_merge_patch({}, item))
                    else:
                        cur[idx] = strategic_merge_patch(cur[idx], item)
                out[k] = cur
            elif k in SET_LISTS:
                out[k] = out[k] + [x for x in v if x not in out[k]]
            else:
                out[k] = copy.deepcopy(v)
        elif isinstance(v, dict):
            r = strategic_merge_patch(out.get(k), v, k)
            if r is None:
                out.pop(k, None)
            else:
                out[k] = r
        else:
            out[k] = copy.deepcopy(v)
    return out


def _ptr(path):
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError("invalid JSON pointer %r" % path)
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def json_patch(doc, ops):
    doc = copy.deepcopy(doc)
    if not isinstance(ops, list):
        raise PatchError("json patch must be a list of operations")

    def parent(parts):
        cur = doc
        for p in parts[:-1]:
            cur = cur[int(p)] if isinstance(cur, list) else cur[p]
        return cur

    for op in ops:
        kind, parts = op.get("op"), _ptr(op.get("path", ""))
        try:
            if kind in ("add", "replace", "test", "remove"):
                par, last = parent(parts), parts[-1]
                if kind == "test":
                    have = par[int(last)] if isinstance(par, list) else par[last]
                    if have != op.get("value"):
                        raise PatchError("testing value %s failed" % op.get("path"))
                elif kind == "remove":
                    if isinstance(par, list):
                        par.pop(int(last))
                    else:
                        del par[last]
                elif isinstance(par, list):
                    if kind == "add":
                        par.insert(len(par) if last == "-" else int(last), copy.deepcopy(op["value"]))
                    else:
                        par[int(last)] = copy.deepcopy(op["value"])
                else:
                    if kind == "replace" and last not in par:
                        raise PatchError("replace operation does not apply: doc is missing key: %s" % op["path"])
                    par[last] = copy.deepcopy(op["value"])
            elif kind in ("move", "copy"):
                src = _ptr(op["from"])
                sp = parent(src)
                val = sp[int(src[-1])] if isinstance(sp, list) else sp[src[-1]]
                if kind == "move":
                    json_patch_inplace_remove(sp, src[-1])
                doc = json_patch(doc, [{"op": "add", "path": op["path"], "value": val}])
            else:
                raise PatchError("Unexpected kind: %s" % kind)
        except (KeyError, IndexError, ValueError, TypeError) as e:
            if isinstance(e, PatchError):
                raise
            raise PatchError("%s operation does not apply: doc is missing path: %s" % (kind, op.get("path")))
    return doc


def json_patch_inplace_remove(container, key):
    if isinstance(container, list):
        container.pop(int(key))
    else:
        del container[key]


# --------------------------------------------------------------------------- field sets

SKIP_META = {"name", "namespace", "uid", "resourceVersion", "generation", "creationTimestamp", "managedFields",
             "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink", "generateName"}


def _key_elem(item, keys):
    return "k:" + json.dumps({k: item.get(k) for k in keys if k in item}, separators=(",", ":"), sort_keys=True)


def leaves(obj, prefix=(), top=True):
    """{path: value} for every leaf, plus keyed list items (value None)."""
    out = {}
    for k, v in obj.items():
        if top and k in ("apiVersion", "kind"):
            continue
        if prefix == ("f:metadata",) and k in SKIP_META:
            continue
        p = prefix + ("f:" + k,)
        if isinstance(v, dict) and v:
            out.update(leaves(v, p, top=False))
        elif isinstance(v, list) and v and list_keys(k, v):
            keys = list_keys(k, v)
            for item in v:
                ip = p + (_key_elem(item, keys),)
                out[ip] = None
                out.update(leaves(item, ip, top=False))
        elif isinstance(v, list) and v and k in SET_LISTS:
            for item in v:
                out[p + ("v:" + json.dumps(item),)] = None
        else:
            out[p] = v
    return out


def fieldset_to_v1(paths):
    root = {}
    for p in sorted(paths):
        node = root
        for elem in p:
            node = node.setdefault(elem, {})
    marked = {p for p in paths if any(q[:len(p)] == p and len(q) > len(p) for q in paths)}
    for p in marked:
        node = root
        for elem in p:
            node = node[elem]
        node["."] = {}
    return root


def fieldset_from_v1(v1, prefix=()):
    out = set()
    for k, v in (v1 or {}).items():
        if k == ".":
            out.add(prefix)
            continue
        p = prefix + (k,)
        if not v:
            out.add(p)
        else:
            out |= fieldset_from_v1(v, p)
    return out


def _get(obj, path):
    """Value at a field path, or a sentinel when absent."""
    cur = obj
    for elem in path:
        if isinstance(cur, dict) and elem.startswith("f:"):
            if elem[2:] not in cur:
                return _MISSING
            cur = cur[elem[2:]]
        elif isinstance(cur, list) and elem.startswith("k:"):
            want = json.loads(elem[2:])
            cur = next((i for i in cur if isinstance(i, dict) and all(i.get(k) == v for k, v in want.items())), _MISSING)
            if cur is _MISSING:
                return cur
        elif isinstance(cur, list) and elem.startswith("v:"):
            val = json.loads(elem[2:])
            return val if val in cur else _MISSING
        else:
            return _MISSING
    return cur


_MISSING = object()


def _remove(obj, path):
    parent = _get(obj, path[:-1]) if len(path) > 1 else obj
    last = path[-1]
    if isinstance(parent, dict) and last.startswith("f:"):
        parent.pop(last[2:], None)
    elif isinstance(parent, list) and last.startswith("k:"):
        want = json.loads(last[2:])
        parent[:] = [i for i in parent if not (isinstance(i, dict) and all(i.get(k) == v for k, v in want.items()))]
    elif isinstance(parent, list) and last.startswith("v:"):
        val = json.loads(last[2:])
        parent[:] = [i for i in parent if i != val]


def _merge_applied(live, applied):
    for k, v in applied.items():
        if v is None:
            live.pop(k, None)
            continue
        cur = live.get(k)
        if isinstance(v, dict) and isinstance(cur, dict) and v:
            _merge_applied(cur, v)
        elif isinstance(v, list) and isinstance(cur, list) and list_keys(k, v + cur):
            keys = list_keys(k, v + cur)
            for item in v:
                ident = {x: item.get(x) for x in keys}
                match = next((c for c in cur if all(c.get(x) == y for x, y in ident.items())), None)
                if match is None:
                    cur.append(copy.deepcopy(item))
                else:
                    _merge_applied(match, item)
        elif isinstance(v, list) and isinstance(cur, list) and k in SET_LISTS:
            cur.extend(x for x in v if x not in cur)
        else:
            live[k] = copy.deepcopy(v)


class ApplyConflict(Exception):
    def __init__(self, conflicts, api_version):
        self.conflicts = conflicts  # [(manager, path)]
        self.api_version = api_version
        by = {}
        for m, p in conflicts:
            by.setdefault(m, []).append(p)
        n = len(conflicts)
        if n == 1:
            (m, p), = conflicts
            self.message = 'Apply failed with 1 conflict: conflict with "%s" using %s: %s' % (m, api_version, p)
        else:
            parts = []
            for m, ps in by.items():
                parts.append('conflicts with "%s" using %s:\n%s' % (m, api_version, "\n".join("- " + p for p in ps)))
            self.message = "Apply failed with %d conflicts: %s" % (n, "\n".join(parts))
        super().__init__(self.message)


def path_str(path):
    out = ""
    for e in path:
        if e.startswith("f:"):
            out += "." + e[2:]
        elif e.startswith("k:"):
            out += "[" + ",".join("%s=%s" % (k, json.dumps(v)) for k, v in json.loads(e[2:]).items()) + "]"
        elif e.startswith("v:"):
            out += "[" + e[2:] + "]"
    return out


def server_side_apply(live, applied, manager, managers, force, api_version, skip_status):
    """Apply `applied` for `manager` on `live`.

    managers: {(manager, operation, subresource): set(paths)} of the live object.
    Returns (new object, new managers). Raises ApplyConflict."""
    applied = copy.deepcopy(applied)
    if skip_status:
        applied.pop("status", None)
    new_leaves = leaves(applied)
    new_set = set(new_leaves)
    live = copy.deepcopy(live)
    live_leaves = leaves(live)
    me = (manager, "Apply", "")
    conflicts = []
    for key, paths in managers.items():
        if key == me:
            continue
        for p in sorted(new_set & paths):
            if new_leaves[p] is None:
                continue  # co-owning a keyed list item is not a conflict
            if live_leaves.get(p, _MISSING) != new_leaves[p]:
                conflicts.append((key[0], p))
    if conflicts and not force:
        raise ApplyConflict([(m, path_str(p)) for m, p in conflicts], api_version)
    managers = {k: set(v) for k, v in managers.items()}
    for m, p in conflicts:
        for key in managers:
            if key[0] == m:
                managers[key].discard(p)
    previously = managers.get(me, set())
    others = set().union(*[v for k, v in managers.items() if k != me]) if len(managers) > (1 if me in managers else 0) else set()
    for p in sorted(previously - new_set, key=len, reverse=True):
        owned_below = any(q[:len(p)] == p for q in others | new_set)
        if not owned_below:
            _remove(live, p)
    _merge_applied(live, applied)
    managers[me] = new_set
    return live, managers


def update_managers(old, new, manager, managers, subresource=""):
    """Ownership after a non-apply write: the writer takes every field it
    changed; fields that no longer exist are dropped from every manager."""
    old_l = leaves(old) if old else {}
    new_l = leaves(new)
    changed = {p for p, v in new_l.items() if p not in old_l or old_l[p] != v}
    managers = {k: set(v) & set(new_l) for k, v in managers.items()}
    me = (manager, "Update", subresource)
    for k in managers:
        if k != me:
            managers[k] -= changed
    if changed or me in managers:
        managers[me] = managers.get(me, set()) | changed
    return {k: v for k, v in managers.items() if v}
