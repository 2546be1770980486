"""Volumes without a mount namespace: the container's paths ARE the node's paths.

- hostPath mounted at its own path is used in place (the common case in this
  project: model caches). Its `type` is checked as the kubelet checks it.
- Every other volume lives under --root/pods/<uid>/volumes/<plugin>/<name> and
  a symlink at mountPath (or mountPath/subPath) points at it; configMap and
  secret keys are plain files there (not the kubelet's ..data symlink dance),
  written once at start (no live update of a changed ConfigMap).
- A mountPath that already exists on the node and is not one of this agent's
  links is refused: the pod Fails (reason NodePathConflict) rather than hide
  or overwrite a node file. One exception, said in an event: an emptyDir on a
  world-writable sticky folder that exists (/tmp, /dev/shm) uses that folder
  as it is, shared with the node and not emptied (medium: Memory is likewise
  a plain folder, no tmpfs, no sizeLimit).
- Two live pods cannot hold one mountPath: the later one waits.
- readOnly is not enforced (configMap/secret files are written with their modes).
The links this agent made are listed in --root/mounts.json and removed when
the pod goes, and at the agent's next start after a crash.
"""

import base64
import json
import os
import shutil
import stat
import threading

from .podspec import PodProblem


def _failed_mount(vol, message, pod_failed=False):
    return PodProblem("ContainerCreating", 'MountVolume.SetUp failed for volume "%s" : %s' % (vol, message),
                      event_reason="FailedMount", pod_failed=pod_failed)


_HOSTPATH_CHECKS = {
    "Directory": (stat.S_ISDIR, "directory"), "File": (stat.S_ISREG, "file"), "Socket": (stat.S_ISSOCK, "socket"),
    "CharDevice": (stat.S_ISCHR, "character device"), "BlockDevice": (stat.S_ISBLK, "block device"),
}


def _check_hostpath(vol, path, typ):
    if typ in ("", None):
        return
    if typ == "DirectoryOrCreate":
        os.makedirs(path, mode=0o755, exist_ok=True)
        typ = "Directory"
    elif typ == "FileOrCreate":
        if not os.path.exists(path):
            os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
            open(path, "a").close()
            os.chmod(path, 0o644)
        typ = "File"
    check, word = _HOSTPATH_CHECKS[typ]
    try:
        ok = check(os.stat(path).st_mode)
    except FileNotFoundError:
        ok = False
    if not ok:
        raise _failed_mount(vol, "hostPath type check failed: %s is not a %s" % (path, word))


def _own(path, fs_group, mode, is_dir):
    """SetVolumeOwnership: group fsGroup, group read (and exec+setgid on folders)."""
    if fs_group is None:
        os.chmod(path, mode)
        return
    os.chown(path, -1, fs_group)
    os.chmod(path, mode | (0o2550 if is_dir else 0o440))


def _write_keys(vol_name, target, data, src, fs_group):
    items = src.get("items")
    default_mode = src.get("defaultMode", 0o644)
    pairs = [(it["key"], it["path"], it.get("mode", default_mode)) for it in items] if items else \
        [(k, k, default_mode) for k in sorted(data)]
    os.makedirs(target, exist_ok=True)
    _own(target, fs_group, 0o755, True)
    for key, rel, mode in pairs:
        if key not in data:
            if src.get("optional"):
                continue
            raise _failed_mount(vol_name, "configmap references non-existent config key: %s" % key)
        dest = os.path.join(target, rel)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        with open(dest, "wb") as f:
            f.write(data[key])
        _own(dest, fs_group, mode, False)


