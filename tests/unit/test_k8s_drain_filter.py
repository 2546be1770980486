# Copyright: homelab.gpu_stack contributors
# Apache License 2.0 (see LICENSE)
"""blocking_pdbs: the budgets named when upgrade.yml's drain is refused."""

from ansible_collections.homelab.gpu_stack.plugins.filter.k8s_drain import blocking_pdbs


def pod(name, labels, ns="llm", terminating=False):
    meta = {"name": name, "namespace": ns, "labels": labels}
    if terminating:
        meta["deletionTimestamp"] = "2026-12-03T00:00:00Z"
    return {"metadata": meta}


def pdb(name, selector, allowed, ns="llm", healthy=0, desired=1):
    return {"metadata": {"name": name, "namespace": ns}, "spec": {"selector": selector},
            "status": {"disruptionsAllowed": allowed, "currentHealthy": healthy, "desiredHealthy": desired, "expectedPods": 1}}


PODS = [pod("litellm-1", {"app.kubernetes.io/name": "litellm"}), pod("chat-1", {"app.kubernetes.io/name": "vllm", "tier": "gpu"})]


def test_names_the_budget_that_allows_nothing_and_the_pods_it_guards():
    out = blocking_pdbs([pdb("litellm", {"matchLabels": {"app.kubernetes.io/name": "litellm"}}, 0)], PODS)
    assert out == [{"namespace": "llm", "name": "litellm", "pods": ["litellm-1"], "current_healthy": 0,
                    "desired_healthy": 1, "expected_pods": 1}]


def test_a_budget_with_room_or_for_other_pods_is_not_named():
    assert blocking_pdbs([pdb("ok", {"matchLabels": {"app.kubernetes.io/name": "litellm"}}, 1),
                          pdb("elsewhere", {"matchLabels": {"app.kubernetes.io/name": "litellm"}}, 0, ns="other"),
                          pdb("nobody", {"matchLabels": {"app.kubernetes.io/name": "ollama"}}, 0)], PODS) == []


def test_match_expressions_and_the_null_selector():
    expr = {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["gpu"]},
                                 {"key": "gone", "operator": "DoesNotExist"}]}
    assert [b["pods"] for b in blocking_pdbs([pdb("gpu", expr, 0)], PODS)] == [["chat-1"]]
    assert blocking_pdbs([pdb("null", None, 0)], PODS) == []
    assert [b["pods"] for b in blocking_pdbs([pdb("all", {}, 0)], PODS)] == [["litellm-1", "chat-1"]]


def test_pods_already_terminating_are_not_what_blocks():
    pods = [pod("litellm-1", {"app.kubernetes.io/name": "litellm"}, terminating=True)]
    assert blocking_pdbs([pdb("litellm", {"matchLabels": {"app.kubernetes.io/name": "litellm"}}, 0)], pods) == []
