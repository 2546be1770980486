"""One container: its process (containerd's part), its probes and restarts (the kubelet's)."""

import datetime
import http.client
import os
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time

from .podspec import expand


def now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def proc_start_time(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def group_alive(pgid):
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def stop_group(proc, grace_s):
    """SIGTERM to the process group, SIGKILL after grace_s; returns the exit status."""
    pgid = proc.pid
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + max(grace_s, 0)
    while time.monotonic() < deadline and (proc.poll() is None or group_alive(pgid)):
        time.sleep(0.05)
    if proc.poll() is None or group_alive(pgid):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    rc = proc.wait()
    end = time.monotonic() + 5
    while group_alive(pgid) and time.monotonic() < end:
        time.sleep(0.05)
    return rc


def exit_code(rc):
    return 128 - rc if rc < 0 else rc


ENTER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "enter.py")


class Launch:
    """Everything needed to exec one container, computed by the pod worker.

    `view` is (passwd, group) files of the image when the node's own would
    disagree about this uid: the process then starts through enter.py.
    """

    def __init__(self, argv, exe, env, uid, gid, groups, cwd, log_path, view=None):
        self.argv, self.exe, self.env = argv, exe, env
        self.uid, self.gid, self.groups, self.cwd, self.log_path = uid, gid, groups, cwd, log_path
        self.view = view

    def popen(self, exe, args, **kw):
        common = dict(env=self.env, cwd=self.cwd, umask=0o022, start_new_session=True, stdin=subprocess.DEVNULL, close_fds=True)
        if self.view:
            cmd = [sys.executable, "-I", ENTER, self.view[0], self.view[1], str(self.uid), str(self.gid),
                   ",".join(map(str, self.groups)), "1" if "LC_CTYPE" in self.env else "0", exe, exe] + list(args)
            return subprocess.Popen(cmd, **common, **kw)
        # extra_groups always given: without it the child would keep the agent's (root's) supplementary groups.
        return subprocess.Popen([exe] + list(args), user=self.uid, group=self.gid, extra_groups=self.groups, **common, **kw)


class Probe(threading.Thread):
    def __init__(self, runner, kind, spec, incarnation):
        super().__init__(daemon=True, name="%s-%s" % (runner.name, kind))
        self.runner, self.kind, self.spec, self.incarnation = runner, kind, spec, incarnation
        self.period = spec.get("periodSeconds", 10)
        self.timeout = spec.get("timeoutSeconds", 1)
        self.failure_threshold = spec.get("failureThreshold", 3)
        self.success_threshold = spec.get("successThreshold", 1)
        self.initial_delay = spec.get("initialDelaySeconds", 0)

    def alive(self):
        return not self.runner.stopping.is_set() and self.runner.incarnation == self.incarnation and self.runner.proc is not None

    def run(self):
        r = self.runner
        if self.kind != "startup" and r.spec.get("startupProbe"):
            while self.alive() and not r.started:
                time.sleep(0.1)
        t0 = time.monotonic()
        if not self._sleep(self.initial_delay - (time.monotonic() - t0)):
            return
        ok_run = fail_run = 0
        while self.alive():
            ok, msg = self.check()
            if not self.alive():
                return
            if ok:
                ok_run, fail_run = ok_run + 1, 0
                if ok_run >= self.success_threshold:
                    r.probe_result(self.kind, True, msg)
                    if self.kind == "startup":
                        return
            else:
                ok_run, fail_run = 0, fail_run + 1
                r.event("Warning", "Unhealthy", "%s probe failed: %s" % (self.kind.capitalize(), msg))
                if fail_run >= self.failure_threshold:
                    r.probe_result(self.kind, False, msg)
                    if self.kind != "readiness":
                        return
            if not self._sleep(self.period):
                return

    def _sleep(self, s):
        end = time.monotonic() + max(s, 0)
        while time.monotonic() < end:
            if not self.alive():
                return False
            time.sleep(min(0.1, max(end - time.monotonic(), 0)))
        return self.alive()

    def _port(self, port):
        if isinstance(port, int) or str(port).isdigit():
            return int(port)
        for p in self.runner.spec.get("ports") or []:
            if p.get("name") == port:
                return p["containerPort"]
        raise ValueError("port %r is not a named port of the container" % port)

    def check(self):
        s = self.spec
        try:
            if "httpGet" in s:
                h = s["httpGet"]
                host = h.get("host") or self.runner.pod_ip()
                port = self._port(h.get("port"))
                if h.get("scheme", "HTTP").upper() == "HTTPS":
                    conn = http.client.HTTPSConnection(host, port, timeout=self.timeout, context=ssl._create_unverified_context())
                else:
                    conn = http.client.HTTPConnection(host, port, timeout=self.timeout)
                headers = {"User-Agent": "kube-probe/1.33"}
                headers.update({x["name"]: x["value"] for x in h.get("httpHeaders") or []})
                try:
                    conn.request("GET", h.get("path") or "/", headers=headers)
                    resp = conn.getresponse()
                    resp.read(10240)
                finally:
                    conn.close()
                if 200 <= resp.status < 400:
                    return True, "HTTP %d" % resp.status
                return False, "HTTP probe failed with statuscode: %d" % resp.status
            if "tcpSocket" in s:
                t = s["tcpSocket"]
                with socket.create_connection((t.get("host") or self.runner.pod_ip(), self._port(t["port"])), timeout=self.timeout):
                    return True, "connected"
            if "exec" in s:
                return self.runner.exec_probe(s["exec"].get("command") or [], self.timeout)
            return False, "probe handler %s is not supported by the node-agent double" % sorted(k for k in s if k.endswith(("Get", "Socket", "exec", "grpc")))
        except (OSError, ValueError, http.client.HTTPException) as e:
            return False, "%s" % (e,)


