"""disk_needs: which mount holds what, and whether it has room."""

from ansible_collections.homelab.gpu_stack.plugins.filter.host_checks import disk_needs, disk_shortfall

GIB = 1024 ** 3
MOUNTS = [
    {"mount": "/", "size_available": 50 * GIB},
    {"mount": "/srv/models", "size_available": 8 * GIB},
]


def model(name, path, size, node="nuc"):
    """A stack model entry: its spec and the cache size the stack model resolved."""
    return {"name": name, "node": node, "cache_gib": size,
            "spec": {"name": name, "node": node, "cache": {"kind": "hostPath", "path": path, "size_gib": None}}}


def test_caches_count_on_the_mount_that_holds_them():
    needs = disk_needs(MOUNTS, [model("a", "/srv/models/a", 6), model("b", "/srv/models", 5),
                                model("c", "/var/lib/x", 1), model("d", "/srv/models", 99, node="other")],
                       "nuc", 10)
    by_mount = dict((n["mount"], n) for n in needs)
    assert by_mount["/srv/models"]["need_gib"] == 11.0
    assert by_mount["/srv/models"]["ok"] is False
    assert by_mount["/"]["need_gib"] == 11.0
    assert by_mount["/"]["ok"] is True


def test_shortfall_message_names_the_variables():
    need = disk_needs(MOUNTS, [model("a", "/srv/models", 9)], "nuc", 1)[1]
    assert disk_shortfall(need, "nuc") == (
        "nuc: 8.0 GiB free on /srv/models, 9.0 GiB needed for a cache /srv/models "
        "(preflight_min_free_gib, gpu_stack_models[].cache.size_gib)")
