"""site.yml's preflight asks the release page whether k3s_version exists: a
well-formed version that was never released fails before anything changes,
naming the variable. The release page is a loopback HTTP server (a thread of
this test) laid out as GitHub's download URLs; the inventory is
inventories/local with the download method."""

import functools
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bad_input"))
import runner  # noqa: E402

PINNED = "v1.33.5+k3s1"


@pytest.fixture
def release_page(tmp_path):
    root = tmp_path / "releases"
    (root / PINNED).mkdir(parents=True)
    (root / PINNED / "sha256sum-amd64.txt").write_text("0" * 64 + "  k3s\n")
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield "http://127.0.0.1:%d" % server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def preflight(tmp_path, url, version):
    case = {"playbook": "playbooks/site.yml", "tags": "preflight",
            "patch": {"group_vars/all/main.yml": {"k3s_install_method": "download", "k3s_release_url": url,
                                                  "k3s_version": version}}}
    return runner.run_case(case, tmp_path / "inv")


def test_an_unreleased_k3s_version_fails_at_preflight(tmp_path, release_page):
    rc, out = preflight(tmp_path, release_page, "v1.33.99+k3s1")
    assert rc != 0
    assert runner.collapse(
        "k3s_version 'v1.33.99+k3s1': no such k3s release (%s/v1.33.99%%2Bk3s1/sha256sum-amd64.txt answers 404)"
        % release_page) in runner.collapse(out), out[-3000:]
    assert "changed=0" in out and "changed=1" not in out


def test_the_pinned_version_passes(tmp_path, release_page):
    rc, out = preflight(tmp_path, release_page, PINNED)
    assert rc == 0, out[-3000:]
    assert "Check k3s_version is a published release" in out
