"""Make ansible_collections.homelab.gpu_stack importable from the checkout."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COLLECTIONS = ROOT / ".ansible" / "collections"
if not (COLLECTIONS / "ansible_collections" / "homelab" / "gpu_stack").exists():
    raise RuntimeError("run scripts/bootstrap.sh first: it links the checkout into %s" % COLLECTIONS)
if str(COLLECTIONS) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS))

# tests/support holds helpers shared by the suites (playbook.run_playbook, ...).
if str(ROOT / "tests" / "support") not in sys.path:
    sys.path.insert(0, str(ROOT / "tests" / "support"))


@pytest.fixture(scope="module")
def kube_api(tmp_path_factory):
    """The Kubernetes API double (test_kube_api_double.Double) for one test module,
    stopped by PID whatever the outcome."""
    from test_kube_api_double import Double

    double = Double(tmp_path_factory.mktemp("kube-api"))
    double.start()
    yield double
    double.stop()
