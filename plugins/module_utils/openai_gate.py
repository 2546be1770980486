# -*- coding: utf-8 -*-
# Copyright: homelab.gpu_stack contributors
# Apache License 2.0 (see LICENSE)
"""Gate on an OpenAI-compatible endpoint really serving (vLLM or LiteLLM).

Three steps, in order, sharing one deadline: the health path answers 2xx, the
models list holds every expected name, and a real chat completion through the
``openai`` client returns content for each name. Each step is retried every
``poll_interval`` until it passes or the deadline is spent; a failure reports
the step and the last error seen (a refused connection, a 503, a missing name),
never a bare "timed out".

The HTTP clients are injected (``http_get``, ``client_factory``) so the unit
tests can drive the loop with a fake clock; the module passes the real ones.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time

STEPS = ("health", "models", "chat")
# A refused key or a rejected request will not change by waiting: fail at once.
PERMANENT_STATUS = (400, 401, 403)
# LiteLLM names the backend that answered and the fallbacks tried in these.
BACKEND_HEADERS = ("x-litellm-model-api-base", "x-litellm-attempted-fallbacks",
                   "x-litellm-model-id", "x-litellm-model-group")


class GateError(Exception):
    """A gate step that failed until the deadline; ``result`` holds what was seen."""

    def __init__(self, message, result):
        super(GateError, self).__init__(message)
        self.result = result


def server_root(base_url):
    """The server root of an OpenAI base URL (``http://h:8000/v1`` -> ``http://h:8000``)."""
    url = base_url.rstrip("/")
    if url.endswith("/v1"):
        url = url[:-3]
    return url


def health_url(base_url, health_path):
    if health_path.startswith("http://") or health_path.startswith("https://"):
        return health_path
    return server_root(base_url) + "/" + health_path.lstrip("/")


def describe(exc):
    """One line naming what went wrong (type and message), for the last error."""
    text = str(exc).strip().splitlines()
    text = text[0] if text else ""
    name = type(exc).__name__
    cause = getattr(exc, "__cause__", None)
    if cause is not None and str(cause) and str(cause) not in text:
        text = "%s (%s: %s)" % (text, type(cause).__name__, str(cause).splitlines()[0])
    return "%s: %s" % (name, text) if text else name


def http_library():
    """The HTTP library the installed openai client is built on (httpx2, or httpx before it)."""
    try:
        import httpx2 as httpx
    except ImportError:
        import httpx
    return httpx


def http_transport(ca_path=None, ca_data=None, connect_address=None):
    """The HTTP transport of the collection's clients (the gate, litellm_keys).

    ``ca_path``/``ca_data``: trust only this CA (the collection's own), never
    the controller's store. ``connect_address``: open connections to this
    address whatever the URL's host resolves to, keeping the host for the
    Host header, SNI and the certificate check (curl's --resolve), so the
    gate reaches an Ingress by name without DNS or /etc/hosts.
    """
    import ssl

    httpx = http_library()
    verify = True
    if ca_path or ca_data:
        verify = ssl.create_default_context(cafile=ca_path or None, cadata=ca_data or None)

    class Transport(httpx.HTTPTransport):
        def handle_request(self, request):
            if connect_address:
                request.extensions = dict(request.extensions, sni_hostname=request.url.host)
                request.url = request.url.copy_with(host=connect_address)
            return super(Transport, self).handle_request(request)

    return Transport(verify=verify)


def http_client(ca_path=None, ca_data=None, connect_address=None):
    """One HTTP client for every step, as the openai client takes it (http_transport)."""
    import openai

    return openai.DefaultHttpxClient(transport=http_transport(ca_path, ca_data, connect_address))


def client_get(client):
    """The health probe over ``client``: GET returning (status, body start)."""
    def get(url, headers, timeout):
        response = client.get(url, headers=headers, timeout=timeout)
        return response.status_code, response.text[:200]
    return get


def openai_client_factory(client=None):
    def factory(base_url, api_key, timeout):
        from openai import OpenAI

        # max_retries=0: the gate does its own polling and must see every error.
        return OpenAI(base_url=base_url, api_key=api_key or "none", timeout=timeout, max_retries=0,
                      http_client=client)
    return factory


class Gate(object):
    def __init__(self, base_url, names, api_key=None, deadline=300.0, poll_interval=0.25,
                 health_path="/health", expect_fallback=False, request_timeout=30.0,
                 prompt="Say hello.", max_tokens=8, http_get=None, client_factory=None,
                 clock=None, sleep=None):
        if not names:
            raise ValueError("names: give at least one model name to check")
        if deadline <= 0:
            raise ValueError("deadline: must be positive, got %s" % deadline)
        if poll_interval <= 0:
            raise ValueError("poll_interval: must be positive, got %s" % poll_interval)
        self.base_url = base_url.rstrip("/")
        self.names = list(names)
        self.api_key = api_key
        self.deadline = float(deadline)
        self.poll_interval = float(poll_interval)
        self.health_path = health_path
        self.expect_fallback = expect_fallback
        self.request_timeout = float(request_timeout)
        self.prompt = prompt
        self.max_tokens = max_tokens
        if http_get is None or client_factory is None:
            client = http_client()
            http_get = http_get or client_get(client)
            client_factory = client_factory or openai_client_factory(client)
        self.http_get = http_get
        self.client_factory = client_factory
        self.clock = clock or time.monotonic
        self.sleep = sleep or time.sleep

    def _headers(self):
        return {"Authorization": "Bearer %s" % self.api_key} if self.api_key else {}

    def _timeout(self, end):
        return max(0.1, min(self.request_timeout, end - self.clock()))

    def check_health(self, end):
        if not self.health_path:
            return {"skipped": True}
        url = health_url(self.base_url, self.health_path)
        status, body = self.http_get(url, self._headers(), self._timeout(end))
        if not 200 <= status < 300:
            raise RuntimeError("%s answered HTTP %s: %s" % (url, status, body.strip()[:120]))
        return {"url": url, "status": status}

    def check_models(self, end):
        client = self.client_factory(self.base_url, self.api_key, self._timeout(end))
        listed = sorted(m.id for m in client.models.list())
        missing = [n for n in self.names if n not in listed]
        if missing:
            raise RuntimeError("%s/models does not list %s (it lists: %s)"
                               % (self.base_url, ", ".join(missing), ", ".join(listed) or "nothing"))
        return {"listed": listed}

    def check_chat(self, end):
        client = self.client_factory(self.base_url, self.api_key, self._timeout(end))
        answers = {}
        for name in self.names:
            started = self.clock()
            raw = client.chat.completions.with_raw_response.create(
                model=name, messages=[{"role": "user", "content": self.prompt}],
                max_tokens=self.max_tokens)
            completion = raw.parse()
            content = completion.choices[0].message.content if completion.choices else None
            if not content:
                raise RuntimeError("chat completion for %s returned no content (finish_reason %s)"
                                   % (name, completion.choices[0].finish_reason
                                      if completion.choices else "none"))
            headers = dict((h, raw.headers.get(h)) for h in BACKEND_HEADERS if raw.headers.get(h))
            if self.expect_fallback and int(headers.get("x-litellm-attempted-fallbacks") or 0) < 1:
                raise RuntimeError("chat completion for %s was not served by a fallback (headers: %s); "
                                   "is this a LiteLLM gateway with router_settings.fallbacks for it?"
                                   % (name, headers))
            answers[name] = {"content": content, "model": completion.model,
                             "latency_s": round(self.clock() - started, 4), "headers": headers}
        return {"answers": answers}

    def run(self):
        """Run the steps; return the result dict or raise GateError."""
        start = self.clock()
        end = start + self.deadline
        result = {"passed": False, "base_url": self.base_url, "steps": {}, "models": [],
                  "chat": {}, "attempts": 0, "elapsed_s": 0.0, "last_error": None}
        checks = {"health": self.check_health, "models": self.check_models, "chat": self.check_chat}
        for step in STEPS:
            step_start = self.clock()
            attempts = 0
            permanent = False
            while True:
                attempts += 1
                try:
                    out = checks[step](end)
                    break
                except Exception as exc:  # retried until the deadline unless permanent
                    result["last_error"] = "%s: %s" % (step, describe(exc))
                    permanent = getattr(exc, "status_code", None) in PERMANENT_STATUS
                now = self.clock()
                if now >= end or permanent:
                    result["steps"][step] = {"passed": False, "attempts": attempts,
                                             "latency_s": round(now - step_start, 4)}
                    result["attempts"] += attempts
                    result["elapsed_s"] = round(now - start, 4)
                    raise GateError(
                        "%s is not serving %s after %.1fs: step '%s' %s after %d "
                        "attempt(s); last error: %s"
                        % (self.base_url, ", ".join(self.names), now - start, step,
                           "refused (HTTP status that waiting cannot fix)" if permanent
                           else "still failing", attempts, result["last_error"]), result)
                self.sleep(min(self.poll_interval, end - now))
            result["steps"][step] = {"passed": True, "attempts": attempts,
                                     "latency_s": round(self.clock() - step_start, 4)}
            result["attempts"] += attempts
            if step == "models":
                result["models"] = out["listed"]
            elif step == "chat":
                result["chat"] = out["answers"]
        result["passed"] = True
        result["elapsed_s"] = round(self.clock() - start, 4)
        return result