class Mounts:
    def __init__(self, root):
        self.root = root
        self.path = os.path.join(root, "mounts.json")
        self.lock = threading.Lock()
        try:
            with open(self.path) as f:
                self.owned = json.load(f)
        except FileNotFoundError:
            self.owned = {}

    def _save(self):
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.owned, f, indent=1)
        os.replace(tmp, self.path)

    def pod_dir(self, uid):
        return os.path.join(self.root, "pods", uid)

    def cleanup_all(self):
        """What a previous run left: its links go (pods that still exist get them back when they start again)."""
        with self.lock:
            for uid in {e["uid"] for e in self.owned.values()}:
                self._release(uid)
            self._save()

    def release(self, uid):
        with self.lock:
            self._release(uid)
            self._save()
        shutil.rmtree(self.pod_dir(uid), ignore_errors=True)

    def _release(self, uid):
        for target, e in sorted(self.owned.items(), reverse=True):
            if e["uid"] != uid:
                continue
            if os.path.islink(target):
                os.unlink(target)
            for parent in reversed(e.get("parents") or []):
                try:
                    os.rmdir(parent)
                except OSError:
                    pass
            del self.owned[target]

    # ---------------------------------------------------------------- set-up

    def setup(self, pod, lookup, live_uids, events):
        """Make every volume and every mountPath; return nothing, raise PodProblem."""
        uid = pod["metadata"]["uid"]
        ns = pod["metadata"]["namespace"]
        psc = pod["spec"].get("securityContext") or {}
        fs_group = psc.get("fsGroup")
        sources, in_place = {}, {}
        for v in pod["spec"].get("volumes") or []:
            name = v["name"]
            if "hostPath" in v:
                hp = v["hostPath"]
                _check_hostpath(name, hp["path"], hp.get("type"))
                sources[name] = hp["path"]
                in_place[name] = hp["path"]
            elif "emptyDir" in v:
                d = os.path.join(self.pod_dir(uid), "volumes", "kubernetes.io~empty-dir", name)
                os.makedirs(d, exist_ok=True)
                _own(d, fs_group, 0o777, True)
                sources[name] = d
            elif "configMap" in v or "secret" in v:
                kind, src = ("configmaps", v["configMap"]) if "configMap" in v else ("secrets", v["secret"])
                obj_name = src.get("name") if kind == "configmaps" else src.get("secretName")
                obj = lookup(kind, ns, obj_name)
                plugin = "kubernetes.io~configmap" if kind == "configmaps" else "kubernetes.io~secret"
                d = os.path.join(self.pod_dir(uid), "volumes", plugin, name)
                if obj is None and not src.get("optional"):
                    raise _failed_mount(name, '%s "%s" not found' % ("configmap" if kind == "configmaps" else "secret", obj_name))
                data = {}
                if obj is not None:
                    raw = obj.get("data") or {}
                    if kind == "secrets":
                        data = {k: base64.b64decode(x) for k, x in raw.items()}
                    else:
                        data = {k: x.encode() for k, x in raw.items()}
                        data.update({k: base64.b64decode(x) for k, x in (obj.get("binaryData") or {}).items()})
                _write_keys(name, d, data, src, fs_group)
                sources[name] = d
            else:
                kind = next((k for k in v if k != "name"), "?")
                raise _failed_mount(name, "volume type %s is not supported by the node-agent double (hostPath, emptyDir, "
                                    "configMap, secret are)" % kind, pod_failed=True)
        wanted = {}
        for c in pod["spec"].get("containers") or []:
            for m in c.get("volumeMounts") or []:
                if m["name"] not in sources:
                    raise _failed_mount(m["name"], "no volume of that name in the pod", pod_failed=True)
                sub = m.get("subPath") or ""
                target = os.path.normpath(m["mountPath"])
                src = os.path.join(sources[m["name"]], sub) if sub else sources[m["name"]]
                if not sub and in_place.get(m["name"]) and os.path.normpath(in_place[m["name"]]) == target:
                    continue  # hostPath at its own path: nothing to do
                if sub and not os.path.lexists(src):
                    os.makedirs(src, exist_ok=True)
                if target in wanted and wanted[target] != src:
                    raise _failed_mount(m["name"], "containers of this pod mount different things at %s; without a mount "
                                        "namespace one node path holds one" % target, pod_failed=True)
                wanted[target] = src
        with self.lock:
            for target, src in sorted(wanted.items()):
                self._link(pod, m_name_for(pod, target), target, src, live_uids, events)
            self._save()

    def _link(self, pod, vol, target, src, live_uids, events):
        uid = pod["metadata"]["uid"]
        e = self.owned.get(target)
        if e is not None and e["uid"] != uid and e["uid"] in live_uids:
            raise PodProblem("ContainerCreating", 'MountVolume.SetUp failed for volume "%s" : %s is held by pod %s on this node '
                             '(no mount namespace: one node path, one pod)' % (vol, target, e["pod"]), event_reason="FailedMount")
        if e is not None:
            if os.path.islink(target):
                os.unlink(target)
            del self.owned[target]
        if os.path.lexists(target):
            st = os.lstat(target)
            if stat.S_ISDIR(st.st_mode) and st.st_mode & 0o1777 == 0o1777 and "/kubernetes.io~empty-dir/" in src:
                events.append(("Normal", "SharedNodeFolder", "emptyDir %s uses the node's own world-writable %s as it is "
                               "(no mount namespace): shared with the node, not emptied" % (vol, target)))
                return
            raise PodProblem("NodePathConflict", 'volume "%s": mountPath %s already exists on the node and is not the node-agent '
                             "double's: without a mount namespace it would hide or overwrite it" % (vol, target),
                             event_reason="FailedMount", pod_failed=True)
        parents, p = [], os.path.dirname(target)
        missing = []
        while p and not os.path.exists(p):
            missing.append(p)
            p = os.path.dirname(p)
        for d in reversed(missing):
            os.mkdir(d, 0o755)
            parents.append(d)
        self.owned[target] = {"uid": uid, "pod": "%s/%s" % (pod["metadata"]["namespace"], pod["metadata"]["name"]),
                              "source": src, "parents": parents}
        os.symlink(src, target)


def m_name_for(pod, target):
    for c in pod["spec"].get("containers") or []:
        for m in c.get("volumeMounts") or []:
            if os.path.normpath(m["mountPath"]) == target:
                return m["name"]
    return "?"
