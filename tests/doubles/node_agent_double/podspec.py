"""What the kubelet and containerd compute from a pod spec before a process
exists: the environment, $(VAR) expansion, command/args against the image's
ENTRYPOINT/CMD, the user, and admission (extended resources, RuntimeClass)."""

import base64
import glob
import os
import pwd
import subprocess
import sys
import re
import tomllib


class PodProblem(Exception):
    """A reason the kubelet reports; `pod_failed` ones end the pod, the others are retried."""

    def __init__(self, reason, message, event_reason=None, pod_failed=False):
        super().__init__(message)
        self.reason, self.message = reason, message
        self.event_reason = event_reason or reason
        self.pod_failed = pod_failed


def config_error(message):
    return PodProblem("CreateContainerConfigError", message, event_reason="Failed")


def expand(s, *maps):
    """Kubernetes' third_party/forked/golang/expansion.Expand: $(VAR) from the maps, $$ -> $, unknown stays as written."""
    out, i, n = [], 0, len(s)
    while i < n:
        ch = s[i]
        if ch == "$" and i + 1 < n:
            nxt = s[i + 1]
            if nxt == "$":
                out.append("$")
                i += 2
                continue
            if nxt == "(":
                close = s.find(")", i + 2)
                if close != -1:
                    name = s[i + 2:close]
                    for m in maps:
                        if name in m:
                            out.append(m[name])
                            break
                    else:
                        out.append("$(" + name + ")")
                    i = close + 1
                    continue
                out.append("$(")
                i += 2
                continue
            out.append("$" + nxt)
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def _decoded(obj, kind):
    if kind == "secrets":
        return {k: base64.b64decode(v).decode("utf-8", "surrogateescape") for k, v in (obj.get("data") or {}).items()}
    data = dict(obj.get("data") or {})
    data.update({k: base64.b64decode(v).decode("utf-8", "surrogateescape") for k, v in (obj.get("binaryData") or {}).items()})
    return data


_KIND_WORD = {"secrets": "secret", "configmaps": "configmap"}


def _ref_value(lookup, ns, kind, ref):
    obj = lookup(kind, ns, ref["name"])
    if obj is None:
        if ref.get("optional"):
            return None
        raise config_error('%s "%s" not found' % (_KIND_WORD[kind], ref["name"]))
    data = _decoded(obj, kind)
    if ref["key"] not in data:
        if ref.get("optional"):
            return None
        raise config_error("couldn't find key %s in %s %s/%s" % (ref["key"], "Secret" if kind == "secrets" else "ConfigMap", ns, ref["name"]))
    return data[ref["key"]]


_LABEL_REF = re.compile(r"metadata\.(labels|annotations)\['([^']+)'\]")


def field_value(pod, path, node_ip):
    md, spec = pod["metadata"], pod["spec"]
    simple = {"metadata.name": md["name"], "metadata.namespace": md["namespace"], "metadata.uid": md.get("uid", ""),
              "spec.nodeName": spec.get("nodeName", ""), "spec.serviceAccountName": spec.get("serviceAccountName", ""),
              "status.podIP": node_ip, "status.podIPs": node_ip, "status.hostIP": node_ip, "status.hostIPs": node_ip}
    if path in simple:
        return simple[path]
    m = _LABEL_REF.fullmatch(path)
    if m:
        return (md.get(m.group(1)) or {}).get(m.group(2), "")
    raise config_error("unsupported fieldRef fieldPath %r (the double knows %s and metadata.labels/annotations['...'])"
                       % (path, ", ".join(sorted(simple))))


