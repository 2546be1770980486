"""The agent: polls the pods bound to this node, runs one worker per pod, writes pod status and events."""

import copy
import os
import signal
import socket
import threading
import time
import traceback

from . import podspec
from .api import ApiError
from .images import MissingSetting
from .podspec import PodProblem, readiness_gate_messages
from .runtime import Launch, Runner, group_alive, now, proc_start_time
from .volumes import Mounts


def log(msg):
    print("node-agent-double: %s" % msg, flush=True)


def declared_ports(pod):
    out = set()
    for c in pod["spec"].get("containers") or []:
        for p in c.get("ports") or []:
            out.add((p.get("hostPort") or p["containerPort"], p.get("protocol", "TCP")))
    return out


def port_free(port, proto):
    kind = socket.SOCK_STREAM if proto == "TCP" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))
            return True
        except OSError:
            return False


def terminal(pod):
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


# The conditions a kubelet owns and writes (kubetypes.PodConditionByKubelet). Others, a readiness gate's
# above all, belong to whoever sets them through pods/status: the agent reads them, never writes them.
KUBELET_CONDITIONS = ("PodScheduled", "PodReadyToStartContainers", "Initialized", "ContainersReady", "Ready")


class PodWorker(threading.Thread):
    def __init__(self, agent, pod):
        md = pod["metadata"]
        super().__init__(daemon=True, name="pod-%s/%s" % (md["namespace"], md["name"]))
        self.agent, self.pod = agent, pod
        self.ns, self.name, self.uid = md["namespace"], md["name"], md["uid"]
        self.key = "%s/%s" % (self.ns, self.name)
        self.runners = {}
        self.waiting = {}          # container -> (reason, message) while it cannot start
        self.problem = None        # pod-level: a PodProblem that stops everything
        self.sandbox_ready = False
        self.mounted = False
        self.admitted = False
        self.start_time = (pod.get("status") or {}).get("startTime") or now()
        self.last_written = None
        self.posted = set()
        self.gone = threading.Event()   # the pod left the API (force delete): stop without finalising
        self.finished = False
        self.wake = threading.Event()

    # ------------------------------------------------------------------ events

    def event(self, etype, reason, message, container=None):
        key = (reason, message, container)
        if key in self.posted:
            return
        self.posted.add(key)
        t = now()
        inv = {"kind": "Pod", "apiVersion": "v1", "namespace": self.ns, "name": self.name, "uid": self.uid}
        if container:
            inv["fieldPath"] = "spec.containers{%s}" % container
        body = {"apiVersion": "v1", "kind": "Event", "metadata": {"generateName": self.name + ".", "namespace": self.ns},
                "involvedObject": inv, "reason": reason, "message": message, "type": etype,
                "source": {"component": "kubelet", "host": self.agent.node}, "firstTimestamp": t, "lastTimestamp": t, "count": 1,
                "reportingComponent": "kubelet", "reportingInstance": self.agent.node}
        try:
            self.agent.client.request("POST", "/api/v1/namespaces/%s/events" % self.ns, body)
        except (ApiError, OSError) as e:
            log("event for %s not posted (%s): %s %s" % (self.key, e, reason, message))

    # ------------------------------------------------------------------ set-up

    def _lookup(self):
        cache = {}

        def lookup(kind, ns, name):
            if (kind, name) not in cache:
                cache[(kind, name)] = self.agent.client.get_or_none("/api/v1/namespaces/%s/%s/%s" % (ns, kind, name))
            return cache[(kind, name)]
        return lookup

    def _record(self, p, container=None):
        if p.pod_failed:
            self.problem = p
        elif container:
            self.waiting[container] = (p.reason, p.message)
        else:
            for c in self.pod["spec"]["containers"]:
                if c["name"] not in self.runners:
                    self.waiting[c["name"]] = (p.reason, p.message)
        self.event("Warning", p.event_reason, p.message)

    def setup(self):
        """One pass of what a sync does before containers run; each step is retried until it passes."""
        pod = self.pod
        if not self.admitted:
            node = self.agent.node_obj or {}
            others = [w.pod for w in self.agent.workers_snapshot() if w is not self and w.admitted and not w.finished]
            podspec.admit_devices(pod, node, others)
            self.admitted = True
        if not self.sandbox_ready:
            podspec.admit_runtime_class(pod, lambda n: self.agent.client.get_or_none("/apis/node.k8s.io/v1/runtimeclasses/" + n),
                                        self.agent.containerd_config)
            mine = declared_ports(pod)
            for w in self.agent.workers_snapshot():
                if w is not self and w.sandbox_ready and not w.finished:
                    clash = sorted(mine & declared_ports(w.pod))
                    if clash:
                        raise PodProblem("CreateContainerError", "port %d/%s is already used by pod %s on this node: the node-agent "
                                         "double runs every pod in the node's network namespace" % (clash[0] + (w.key,)),
                                         event_reason="Failed")
            for port, proto in sorted(mine):
                if not port_free(port, proto):
                    raise PodProblem("CreateContainerError", "port %d/%s is already in use on this node (pods share the node's "
                                     "network namespace in the node-agent double)" % (port, proto), event_reason="Failed")
            self.sandbox_ready = True
        if not self.mounted:
            events = []
            live = {w.uid for w in self.agent.workers_snapshot() if not w.finished}
            self.agent.mounts.setup(pod, self._lookup(), live, events)
            for e in events:
                self.event(*e)
            self.mounted = True

    def start_containers(self):
        lookup = self._lookup()
        grace = pod_grace(self.pod)
        for c in self.pod["spec"]["containers"]:
            if c["name"] in self.runners:
                continue
            image = self.agent.images.lookup(c["image"])
            if image is None:
                msg = ('failed to pull and unpack image "%s": the node-agent double has no image map entry for it and no registry is '
                       "reachable" % c["image"])
                self.waiting[c["name"]] = ("ErrImagePull", msg)
                self.event("Warning", "Failed", "Failed to pull image \"%s\": %s" % (c["image"], msg), container=c["name"])
                continue
            try:
                launch = self._launch(c, image, lookup)
            except MissingSetting as e:
                self._record(podspec.config_error(str(e)), c["name"])
                continue
            except PodProblem as p:
                self._record(p, c["name"])
                continue
            self.waiting.pop(c["name"], None)
            stand_in = sorted((image.get("nodeEnv") or {}))
            self.event("Normal", "Pulled", 'Container image "%s" already present on machine (node program %s%s)'
                       % (c["image"], launch.exe, "; env added for the stand-in, not in the image: " + ", ".join(stand_in)
                          if stand_in else ""), container=c["name"])
            r = Runner(self, c, image, launch, self.pod["spec"].get("restartPolicy", "Always"), grace, self.agent.pid_dir)
            self.runners[c["name"]] = r
            r.start()

    def _launch(self, c, image, lookup):
        env = podspec.container_env(self.pod, c, lookup, self.agent.node_ip)
        argv = podspec.argv_for(c, image, env)
        uid, gid, groups, home = podspec.identity(self.pod, c, image)
        full = {}
        full.update({k: str(v) for k, v in (image.get("env") or {}).items()})
        full.update({k: str(v) for k, v in (image.get("nodeEnv") or {}).items()})
        full["PATH"] = image.get("path") or "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        full["HOSTNAME"] = self.pod["spec"].get("hostname") or self.name
        full.update(env)
        full.setdefault("HOME", home)
        exe = image.resolve(argv[0], full["PATH"])
        if exe is None:
            exe = argv[0]  # the exec fails, as runc's would: StartError
        cwd = c.get("workingDir") or image.get("workingDirOnNode") or "/"
        os.makedirs(cwd, mode=0o755, exist_ok=True)   # runc creates a missing cwd too
        log_path = os.path.join(self.agent.log_dir, "%s_%s_%s.log" % (self.ns, self.name, c["name"]))
        view = podspec.passwd_view(image, uid, self.agent.root)
        return Launch(argv, exe, full, uid, gid, groups, cwd, log_path, view)

    # ------------------------------------------------------------------ status

    def compose_status(self):
        old = self.pod.get("status") or {}
        statuses = []
        for c in self.pod["spec"]["containers"]:
            r = self.runners.get(c["name"])
            if r is not None:
                statuses.append(r.status())
                continue
            reason, message = self.waiting.get(c["name"], ("ContainerCreating", None))
            if self.problem is not None:
                reason, message = self.problem.reason, self.problem.message
            w = {"reason": reason}
            if message:
                w["message"] = message
            statuses.append({"name": c["name"], "image": c["image"], "imageID": "", "ready": False, "started": False,
                             "restartCount": 0, "state": {"waiting": w}, "lastState": {}})
        policy = self.pod["spec"].get("restartPolicy", "Always")
        st = {"hostIP": self.agent.node_ip, "hostIPs": [{"ip": self.agent.node_ip}], "startTime": self.start_time,
              "containerStatuses": statuses}
        if self.problem is not None:
            st.update(phase="Failed", reason=self.problem.reason, message=self.problem.message)
        else:
            st.update(podIP=self.agent.node_ip, podIPs=[{"ip": self.agent.node_ip}])
            states = [s["state"] for s in statuses]
            running = any("running" in s for s in states)
            restarting = policy != "Never" and any(r.restart_count and not r.done for r in self.runners.values())
            all_term = all("terminated" in s for s in states) and all(r.done for r in self.runners.values()) and \
                len(self.runners) == len(statuses)
            if all_term:
                st["phase"] = "Succeeded" if all(s["terminated"]["exitCode"] == 0 for s in states) else "Failed"
            elif running or restarting:
                st["phase"] = "Running"
            else:
                st["phase"] = "Pending"
        containers_ready = self.problem is None and bool(statuses) and all(s["ready"] for s in statuses)
        # Ready also needs every readiness gate's condition "True", read from the freshest pod the
        # agent has (its last status write's answer or a newer list); ContainersReady ignores the gates.
        gates = readiness_gate_messages(self.pod) if containers_ready else []
        want = {"PodScheduled": "True",
                "PodReadyToStartContainers": "True" if self.sandbox_ready and self.problem is None else "False",
                "Initialized": "True", "ContainersReady": "True" if containers_ready else "False",
                "Ready": "True" if containers_ready and not gates else "False"}
        conds = []
        prev = {c["type"]: c for c in old.get("conditions") or []}
        for ctype, status in want.items():
            p = prev.get(ctype)
            if ctype == "PodScheduled" and p:
                conds.append(p)
                continue
            # reason and message null when unset: the strategic merge patch must remove an old one.
            c = {"type": ctype, "status": status, "lastProbeTime": None, "reason": None, "message": None,
                 "lastTransitionTime": p["lastTransitionTime"] if p and p.get("status") == status and p.get("lastTransitionTime") else now()}
            if status == "False" and ctype in ("Ready", "ContainersReady"):
                if not containers_ready:
                    not_ready = [s["name"] for s in statuses if not s["ready"]]
                    c["reason"] = "ContainersNotReady"
                    c["message"] = "containers with unready status: [%s]" % " ".join(not_ready)
                else:
                    c["reason"] = "ReadinessGatesNotReady"
                    c["message"] = ", ".join(gates)
            conds.append(c)
        st["conditions"] = conds   # the kubelet's own only: a gate's condition is never written back
        return st

    def write_status(self):
        """PATCH pods/NAME/status as a strategic merge: conditions merge by type, so the patch carries only
        the kubelet's and cannot undo a gate condition someone set since the agent last read the pod (a merge
        patch would replace the whole list with the agent's possibly stale copy); containerStatuses are
        replaced whole, as their real schema (atomic) says."""
        st = self.compose_status()
        cmp = copy.deepcopy(st)
        if cmp == self.last_written:
            return
        try:
            out = self.agent.client.request("PATCH", "/api/v1/namespaces/%s/pods/%s/status" % (self.ns, self.name), {"status": st},
                                            ctype="application/strategic-merge-patch+json")
        except ApiError as e:
            if e.code == 404:
                self.gone.set()
                return
            raise
        self.last_written = cmp
        if out:
            self.pod = out

    # ------------------------------------------------------------------ lifecycle

    def update(self, pod):
        # A list taken before our own status write must not roll the pod back.
        new, cur = pod["metadata"].get("resourceVersion", ""), self.pod["metadata"].get("resourceVersion", "")
        if (int(new) > int(cur)) if new.isdigit() and cur.isdigit() else new != cur:
            self.pod = pod
            self.wake.set()

    def run(self):
        try:
            self._run()
        except Exception:
            log("worker %s crashed:\n%s" % (self.key, traceback.format_exc()))
            self.stop_all(2)
        finally:
            self.finished = True

    def _run(self):
        retry_at = 0.0
        released = False
        while not self.agent.stopping.is_set():
            if self.gone.is_set():
                self.stop_all(pod_grace(self.pod))
                self.agent.mounts.release(self.uid)
                return
            if self.pod["metadata"].get("deletionTimestamp"):
                self.terminate()
                return
            if self.problem is None and time.monotonic() >= retry_at:
                try:
                    self.setup()
                    self.start_containers()
                except PodProblem as p:
                    self._record(p)
                    retry_at = time.monotonic() + 2
                if self.waiting:
                    retry_at = time.monotonic() + 2
            try:
                self.write_status()
            except (ApiError, OSError) as e:
                log("status of %s not written: %s" % (self.key, e))
            if not released and (self.problem is not None or (self.runners and all(r.done for r in self.runners.values())
                                                              and len(self.runners) == len(self.pod["spec"]["containers"]))):
                # A pod that has ended gives its volumes back, as the kubelet tears them down.
                self.agent.mounts.release(self.uid)
                released = True
            self.wake.wait(0.25)
            self.wake.clear()

    def stop_all(self, grace_s):
        threads = [threading.Thread(target=r.stop, args=(grace_s,)) for r in self.runners.values()]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def terminate(self):
        md = self.pod["metadata"]
        grace = md.get("deletionGracePeriodSeconds")
        if grace is None:
            grace = pod_grace(self.pod)
        self.stop_all(grace)
        try:
            self.write_status()
        except (ApiError, OSError):
            pass
        self.agent.mounts.release(self.uid)
        try:
            self.agent.client.request("DELETE", "/api/v1/namespaces/%s/pods/%s" % (self.ns, self.name),
                                      {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0,
                                       "preconditions": {"uid": self.uid}})
        except ApiError as e:
            if e.code not in (404, 409):
                log("final delete of %s failed: %s" % (self.key, e))


