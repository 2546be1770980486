"""homelab.gpu_stack.litellm_keys's logic (module_utils/litellm_keys.py) and the
gateway_keys filter.

LiteLLM's key API needs its database, and its database layer (Prisma's query
engine) cannot be installed on these machines, so the API is played here by
KeyApi: an in-memory stand-in for the five calls the module makes, with the
request and answer shapes of LiteLLM 1.106.2's
proxy/management_endpoints/key_management_endpoints.py (/key/info answers
{"key", "info"} and 404 for an unknown key; /key/list pages of at most 100
with total_pages; /key/delete takes key_aliases; /key/generate answers
{"key"}). What only a real LiteLLM can show is in the integrator's notes.
"""

import itertools

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.homelab.gpu_stack.plugins.filter.gateway_keys import gateway_keys
from ansible_collections.homelab.gpu_stack.plugins.module_utils.litellm_keys import KeyApiError, sync

GROUPS = ["tiny-chat", "cpu", "cloud"]


class KeyApi:
    def __init__(self):
        self.keys, self.calls, self.counter = {}, [], itertools.count(1)

    def __call__(self, method, path, body=None, params=None):
        self.calls.append((method, path))
        if path == "/key/info":
            info = self.keys.get(params["key"])
            return (200, {"key": params["key"], "info": dict(info)}) if info else (404, {"detail": "not found"})
        if path == "/key/list":
            found = [dict(i, token="hash-" + k) for k, i in sorted(self.keys.items())
                     if params["search"] in (i.get("key_alias") or "")]
            size, page = params["size"], params["page"]
            return 200, {"keys": found[(page - 1) * size:page * size], "total_pages": max(1, -(-len(found) // size))}
        if path == "/key/generate":
            key = "sk-generated-%d" % next(self.counter)
            self.keys[key] = dict((f, body.get(f)) for f in ("key_alias", "models", "max_budget", "rpm_limit"))
            return 200, {"key": key}
        if path == "/key/update":
            self.keys[body["key"]].update((f, body[f]) for f in ("models", "max_budget", "rpm_limit"))
            return 200, {}
        if path == "/key/delete":
            for key in [k for k, i in self.keys.items() if i["key_alias"] in body["key_aliases"]]:
                del self.keys[key]
            return 200, {}
        return 404, {"detail": path}

    def writes(self):
        return [c for c in self.calls if c[0] == "POST"]


def consumers(*specs):
    return gateway_keys(list(specs), GROUPS)


def test_first_run_makes_one_key_per_consumer_and_a_second_run_changes_nothing():
    api = KeyApi()
    want = consumers({"name": "open-webui"}, {"name": "n8n", "models": ["tiny-chat"], "max_budget": 5, "rpm_limit": 30})
    first = sync(api, want)
    assert first["changed"] and first["created"] == ["open-webui", "n8n"]
    assert {i["key_alias"]: i["models"] for i in api.keys.values()} == {
        "gpu-stack/open-webui": GROUPS, "gpu-stack/n8n": ["tiny-chat"]}
    assert api.keys[first["keys"]["n8n"]]["max_budget"] == 5.0
    api.calls = []
    second = sync(api, want, current=first["keys"])
    assert second["changed"] is False and second["keys"] == first["keys"]
    assert api.writes() == []


def test_changed_limits_update_the_same_key():
    api = KeyApi()
    keys = sync(api, consumers({"name": "n8n", "models": ["tiny-chat"]}))["keys"]
    result = sync(api, consumers({"name": "n8n", "models": ["tiny-chat", "cpu"], "rpm_limit": 10}), current=keys)
    assert result["updated"] == ["n8n"] and result["keys"] == keys
    assert api.keys[keys["n8n"]]["models"] == ["tiny-chat", "cpu"] and api.keys[keys["n8n"]]["rpm_limit"] == 10


def test_a_lost_secret_replaces_the_key_and_the_old_one_stops_working():
    api = KeyApi()
    old = sync(api, consumers({"name": "n8n"}))["keys"]["n8n"]
    result = sync(api, consumers({"name": "n8n"}), current={})
    assert result["created"] == ["n8n"] and result["keys"]["n8n"] != old
    assert old not in api.keys and len(api.keys) == 1


def test_a_consumer_taken_off_the_list_is_revoked_and_unmanaged_keys_stay():
    api = KeyApi()
    api.keys["sk-by-hand"] = {"key_alias": "someone-else", "models": [], "max_budget": None, "rpm_limit": None}
    keys = sync(api, consumers({"name": "n8n"}, {"name": "scripts"}))["keys"]
    result = sync(api, consumers({"name": "n8n"}), current=keys)
    assert result["revoked"] == ["scripts"] and keys["scripts"] not in api.keys
    assert "sk-by-hand" in api.keys and keys["n8n"] in api.keys


def test_check_mode_says_what_would_change_and_writes_nothing():
    api = KeyApi()
    result = sync(api, consumers({"name": "n8n"}), check_mode=True)
    assert result["changed"] and result["created"] == ["n8n"] and api.writes() == [] and api.keys == {}


def test_more_than_one_page_of_keys_is_read_whole():
    api = KeyApi()
    for n in range(130):
        api.keys["sk-%d" % n] = {"key_alias": "gpu-stack/old-%d" % n, "models": [], "max_budget": None, "rpm_limit": None}
    result = sync(api, [])
    assert len(result["revoked"]) == 130 and api.keys == {}


def test_litellm_refusing_says_so():
    def refusing(method, path, body=None, params=None):
        return 400, {"error": {"message": "No connected db."}}
    with pytest.raises(KeyApiError, match=r"LiteLLM /key/list answered HTTP 400: .*No connected db"):
        sync(refusing, consumers({"name": "n8n"}))


@pytest.mark.parametrize("spec,message", [
    ({"name": "N8N"}, r"gpu_stack_gateway_keys\[0\]\.name: 'N8N' must be a lowercase DNS label"),
    ({"name": "n8n", "models": ["gpt-5"]}, r"gpu_stack_gateway_keys\[0\]\.models: gpt-5 is not a model group"),
    ({"name": "n8n", "models": []}, r"gpu_stack_gateway_keys\[0\]\.models: must be a non-empty list"),
    ({"name": "n8n", "max_budget": -1}, r"gpu_stack_gateway_keys\[0\]\.max_budget: -1 must be a number"),
    ({"name": "n8n", "rpm_limit": "30"}, r"gpu_stack_gateway_keys\[0\]\.rpm_limit: '30' must be a whole number"),
    ({"name": "n8n", "budget": 5}, r"gpu_stack_gateway_keys\[0\]: unknown field budget"),
])
def test_bad_consumers_are_refused_naming_the_field(spec, message):
    with pytest.raises(AnsibleFilterError, match=message):
        gateway_keys([spec], GROUPS)


def test_duplicate_consumers_are_refused():
    with pytest.raises(AnsibleFilterError, match=r"\[1\]\.name: 'n8n' is already used by gpu_stack_gateway_keys\[0\]"):
        gateway_keys([{"name": "n8n"}, {"name": "n8n"}], GROUPS)
