# Copyright: homelab.gpu_stack contributors
# Apache License 2.0 (see LICENSE)
"""The chat page's gate: Open WebUI answers a chat through the gateway, as a user would get one.

Pure logic; the HTTP request, the clock and the sleep are handed in, so the
unit tests drive it without a server. One attempt: sign in as the admin
(``/api/v1/auths/signin``), read the models Open WebUI got from the gateway
with its own key (``/api/models``), then ask the first expected model for a
chat (``/api/chat/completions``). A step that fails is retried until the
deadline (the pod may still be migrating its database); a wrong password is
not, since waiting cannot fix it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

PROMPT = "Reply with one short word."


class GateRefused(Exception):
    """An answer no wait can change (the admin's sign-in refused)."""


def _attempt(request, email, password, names):
    status, body = request("POST", "/api/v1/auths/signin", {"email": email, "password": password})
    if status in (400, 401, 403):
        raise GateRefused("sign-in as %s refused (HTTP %d): open_webui_admin_password is not the password "
                          "of the UI's admin account (it is set only when the account is first made)" % (email, status))
    if status != 200 or not isinstance(body, dict) or not body.get("token"):
        return "sign-in: HTTP %s" % status, None
    token = body["token"]
    status, body = request("GET", "/api/models", token=token)
    listed = [m.get("id") for m in (body.get("data") or [])] if status == 200 and isinstance(body, dict) else []
    missing = [n for n in names if n not in listed]
    if status != 200 or missing:
        return ("models: HTTP %s, the gateway's models %s not listed (listed: %s)"
                % (status, ", ".join(missing), ", ".join(str(x) for x in listed) or "none")), None
    status, body = request("POST", "/api/chat/completions", {
        "model": names[0], "stream": False, "messages": [{"role": "user", "content": PROMPT}]}, token=token)
    try:
        answer = body["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        answer = None
    if status != 200 or not answer:
        return "chat with %s: HTTP %s, no answer" % (names[0], status), None
    return None, {"models": listed, "model": names[0], "answer": answer}


def run_gate(request, email, password, names, deadline, clock, sleep, interval=3.0):
    """Retry an attempt until it passes or ``deadline`` seconds have gone; returns the module's result."""
    start = clock()
    attempts, last = 0, None
    while True:
        attempts += 1
        try:
            last, found = _attempt(request, email, password, names)
        except GateRefused as exc:
            return {"passed": False, "attempts": attempts, "elapsed_s": round(clock() - start, 2), "msg": str(exc)}
        except Exception as exc:  # connection errors: the pod or the Ingress not there yet
            last, found = "%s: %s" % (type(exc).__name__, str(exc)[:200]), None
        elapsed = round(clock() - start, 2)
        if found:
            return dict(found, passed=True, attempts=attempts, elapsed_s=elapsed,
                        msg="Open WebUI answered a chat with %s after %.1f s" % (found["model"], elapsed))
        if elapsed + interval > deadline:
            return {"passed": False, "attempts": attempts, "elapsed_s": elapsed,
                    "msg": "Open WebUI did not answer a chat within %s s; last: %s" % (deadline, last)}
        sleep(interval)
