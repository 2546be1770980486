"""Make ansible_collections.homelab.gpu_stack and serving_checks importable."""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
COLLECTIONS = HERE.parents[1] / ".ansible" / "collections"
for path in (COLLECTIONS, HERE):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