def pod_grace(pod):
    g = pod["spec"].get("terminationGracePeriodSeconds")
    return 30 if g is None else g


class Agent:
    def __init__(self, node, client, images, root, containerd_config, node_address=None, poll_s=1.0, heartbeat_s=10.0):
        self.node, self.client, self.images, self.root = node, client, images, root
        self.containerd_config = containerd_config
        self.node_address, self.poll_s, self.heartbeat_s = node_address, poll_s, heartbeat_s
        self.node_ip = node_address or "127.0.0.1"
        self.node_obj = None
        self.log_dir = os.path.join(root, "logs")
        self.pid_dir = os.path.join(root, "pids")
        for d in (self.log_dir, self.pid_dir, os.path.join(root, "pods")):
            os.makedirs(d, exist_ok=True)
        os.chmod(os.path.join(root, "pods"), 0o755)
        self.mounts = Mounts(root)
        self.workers = {}
        self.wlock = threading.Lock()
        self.stopping = threading.Event()

    def workers_snapshot(self):
        with self.wlock:
            return list(self.workers.values())

    def check_root(self):
        # Volumes are symlinks into --root: a pod running as non-root must be able to walk down to them.
        p = self.root
        while p != "/":
            if not os.stat(p).st_mode & 0o001:
                log("warning: %s is not searchable by other users: pods running as non-root cannot reach their volumes" % p)
                return
            p = os.path.dirname(p)

    def kill_leftovers(self):
        """Processes a previous run of the agent started (it was killed): stop their groups, forget their links."""
        for name in os.listdir(self.pid_dir):
            path = os.path.join(self.pid_dir, name)
            try:
                pid_s, start = open(path).read().split()
                pid = int(pid_s)
                if proc_start_time(pid) == start and group_alive(pid):
                    log("stopping leftover process group %d (%s)" % (pid, name))
                    os.killpg(pid, signal.SIGKILL)
            except (ValueError, OSError):
                pass
            os.unlink(path)
        self.mounts.cleanup_all()

    def refresh_node(self):
        self.node_obj = self.client.get_or_none("/api/v1/nodes/" + self.node)
        if not self.node_address and self.node_obj:
            addrs = (self.node_obj.get("status") or {}).get("addresses") or []
            ip = next((a["address"] for a in addrs if a.get("type") == "InternalIP"), None)
            if ip:
                self.node_ip = ip

    def heartbeat(self):
        # Only for a Node someone registered: the kubelet's node status, not its registration.
        if self.node_obj is not None:
            self.client.request("POST", "/v1-k3s-double/nodes/" + self.node, {})

    def sync(self):
        pods = self.client.get("/api/v1/pods", {"fieldSelector": "spec.nodeName=" + self.node})["items"]
        seen = set()
        for pod in pods:
            uid = pod["metadata"]["uid"]
            seen.add(uid)
            with self.wlock:
                w = self.workers.get(uid)
            if w is not None:
                w.update(pod)
                continue
            if terminal(pod) and not pod["metadata"].get("deletionTimestamp"):
                continue   # finished before this agent started (or before a restart): nothing to run
            w = PodWorker(self, pod)
            with self.wlock:
                self.workers[uid] = w
            w.start()
        with self.wlock:
            for uid, w in list(self.workers.items()):
                if uid not in seen:
                    w.gone.set()
                    w.wake.set()
                if w.finished and not w.is_alive():
                    del self.workers[uid]

    def run(self):
        self.check_root()
        self.kill_leftovers()
        last_hb = 0.0
        while not self.stopping.is_set():
            try:
                self.refresh_node()
                if self.heartbeat_s and time.monotonic() - last_hb >= self.heartbeat_s:
                    self.heartbeat()
                    last_hb = time.monotonic()
                self.sync()
            except (ApiError, OSError) as e:
                log("sync failed: %s" % e)
            self.stopping.wait(self.poll_s)

    def shutdown(self):
        """The agent's own SIGTERM: every container of every pod stops (pods stay in the API, as on a dead node)."""
        self.stopping.set()
        threads = [threading.Thread(target=w.stop_all, args=(min(pod_grace(w.pod), 10),)) for w in self.workers_snapshot()]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.mounts.cleanup_all()
