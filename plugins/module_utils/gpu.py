# -*- coding: utf-8 -*-
# Copyright: homelab.gpu_stack contributors
# Apache License 2.0 (see LICENSE)
"""GPU facts from ``nvidia-smi --query-gpu``.

The parsing lives here, apart from the module, so that unit tests can feed it
recorded nvidia-smi outputs and the GPU-machine scripts (tests/gpu/) can run it
against a real card without Ansible.

nvidia-smi answers a broken driver or a machine without GPUs with prose on
stdout and a non-zero exit code; those are turned into messages that say what
to check, never into an empty or half-parsed list.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import csv

# Order matters: it is the column order of the CSV nvidia-smi prints.
QUERY_FIELDS = (
    ("index", "index", int),
    ("name", "name", str),
    ("uuid", "uuid", str),
    ("memory.total", "memory_total_mib", int),
    ("memory.used", "memory_used_mib", int),
    ("driver_version", "driver_version", str),
    ("compute_cap", "compute_capability", str),
)

# Values nvidia-smi prints where it has no reading; a fact built from one would
# mislead the VRAM planner, so they fail instead.
NO_VALUE = ("[N/A]", "N/A", "[Not Supported]", "[Unknown Error]", "[GPU is lost]",
            "[Insufficient Permissions]", "[Requested functionality has been deprecated]")


class GpuQueryError(Exception):
    """nvidia-smi ran but gave no usable facts; the message says why."""


def query_command(nvidia_smi):
    return [nvidia_smi,
            "--query-gpu=" + ",".join(field for field, _key, _conv in QUERY_FIELDS),
            "--format=csv,noheader,nounits"]


def diagnose(rc, stdout, stderr):
    """Return a clear message for a failed nvidia-smi run, or None if it succeeded."""
    text = "%s\n%s" % (stdout or "", stderr or "")
    flat = " ".join(text.split())
    if "couldn't communicate with the NVIDIA driver" in text:
        return ("nvidia-smi could not talk to the NVIDIA driver (exit %d): the kernel module is "
                "not loaded or does not match the user-space driver (a reboot after a driver "
                "install usually fixes it; check `lsmod | grep nvidia` and `dmesg`). "
                "nvidia-smi said: %s" % (rc, flat))
    if "No devices were found" in text:
        return ("nvidia-smi found no GPU (exit %d): the driver is loaded but sees no device "
                "(check the card is seated and not bound to vfio-pci, or passed through "
                "to this VM). nvidia-smi said: %s" % (rc, flat))
    if "is not a valid field to query" in text:
        return ("nvidia-smi rejected a query field (exit %d): the driver is too old for "
                "--query-gpu=compute_cap (it needs driver 510 or newer). nvidia-smi said: %s"
                % (rc, flat))
    if rc != 0:
        return "nvidia-smi failed with exit code %d: %s" % (rc, flat or "(no output)")
    return None


def parse_query_output(stdout):
    """Parse the CSV of ``query_command`` into one dict per GPU, sorted by index."""
    gpus = []
    lines = [line for line in (stdout or "").splitlines() if line.strip()]
    if not lines:
        raise GpuQueryError("nvidia-smi printed no GPU rows")
    for lineno, row in enumerate(csv.reader(lines, skipinitialspace=True), start=1):
        row = [cell.strip() for cell in row]
        if len(row) != len(QUERY_FIELDS):
            raise GpuQueryError("nvidia-smi output line %d has %d fields, expected %d (%s): %r"
                                % (lineno, len(row), len(QUERY_FIELDS),
                                   ",".join(f for f, _k, _c in QUERY_FIELDS), ",".join(row)))
        gpu = {}
        for (field, key, conv), value in zip(QUERY_FIELDS, row):
            if value in NO_VALUE or value == "":
                raise GpuQueryError("nvidia-smi reported %s=%r for the GPU on output line %d (%s): "
                                    "the driver gives no reading for it (a MIG instance, a lost "
                                    "GPU or missing permissions); GPU facts need every field"
                                    % (field, value, lineno, row[1] if len(row) > 1 else "?"))
            try:
                gpu[key] = conv(value)
            except ValueError:
                raise GpuQueryError("nvidia-smi output line %d: %s=%r is not a %s"
                                    % (lineno, field, value, conv.__name__))
        gpus.append(gpu)
    indexes = [g["index"] for g in gpus]
    if len(set(indexes)) != len(indexes):
        raise GpuQueryError("nvidia-smi listed a GPU index twice: %s" % indexes)
    return sorted(gpus, key=lambda g: g["index"])


def summarize(gpus):
    """Totals over all GPUs, plus the inventory shape (gpu_stack_gpu) they match."""
    names = sorted({g["name"] for g in gpus})
    drivers = sorted({g["driver_version"] for g in gpus})
    summary = {
        "count": len(gpus),
        "memory_total_mib": sum(g["memory_total_mib"] for g in gpus),
        "memory_used_mib": sum(g["memory_used_mib"] for g in gpus),
        "names": names,
        "driver_version": drivers[0] if len(drivers) == 1 else None,
        # What the inventory's gpu_stack_gpu should say for this host; None for
        # mixed cards, which that one-shape variable cannot describe.
        "inventory_gpu": None,
    }
    if gpus and len(names) == 1 and len({g["memory_total_mib"] for g in gpus}) == 1:
        summary["inventory_gpu"] = {"model": names[0], "vram_mib": gpus[0]["memory_total_mib"],
                                    "count": len(gpus)}
    return summary


def gather(run_command, nvidia_smi):
    """Run nvidia-smi through ``run_command(argv) -> (rc, stdout, stderr)``.

    Returns ``(gpus, summary, raw_stdout)``; raises GpuQueryError with a message
    saying what to check when nvidia-smi fails or prints something unusable.
    """
    rc, stdout, stderr = run_command(query_command(nvidia_smi))
    problem = diagnose(rc, stdout, stderr)
    if problem:
        raise GpuQueryError(problem)
    gpus = parse_query_output(stdout)
    return gpus, summarize(gpus), stdout
