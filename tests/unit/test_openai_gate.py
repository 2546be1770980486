"""The gate's polling loop, driven by a fake clock and injected HTTP clients.

The real servers (vLLM, LiteLLM) are exercised in tests/e2e/test_gateway_chain.py;
here each step's retry, deadline and error reporting is pinned down fast.
"""

from types import SimpleNamespace

import pytest

from ansible_collections.homelab.gpu_stack.plugins.module_utils import openai_gate
from ansible_collections.homelab.gpu_stack.plugins.module_utils.openai_gate import Gate, GateError


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        assert seconds >= 0
        self.now += seconds


class Raw:
    def __init__(self, content, headers):
        self.headers = headers
        self._content = content

    def parse(self):
        choice = SimpleNamespace(message=SimpleNamespace(content=self._content), finish_reason="length")
        return SimpleNamespace(choices=[choice], model="m")


class FakeServer:
    """Scripted answers: health statuses, model lists and chat contents, one per attempt."""

    def __init__(self, health=(200,), models=(["m"],), contents=("hi",), headers=None):
        self.health, self.models, self.contents = list(health), list(models), list(contents)
        self.headers = headers or {}
        self.chat_kwargs = []
        self.seen_keys = []

    @staticmethod
    def _next(items):
        item = items.pop(0) if len(items) > 1 else items[0]
        if isinstance(item, Exception):
            raise item
        return item

    def http_get(self, url, headers, timeout):
        self.seen_keys.append(headers.get("Authorization"))
        return self._next(self.health), "not ready"

    def client_factory(self, base_url, api_key, timeout):
        server = self

        class Completions:
            class with_raw_response:  # noqa: N801 - mirrors the openai client
                @staticmethod
                def create(**kwargs):
                    server.chat_kwargs.append(kwargs)
                    return Raw(server._next(server.contents), server.headers)

        return SimpleNamespace(
            models=SimpleNamespace(list=lambda: [SimpleNamespace(id=i) for i in server._next(server.models)]),
            chat=SimpleNamespace(completions=Completions))


def gate(server, clock, **kwargs):
    kwargs.setdefault("deadline", 10)
    kwargs.setdefault("poll_interval", 1)
    return Gate("http://h:8000/v1", kwargs.pop("names", ["m"]), http_get=server.http_get,
                client_factory=server.client_factory, clock=clock, sleep=clock.sleep, **kwargs)


def test_passes_after_health_turns_200_and_counts_attempts():
    clock = Clock()
    server = FakeServer(health=[ConnectionRefusedError(111, "Connection refused"), 503, 503, 200])
    result = gate(server, clock).run()
    assert result["passed"] is True
    assert result["steps"]["health"]["attempts"] == 4
    assert result["steps"]["health"]["latency_s"] == 3.0
    assert result["steps"]["models"]["attempts"] == 1
    assert result["chat"]["m"]["content"] == "hi"
    assert result["attempts"] == 6


def test_missing_name_fails_with_the_listing_not_a_bare_timeout():
    clock = Clock()
    server = FakeServer(models=[["other"]])
    with pytest.raises(GateError) as err:
        gate(server, clock, names=["m"], deadline=2.5).run()
    message = str(err.value)
    assert "step 'models'" in message
    assert "does not list m (it lists: other)" in message
    assert err.value.result["steps"]["health"]["passed"] is True
    assert err.value.result["steps"]["models"]["passed"] is False
    assert clock.now == 2.5  # never sleeps past the deadline


def test_health_failure_names_the_last_status():
    clock = Clock()
    with pytest.raises(GateError) as err:
        gate(FakeServer(health=[ConnectionRefusedError(111, "refused"), 503]), clock, deadline=2.5).run()
    assert "step 'health'" in str(err.value)
    assert "answered HTTP 503" in str(err.value)


def test_empty_content_is_retried_then_passes():
    clock = Clock()
    server = FakeServer(contents=["", "", "ok"])
    result = gate(server, clock).run()
    assert result["steps"]["chat"]["attempts"] == 3
    assert result["chat"]["m"]["content"] == "ok"


def test_expect_fallback_requires_a_fallback_header_and_sends_no_mock_param():
    clock = Clock()
    server = FakeServer(headers={"x-litellm-attempted-fallbacks": "0"})
    with pytest.raises(GateError) as err:
        gate(server, clock, expect_fallback=True, deadline=2).run()
    assert not server.chat_kwargs[0].get("extra_body")
    assert "was not served by a fallback" in str(err.value)

    served = FakeServer(headers={"x-litellm-attempted-fallbacks": "1",
                                 "x-litellm-model-api-base": "http://cpu:8080/v1"})
    result = gate(served, Clock(), expect_fallback=True).run()
    assert result["chat"]["m"]["headers"]["x-litellm-model-api-base"] == "http://cpu:8080/v1"


def test_key_is_sent_as_bearer_and_empty_health_path_skips_the_step():
    clock = Clock()
    server = FakeServer(health=[500])
    result = gate(server, clock, api_key="sk-abc", health_path="").run()
    assert result["steps"]["health"]["attempts"] == 1
    assert server.seen_keys == []
    server2 = FakeServer()
    gate(server2, Clock(), api_key="sk-abc").run()
    assert server2.seen_keys == ["Bearer sk-abc"]


@pytest.mark.parametrize("base,path,url", [
    ("http://h:8000/v1", "/health", "http://h:8000/health"),
    ("http://h:4000/v1/", "/health/liveliness", "http://h:4000/health/liveliness"),
    ("https://gw.example/", "health", "https://gw.example/health"),
    ("http://h/v1", "http://other:1/ready", "http://other:1/ready"),
])
def test_health_url(base, path, url):
    assert openai_gate.health_url(base, path) == url


@pytest.mark.parametrize("kwargs,word", [
    ({"names": []}, "names"), ({"deadline": 0}, "deadline"), ({"poll_interval": 0}, "poll_interval")])
def test_bad_options_name_the_option(kwargs, word):
    with pytest.raises(ValueError, match=word):
        gate(FakeServer(), Clock(), **kwargs)


class StatusError(Exception):
    def __init__(self, status_code, text):
        super().__init__(text)
        self.status_code = status_code


@pytest.mark.parametrize("status,attempts", [(401, 1), (400, 1), (503, 4)])
def test_refused_key_fails_at_once_while_a_503_is_waited_out(status, attempts):
    clock = Clock()
    server = FakeServer(contents=[StatusError(status, "Error code: %d" % status)])
    with pytest.raises(GateError) as err:
        gate(server, clock, deadline=2.5).run()
    assert err.value.result["steps"]["chat"]["attempts"] == attempts
    assert "Error code: %d" % status in str(err.value)
