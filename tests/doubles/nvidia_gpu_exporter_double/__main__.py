"""TEST DOUBLE of nvidia_gpu_exporter's /metrics over nvidia-smi (see __init__.py).

    python -m nvidia_gpu_exporter_double --web.listen-address=127.0.0.1:PORT \
        --nvidia-smi-command=PATH [--collect.compute-apps] [--web.telemetry-path=/metrics]
"""

import csv
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TELEMETRY = ("uuid", "index", "name", "driver_version", "memory.total", "memory.used",
             "utilization.gpu", "temperature.gpu", "power.draw")
APPS = ("gpu_uuid", "pid", "process_name", "used_memory")
MIB = 1048576
# (family, nvidia-smi field, multiplier, HELP), as the exporter derives them
# from the field name and its unit suffix.
GAUGES = (
    ("nvidia_smi_memory_total_bytes", "memory.total", MIB, "memory.total [MiB]"),
    ("nvidia_smi_memory_used_bytes", "memory.used", MIB, "memory.used [MiB]"),
    ("nvidia_smi_utilization_gpu_ratio", "utilization.gpu", 0.01, "utilization.gpu [%]"),
    ("nvidia_smi_temperature_gpu", "temperature.gpu", 1, "temperature.gpu"),
    ("nvidia_smi_power_draw_watts", "power.draw", 1, "power.draw [W]"),
)
OPTIONS = {"--web.listen-address": "127.0.0.1:9835", "--web.telemetry-path": "/metrics",
           "--nvidia-smi-command": "nvidia-smi"}


def parse(argv):
    opts, apps = dict(OPTIONS), False
    for arg in argv:
        name, _sep, value = arg.partition("=")
        if arg == "--collect.compute-apps":
            apps = True
        elif name in OPTIONS and value:
            opts[name] = value
        else:
            raise SystemExit("nvidia_gpu_exporter_double: unknown or valueless flag %r" % arg)
    return opts, apps


def _uuid(raw):
    value = raw.strip().lower()
    return value[4:] if value.startswith("gpu-") else value


def _query(command, flag, fields):
    proc = subprocess.run([command, "%s=%s" % (flag, ",".join(fields)), "--format=csv,noheader,nounits"],
                          capture_output=True, text=True, timeout=10, check=False)
    rows = [[c.strip() for c in row] for row in csv.reader(proc.stdout.splitlines()) if row]
    return proc.returncode, rows


def _labels(pairs):
    return ",".join('%s="%s"' % (k, str(v).replace("\\", "\\\\").replace('"', '\\"')) for k, v in pairs)


def _number(text):
    try:
        return float(text)
    except ValueError:  # [N/A], [Not Supported]: the exporter leaves the series out
        return None


def render(command, apps):
    out = []
    rc, rows = _query(command, "--query-gpu", TELEMETRY)
    ok = rc == 0 and all(len(r) == len(TELEMETRY) for r in rows)
    gpus = [dict(zip(TELEMETRY, r)) for r in rows] if ok else []
    out += ["# HELP nvidia_smi_gpu_info A metric with a constant '1' value labeled by gpu uuid, name, "
            "driver_version, index.", "# TYPE nvidia_smi_gpu_info gauge"]
    out += ["nvidia_smi_gpu_info{%s} 1" % _labels(
        [("driver_version", g["driver_version"]), ("index", g["index"]), ("name", g["name"]), ("uuid", _uuid(g["uuid"]))])
        for g in gpus]
    for family, field, factor, help_text in GAUGES:
        out += ["# HELP %s %s" % (family, help_text), "# TYPE %s gauge" % family]
        for gpu in gpus:
            value = _number(gpu[field])
            if value is not None:
                out.append('%s{uuid="%s"} %r' % (family, _uuid(gpu["uuid"]), value * factor))
    if apps:
        apps_rc, app_rows = _query(command, "--query-compute-apps", APPS)
        procs = [dict(zip(APPS, r)) for r in app_rows if len(r) == len(APPS)] if apps_rc == 0 else []
        for family, help_text, value in (
                ("nvidia_smi_compute_app_info", "A metric with a constant '1' value labeled by the identity "
                 "of a process with a compute context on a GPU.", lambda p: 1),
                ("nvidia_smi_compute_app_used_memory_bytes", "GPU memory used by the process.",
                 lambda p: float(p["used_memory"]) * MIB)):
            out += ["# HELP %s %s" % (family, help_text), "# TYPE %s gauge" % family]
            out += ["%s{%s} %r" % (family, _labels([("pid", p["pid"]), ("process_name", p["process_name"]),
                                                    ("uuid", _uuid(p["gpu_uuid"]))]), value(p)) for p in procs]
        out += ["# HELP nvidia_smi_compute_apps Number of processes with a compute context on the GPU.",
                "# TYPE nvidia_smi_compute_apps gauge"]
        out += ['nvidia_smi_compute_apps{uuid="%s"} %d'
                % (_uuid(g["uuid"]), sum(1 for p in procs if _uuid(p["gpu_uuid"]) == _uuid(g["uuid"])))
                for g in gpus]
    out += ["# HELP nvidia_smi_last_collect_success Whether the most recent collection succeeded (1) or not (0)",
            "# TYPE nvidia_smi_last_collect_success gauge", "nvidia_smi_last_collect_success %d" % ok,
            "# HELP nvidia_smi_command_exit_code Exit code of the most recent nvidia-smi run",
            "# TYPE nvidia_smi_command_exit_code gauge", "nvidia_smi_command_exit_code %d" % rc]
    return "\n".join(out) + "\n"


def main(argv):
    opts, apps = parse(argv)
    host, _sep, port = opts["--web.listen-address"].rpartition(":")
    # Collected in the background, as the exporter does since v1.x: a scrape
    # is answered from the last collection, never waits on nvidia-smi.
    latest = [render(opts["--nvidia-smi-command"], apps)]

    def collect():
        while True:
            time.sleep(1)
            latest[0] = render(opts["--nvidia-smi-command"], apps)

    threading.Thread(target=collect, daemon=True).start()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            if self.path.split("?")[0] != opts["--web.telemetry-path"]:
                self.send_error(404)
                return
            body = latest[0].encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    ThreadingHTTPServer((host or "127.0.0.1", int(port)), Handler).serve_forever()


if __name__ == "__main__":
    main(sys.argv[1:])