def container_env(pod, c, lookup, node_ip):
    """The env the kubelet builds (envFrom, then env, each value expanded against what came before)."""
    ns = pod["metadata"]["namespace"]
    env = {}
    for src in c.get("envFrom") or []:
        prefix = src.get("prefix", "")
        for kind, key in (("configmaps", "configMapRef"), ("secrets", "secretRef")):
            if key not in src:
                continue
            ref = src[key]
            obj = lookup(kind, ns, ref["name"])
            if obj is None:
                if ref.get("optional"):
                    continue
                raise config_error('%s "%s" not found' % (_KIND_WORD[kind], ref["name"]))
            for k, v in _decoded(obj, kind).items():
                env[prefix + k] = v
    for e in c.get("env") or []:
        name = e["name"]
        if "valueFrom" not in e:
            env[name] = expand(e.get("value", ""), env)
            continue
        vf = e["valueFrom"]
        if "secretKeyRef" in vf:
            v = _ref_value(lookup, ns, "secrets", vf["secretKeyRef"])
        elif "configMapKeyRef" in vf:
            v = _ref_value(lookup, ns, "configmaps", vf["configMapKeyRef"])
        elif "fieldRef" in vf:
            v = field_value(pod, vf["fieldRef"]["fieldPath"], node_ip)
        else:
            raise config_error("env %s: valueFrom %s is not supported by the node-agent double" % (name, sorted(vf)))
        if v is not None:
            env[name] = v
    return env


def argv_for(c, image, env):
    """containerd's rule: command replaces ENTRYPOINT (and drops CMD); args replace CMD."""
    command = [expand(a, env) for a in c.get("command") or []]
    args = [expand(a, env) for a in c.get("args") or []]
    if not command:
        if not args:
            args = list(image.get("cmd") or [])
        command = list(image.get("entrypoint") or [])
    argv = command + args
    if not argv:
        raise PodProblem("CreateContainerError", "no command specified", event_reason="Failed")
    return argv


def identity(pod, c, image):
    """(uid, gid, supplementary groups, HOME) as runc would set them: numeric ids, never a passwd entry invented."""
    psc = pod["spec"].get("securityContext") or {}
    csc = c.get("securityContext") or {}
    uid = csc.get("runAsUser", psc.get("runAsUser"))
    gid = csc.get("runAsGroup", psc.get("runAsGroup"))
    users = image.users()
    if uid is None:
        uid = int(image.get("user", 0))
    if gid is None:
        gid = int((users.get(uid) or {}).get("gid", 0))
    groups = list(psc.get("supplementalGroups") or [])
    if psc.get("fsGroup") is not None:
        groups.append(psc["fsGroup"])
    if csc.get("runAsNonRoot", psc.get("runAsNonRoot")) and uid == 0:
        raise config_error("container has runAsNonRoot and image will run as root (pod: %s, container: %s)"
                           % (pod["metadata"]["name"], c["name"]))
    home = (users.get(uid) or {}).get("home", "/")
    return uid, gid, sorted(set(groups)), home


# -------------------------------------------------------------------- admission

EXTENDED_SKIP = ("cpu", "memory", "ephemeral-storage", "pods")


def extended_requests(pod):
    want = {}
    for c in pod["spec"].get("containers") or []:
        res = c.get("resources") or {}
        for k, v in {**(res.get("requests") or {}), **(res.get("limits") or {})}.items():
            if "/" in k and not k.startswith(("hugepages-", "kubernetes.io/")):
                want[k] = want.get(k, 0) + int(str(v))
    return want


def admit_devices(pod, node, others):
    """The device manager's admission: pod Failed, UnexpectedAdmissionError, when the node has fewer devices left."""
    alloc = (node.get("status") or {}).get("allocatable") or {}
    used = {}
    for o in others:
        for k, v in extended_requests(o).items():
            used[k] = used.get(k, 0) + v
    for k, v in sorted(extended_requests(pod).items()):
        have = int(str(alloc.get(k, "0"))) - used.get(k, 0)
        if v > have:
            raise PodProblem("UnexpectedAdmissionError",
                             "Allocate failed due to requested number of devices unavailable for %s. Requested: %d, Available: %d, "
                             "which is unexpected" % (k, v, max(have, 0)), pod_failed=True)


def containerd_runtimes(path):
    """Runtime handler names from k3s's containerd config (v2 and v3 layouts) and its drop-ins."""
    names = {"runc"}
    for p in [path] + sorted(glob.glob(os.path.join(os.path.dirname(path), "config.toml.d", "*.toml"))):
        try:
            with open(p, "rb") as f:
                doc = tomllib.load(f)
        except FileNotFoundError:
            continue
        except tomllib.TOMLDecodeError:
            # k3s writes valid TOML; a broken file reads as "configures nothing", as containerd would refuse it.
            continue
        stack = [doc]
        while stack:
            d = stack.pop()
            for k, v in d.items():
                if not isinstance(v, dict):
                    continue
                if k == "runtimes" and isinstance(v, dict):
                    names.update(n for n, rv in v.items() if isinstance(rv, dict))
                stack.append(v)
    return names


