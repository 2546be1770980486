"""The bad-input corpus: each broken inventory fails preflight with its exact
message, and nothing on any host changed before the failure."""

import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bad_input"))
import runner  # noqa: E402

CASES = runner.load_cases()


def test_corpus_is_large_enough_and_unique():
    ids = [c["id"] for c in CASES]
    assert len(ids) >= 100
    assert len(ids) == len(set(ids)), "duplicate case ids"


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_bad_input_fails_with_its_message(case, tmp_path):
    rc, out = runner.run_case(case, tmp_path)
    assert rc != 0, "preflight accepted a bad inventory (%s):\n%s" % (case["why"], out[-3000:])
    assert runner.collapse(case["expect"]) in runner.collapse(out), out[-4000:]
    if case.get("expect_also"):
        assert runner.collapse(case["expect_also"]) in runner.collapse(out), out[-4000:]
    changed = [int(n) for n in re.findall(r"changed=(\d+)", out)]
    assert changed and not any(changed), "a host changed before the failure"