class Runner(threading.Thread):
    """Starts, watches, probes and restarts one container; the pod worker reads its status()."""

    BACKOFF_START_S, BACKOFF_MAX_S = 10, 300

    def __init__(self, worker, spec, image, launch, restart_policy, grace_s, pid_dir):
        super().__init__(daemon=True, name="%s/%s" % (worker.key, spec["name"]))
        self.worker, self.spec, self.image, self.launch = worker, spec, image, launch
        self.restart_policy, self.grace_s, self.pid_dir = restart_policy, grace_s, pid_dir
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.proc = None
        self.incarnation = 0
        self.restart_count = 0
        self.started = self.ready = False
        self.state = {"waiting": {"reason": "ContainerCreating"}}
        self.last_state = {}
        self.container_id = None
        self.kill_reason = None
        self.done = False
        self.backoff_s = 0
        self.next_start = 0.0
        self.started_at_mono = 0.0

    # ------------------------------------------------------------- reporting

    def event(self, etype, reason, message):
        self.worker.event(etype, reason, message, container=self.spec["name"])

    def pod_ip(self):
        return self.worker.agent.node_ip

    def status(self):
        with self.lock:
            st = {"name": self.spec["name"], "image": self.spec["image"], "imageID": self.image.image_id if self.container_id else "",
                  "ready": self.ready, "started": self.started, "restartCount": self.restart_count,
                  "state": dict(self.state), "lastState": dict(self.last_state)}
            if self.container_id:
                st["containerID"] = self.container_id
            return st

    def probe_result(self, kind, ok, msg):
        with self.lock:
            if kind == "startup" and ok:
                self.started = True
                if not self.spec.get("readinessProbe"):
                    self.ready = True
            elif kind == "readiness":
                self.ready = ok
            elif not ok:
                self.kill_reason = "Container %s failed %s probe, will be restarted" % (self.spec["name"], kind)

    # ------------------------------------------------------------- process

    def _pidfile(self):
        return os.path.join(self.pid_dir, "%s_%s.pid" % (self.worker.uid, self.spec["name"]))

    def _start(self):
        L = self.launch
        self.incarnation += 1
        self.container_id = "containerd://" + secrets.token_hex(32)
        try:
            log = open(L.log_path, "ab", buffering=0)
            try:
                if not (os.path.isfile(L.exe) and os.access(L.exe, os.X_OK)):
                    raise FileNotFoundError(2, "executable file not found in $PATH" if "/" not in L.argv[0] else "no such file or directory")
                proc = L.popen(L.exe, L.argv[1:], stdout=log, stderr=subprocess.STDOUT)
            finally:
                log.close()
        except OSError as e:
            # What runc says when the exec fails; the kubelet counts it as a crash of the container.
            msg = ('failed to create containerd task: failed to create shim task: OCI runtime create failed: runc create failed: '
                   'unable to start container process: exec: "%s": %s' % (L.argv[0], e.strerror or e))
            t = now()
            with self.lock:
                self.state = {"terminated": {"exitCode": 128, "reason": "StartError", "message": msg, "startedAt": t, "finishedAt": t,
                                             "containerID": self.container_id}}
            self.event("Warning", "Failed", "Error: " + msg)
            return False
        with open(self._pidfile(), "w") as f:
            f.write("%d %s\n" % (proc.pid, proc_start_time(proc.pid)))
        self.started_at_mono = time.monotonic()
        with self.lock:
            self.proc = proc
            self.state = {"running": {"startedAt": now()}}
            self.started = not self.spec.get("startupProbe")
            self.ready = self.started and not self.spec.get("readinessProbe")
            self.kill_reason = None
        self.event("Normal", "Started", "Started container %s" % self.spec["name"])
        for kind in ("startup", "readiness", "liveness"):
            if self.spec.get(kind + "Probe"):
                Probe(self, kind, self.spec[kind + "Probe"], self.incarnation).start()
        return True

    def _reap(self, rc, reason=None):
        t = now()
        code = exit_code(rc)
        with self.lock:
            started_at = (self.state.get("running") or {}).get("startedAt", t)
            self.state = {"terminated": {"exitCode": code, "reason": reason or ("Completed" if code == 0 else "Error"),
                                         "startedAt": started_at, "finishedAt": t, "containerID": self.container_id}}
            self.proc = None
            self.ready = False
        try:
            os.unlink(self._pidfile())
        except FileNotFoundError:
            pass
        return code

    def _should_restart(self, code):
        return self.restart_policy == "Always" or (self.restart_policy == "OnFailure" and code != 0)

    def _schedule_restart(self):
        # The kubelet's back-off: the first restart at once, then 10 s doubling to 5 min; reset after 10 min of running.
        if time.monotonic() - self.started_at_mono > 600:
            self.backoff_s = 0
        self.next_start = time.monotonic() + self.backoff_s
        self.backoff_s = min(self.BACKOFF_MAX_S, max(self.BACKOFF_START_S, self.backoff_s * 2))
        with self.lock:
            self.last_state = self.state
            self.restart_count += 1
            if self.next_start > time.monotonic():
                self.state = {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off %ds restarting failed container=%s pod=%s"
                                          % (int(self.next_start - time.monotonic()), self.spec["name"], self.worker.name)}}

    def run(self):
        while not self.stopping.is_set():
            if self.proc is None:
                if time.monotonic() < self.next_start:
                    time.sleep(0.1)
                    continue
                if not self._start():
                    if self._should_restart(128):
                        self._schedule_restart()
                        continue
                    self.done = True
                    return
                continue
            rc = self.proc.poll()
            if rc is None and self.kill_reason:
                self.event("Normal", "Killing", self.kill_reason)
                rc = stop_group(self.proc, self.grace_s)
            if rc is None:
                time.sleep(0.1)
                continue
            code = self._reap(rc)
            if self.stopping.is_set():
                break
            if self._should_restart(code):
                self._schedule_restart()
                continue
            self.done = True
            return

    def stop(self, grace_s):
        """Stop for good (pod deletion or agent shutdown): SIGTERM, then SIGKILL after grace_s."""
        self.stopping.set()
        proc = self.proc
        if proc is not None:
            self.event("Normal", "Killing", "Stopping container %s" % self.spec["name"])
            rc = stop_group(proc, grace_s)
            self._reap(rc)

    # ------------------------------------------------------------- exec probes

    def exec_probe(self, command, timeout):
        """An exec probe runs like `crictl exec`: the container's env, user and folder, with the image's PATH."""
        if not command:
            return False, "exec probe with no command"
        L = self.launch
        argv = [expand(a, L.env) for a in command]
        exe = self.image.resolve(argv[0], L.env.get("PATH", ""))
        if exe is None:
            return False, 'exec: "%s": executable file not found in $PATH' % argv[0]
        try:
            p = L.popen(exe, argv[1:], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        except OSError as e:
            return False, str(e)
        try:
            out, _err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.communicate()
            return False, "command %r timed out" % command
        if p.returncode == 0:
            return True, out.decode(errors="replace")[-300:]
        return False, "command %r exited with %d: %s" % (command, exit_code(p.returncode), out.decode(errors="replace")[-300:])
