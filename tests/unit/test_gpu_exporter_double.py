# Copyright: homelab.gpu_stack contributors
# Apache License 2.0 (see LICENSE)
"""tests/doubles/nvidia_gpu_exporter_double against the exporter it imitates.

The cards dashboard is proven against the double (tests/e2e/test_monitoring.py),
so the double must print what nvidia_gpu_exporter v1.14.0 prints: each family
under the exporter's name, with labels the exporter also puts on it
(tests/unit/fixtures/nvidia_gpu_exporter/v1.14.0-families.txt, read from the
exporter's golden scrape of a GeForce card), and nothing the exporter lacks.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "unit" / "fixtures"
DOUBLES = ROOT / "tests" / "doubles"


def documented():
    families = {}
    for line in (FIXTURES / "nvidia_gpu_exporter" / "v1.14.0-families.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, labels = line.split()
            families[name] = set() if labels == "-" else set(labels.split(","))
    return families


def scrape(apps=True, telemetry="rtx3060_telemetry.csv"):
    env = dict(os.environ, PYTHONPATH=str(DOUBLES),
               NVIDIA_SMI_DOUBLE_TELEMETRY=str(FIXTURES / "nvidia_smi" / telemetry),
               NVIDIA_SMI_DOUBLE_APPS=str(FIXTURES / "nvidia_smi" / "rtx3060_apps.csv"))
    code = ("import sys; from nvidia_gpu_exporter_double.__main__ import render; "
            "sys.stdout.write(render(sys.argv[1], sys.argv[2] == '1'))")
    out = subprocess.run([sys.executable, "-c", code, str(DOUBLES / "nvidia-smi-double"), "1" if apps else "0"],
                         env=env, capture_output=True, text=True, check=True, timeout=60)
    series = {}
    for line in out.stdout.splitlines():
        match = re.match(r"^([a-z_]+)(?:\{(.*)\})? (\S+)$", line)
        if match:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
            series.setdefault(match.group(1), []).append((labels, float(match.group(3))))
    return series


def test_the_double_prints_the_exporters_families_and_labels_only():
    families = documented()
    got = scrape()
    assert set(got) == set(families)
    for name, rows in got.items():
        for labels, _value in rows:
            assert set(labels) <= families[name], name


def test_units_and_uuid_as_the_exporter_writes_them():
    got = scrape()
    uuid = "5b1e7c2a-9d3f-4e8b-a1c6-0f2d9e7b3a41"  # lower case, no "GPU-"
    assert got["nvidia_smi_memory_total_bytes"] == [({"uuid": uuid}, 12288 * 1048576.0)]
    assert got["nvidia_smi_utilization_gpu_ratio"] == [({"uuid": uuid}, 0.37)]
    assert got["nvidia_smi_power_draw_watts"] == [({"uuid": uuid}, 118.42)]
    assert got["nvidia_smi_compute_app_used_memory_bytes"][0][0]["pid"] == "48213"
    assert got["nvidia_smi_last_collect_success"] == [({}, 1.0)]


def test_without_compute_apps_there_are_no_process_series():
    assert not [name for name in scrape(apps=False) if name.startswith("nvidia_smi_compute_app")]


def test_a_failing_nvidia_smi_is_reported_not_hidden():
    got = scrape(telemetry="no-such-fixture.csv")
    assert got["nvidia_smi_last_collect_success"] == [({}, 0.0)]
    assert got["nvidia_smi_command_exit_code"][0][1] != 0
    assert "nvidia_smi_memory_used_bytes" not in got