def admit_runtime_class(pod, lookup_rc, containerd_config):
    rc_name = pod["spec"].get("runtimeClassName")
    if not rc_name:
        return None
    rc = lookup_rc(rc_name)
    if rc is None:
        raise PodProblem("ContainerCreating", 'Failed to create pod sandbox: RuntimeClass "%s" not found' % rc_name,
                         event_reason="FailedCreatePodSandBox")
    handler = rc.get("handler")
    if handler not in containerd_runtimes(containerd_config):
        raise PodProblem("ContainerCreating", 'Failed to create pod sandbox: rpc error: code = Unknown desc = failed to get sandbox '
                         'runtime: no runtime for "%s" is configured' % handler, event_reason="FailedCreatePodSandBox")
    return handler


# -------------------------------------------------------------------- the image's passwd

_NS_OK = None


def mount_namespace_works():
    """Whether enter.py can make its private mount namespace here (root with CAP_SYS_ADMIN); asked once."""
    global _NS_OK
    if _NS_OK is None:
        from .runtime import ENTER
        r = subprocess.run([sys.executable, "-I", ENTER, "/etc/passwd", "/etc/group", "0", "0", "", "0", "/bin/true", "/bin/true"],
                           capture_output=True, text=True, timeout=30, check=False)
        _NS_OK = (r.returncode == 0, r.stderr.strip())
    return _NS_OK


def passwd_view(image, uid, root):
    """None when the node's /etc/passwd tells the process what the image's would; else the image's passwd/group files.

    Processes share the node's filesystem, so a uid the node defines and the image does not (uid 1000 on many hosts)
    would get a user name it cannot have in the image. Then the image's files are bound over the node's in a private
    mount namespace; where that is impossible the container is refused rather than shown the node's user.
    """
    users = image.users()
    try:
        node_name = pwd.getpwuid(uid).pw_name
    except KeyError:
        node_name = None
    image_name = (users.get(uid) or {}).get("name")
    if node_name == image_name:
        return None
    ok, why = mount_namespace_works()
    if not ok:
        raise config_error("uid %d is %s in this node's /etc/passwd but %s in the image %s, and the node-agent double cannot hide the "
                           "node's file here (%s): refused rather than run with a user the image does not have"
                           % (uid, node_name or "absent", image_name or "absent", image.entry["match"], why))
    d = os.path.join(root, "image-etc", image.image_id[7:19])
    os.makedirs(d, exist_ok=True)
    groups = {int(k): v for k, v in (image.entry.get("groups") or {0: "root"}).items()}
    lines = []
    for u, e in sorted(users.items()):
        gid = int(e.get("gid", u if u in groups else 0))
        lines.append("%s:x:%d:%d:%s:%s:%s" % (e["name"], u, gid, e["name"], e.get("home", "/"), e.get("shell", "/bin/sh")))
    files = []
    for name, text in (("passwd", "\n".join(lines)), ("group", "\n".join("%s:x:%d:" % (n, g) for g, n in sorted(groups.items())))):
        p = os.path.join(d, name)
        with open(p, "w") as f:
            f.write(text + "\n")
        os.chmod(p, 0o644)
        files.append(p)
    return tuple(files)


def readiness_gate_messages(pod):
    """Why the pod's readiness gates keep it from Ready, worded as the kubelet's GeneratePodReadyCondition
    (reason ReadinessGatesNotReady, messages joined by ", "); [] when every gate's condition is "True".
    The kubelet's rule: the API double's --fake-kubelet reads it from here too."""
    conds = {c.get("type"): c for c in (pod.get("status") or {}).get("conditions") or []}
    out = []
    for gate in (pod.get("spec") or {}).get("readinessGates") or []:
        ctype = gate.get("conditionType")
        c = conds.get(ctype)
        if c is None:
            out.append('corresponding condition of pod readiness gate "%s" does not exist.' % ctype)
        elif c.get("status") != "True":
            out.append('the status of pod readiness gate "%s" is not "True", but %s' % (ctype, c.get("status")))
    return out
