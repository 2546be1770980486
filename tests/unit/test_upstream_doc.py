"""docs/upstream.md's pins table is the role defaults: a pin that changes
without its upstream contracts re-read (and the table updated) fails here."""

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "upstream.md"
# Every version the cluster half depends on upstream for; a new pin joins here and in the doc.
PINS = {"k3s_version", "nvidia_toolkit_version", "gpu_addons_device_plugin_chart_version",
        "gpu_addons_cert_manager_chart_version", "vllm_image", "litellm_image",
        "cpu_tier_images.llama_cpp", "cpu_tier_images.ollama"}


def pin_rows(text):
    section = text.split("## Pins", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        m = re.match(r"^\| `([a-z0-9_.]+)` \| `([^`]+)` \| (\S+) \|$", line.strip())
        if m:
            rows[m.group(1)] = (m.group(2), m.group(3))
    return rows


def test_every_pin_is_in_the_table_with_the_default_it_was_read_for():
    rows = pin_rows(DOC.read_text())
    assert set(rows) == PINS
    for var, (path, version) in rows.items():
        value = yaml.safe_load((ROOT / path).read_text())
        for key in var.split("."):
            value = value.get(key)
        assert str(value) == version, (
            "%s is %r in %s but docs/upstream.md was read for %r: re-read the upstream files of its "
            "contracts and update the table" % (var, value, path, version))


def test_the_table_parser_sees_a_stale_pin():
    text = DOC.read_text().replace("| v1.33.5+k3s1 |", "| v1.32.0+k3s1 |", 1)
    assert pin_rows(text)["k3s_version"][1] == "v1.32.0+k3s1"
