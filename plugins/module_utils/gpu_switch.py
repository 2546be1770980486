# -*- coding: utf-8 -*-
# Copyright: homelab.gpu_stack contributors
# Apache License 2.0 (see LICENSE)
"""Switching the GPU mode: which models leave and arrive, in what order, and how.

The one switch path: the ``gpu_mode_switch`` module (gpu_mode.yml), the
``gpu-mode`` command and tests/gpu/mode_switch.py all call ``switch``; only
their I/O differs (the Kubernetes API and its pod proxy, or local processes).

A model leaves or arrives by its spec's ``switch``:

* ``scale``: its Deployment goes to 0 / 1 replicas (a cold start on arrival).
* ``sleep``: its pod stays; vLLM's sleep mode (``--enable-sleep-mode`` with
  ``VLLM_SERVER_DEV_MODE=1``) puts it to sleep and wakes it. Level 1 offloads
  the weights to host memory; level 2 discards them, so the wake reloads them
  from disk: ``wake_up?tags=weights``, ``collective_rpc reload_weights``,
  ``wake_up?tags=kv_cache`` (a bare ``/wake_up`` after level 2 answers with
  zeroed weights and no error, measured with vLLM 0.26.0 on the H200).

The order (issue 14): a sleeping vLLM queues chats silently, so the gateway
stops routing to a leaving model (``io.set_routed(False)``, the pod's
readiness gate) before it sleeps, and routes to an arriving one only after it
answered a chat. Everything leaves before anything arrives, and the card's
memory is read (``io.card_used_bytes``) until what is left is no more than
the plan's residuals of the models asleep on it. A wake that fails falls back
to a cold start of that model, said in the report.

Pure logic: every effect goes through ``io`` (see ``SwitchIO``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

AWAKE, ASLEEP, STOPPED = "awake", "asleep", "stopped"
# What nvidia-smi shows beside the plan's residuals once everything left:
# the driver's own use of a card with no process on it.
CARD_SLACK_BYTES = 256 * 2 ** 20


class SwitchError(RuntimeError):
    """A switch that could not complete; the message says which model and step."""


class SwitchIO(object):
    """What ``switch`` needs from the world (implemented by the module, the command, the GPU test).

    state(m)            AWAKE, ASLEEP or STOPPED (a Deployment at 0 or without a ready pod: STOPPED)
    set_routed(m, on)   the gateway may (not) route to m: the pod's readiness gate; returns once
                        the Service's endpoints say so; True when it changed something
    vllm(m, method, path, body=None)
                        an HTTP call to m's vLLM server (the pod, never through an Ingress);
                        returns the decoded JSON (or None), raises on an HTTP error
    scale(m, replicas)  set the Deployment's replicas and wait: pods gone (0) or ready (1)
    restart(m)          a cold start of m's pod (delete it; the ReplicaSet makes a new one) and wait ready
    chat(m)             one short chat straight to m's server; raises when it does not answer
    card_used_bytes(node)
                        memory in use on the node's card(s), read on the node; None where it cannot be read
    clock(), pause(s)   time
    say(msg)            a line for the person switching
    """


def runs_in_mode(spec, mode):
    """The one rule for a mode (stack_model reads it from here too): a model with no modes runs in every mode."""
    return not spec.get("modes") or mode in spec["modes"]


def plan_switch(models, mode):
    """One step per model of a stack model's ``models`` list: name, node, served_name, service,
    switch, level, residual_bytes and ``arrive`` (it runs in ``mode``); leaving models first."""
    out = []
    for m in models:
        spec = m["spec"]
        out.append({"name": m["name"], "node": m["node"], "served_name": spec["served_name"],
                    "service": (m.get("service") or {}).get("name") or m["name"],
                    "switch": m.get("switch") or "scale", "level": m.get("sleep_level") or 1,
                    "residual_bytes": m["plan"].get("sleep_residual_bytes") or 0,
                    "arrive": runs_in_mode(spec, mode)})
    return sorted(out, key=lambda step: step["arrive"])


def _wait(io, what, done, deadline, every=0.5):
    while True:
        value = done()
        if value:
            return value
        if io.clock() > deadline:
            raise SwitchError("timed out waiting until %s" % what)
        io.pause(every)


def _put_to_sleep(io, step, deadline):
    io.vllm(step, "POST", "/sleep?level=%d" % step["level"])
    _wait(io, "%s is asleep" % step["name"],
          lambda: (io.vllm(step, "GET", "/is_sleeping") or {}).get("is_sleeping"), deadline)


def _wake(io, step, deadline):
    if step["level"] == 2:
        # Level 2 dropped the weights: allocate them, load them from disk, then the KV cache.
        io.vllm(step, "POST", "/wake_up?tags=weights")
        io.vllm(step, "POST", "/collective_rpc", {"method": "reload_weights"})
        io.vllm(step, "POST", "/wake_up?tags=kv_cache")
    else:
        io.vllm(step, "POST", "/wake_up")
    _wait(io, "%s is awake" % step["name"],
          lambda: (io.vllm(step, "GET", "/is_sleeping") or {"is_sleeping": True}).get("is_sleeping") is False,
          deadline)
    io.chat(step)


def card_allowed(steps, slack_bytes=CARD_SLACK_BYTES):
    """{node: bytes the card may hold once the models left} (None: a model stays awake there);
    ``slack_bytes``: what an idle card shows (a desktop's display server on a gaming PC)."""
    out = {}
    for node in sorted(set(s["node"] for s in steps if not s["arrive"])):
        here = [s for s in steps if s["node"] == node]
        if any(s["arrive"] and s["before"] == AWAKE for s in here):
            out[node] = None
        else:
            asleep = [s for s in here if s["switch"] == "sleep" and s.get("now", s["before"]) != STOPPED]
            out[node] = slack_bytes + sum(s["residual_bytes"] for s in asleep)
    return out


PHASES = ("away", "card", "back")


def switch(models, mode, io, deadline_s=900.0, card_wait_s=120.0, phases=PHASES, slack_bytes=CARD_SLACK_BYTES):
    """Switch to ``mode``; returns {"steps", "events": [(t, name, what)], "fallbacks", "card_allowed",
    "changed", "seconds"}.

    ``models``: the stack model's models (each with spec, node, plan, switch, sleep_level).
    ``phases``: a subset of PHASES, for a caller that reads the card itself
    between "away" and "back" (gpu_mode.yml reads it on the node; "away"
    returns ``card_allowed``). ``card_wait_s``: how long the card may take to
    be free once the models left (a stopped pod's grace period). Raises
    SwitchError (naming the model and the step) when a model can be neither
    put away nor brought back, or the card holds more than the plan says.
    """
    t0 = io.clock()
    deadline = t0 + deadline_s
    steps = plan_switch(models, mode)
    events, fallbacks = [], []

    def event(name, what):
        events.append((round(io.clock() - t0, 3), name, what))

    for step in steps:
        step["before"] = io.state(step)
    if "away" in phases:
        # The gateway first, then the server.
        for step in (s for s in steps if not s["arrive"] and s["before"] == AWAKE):
            if io.set_routed(step, False):
                event(step["name"], "unrouted")
            if step["switch"] == "sleep":
                _put_to_sleep(io, step, deadline)
                step["now"] = ASLEEP
                event(step["name"], "asleep")
            else:
                io.scale(step, 0)
                step["now"] = STOPPED
                event(step["name"], "stopped")
        # A sleep model never started (a new Deployment at 0 replicas) starts
        # now, one at a time on a card nothing else is awake on, and sleeps:
        # its next arrival is a wake.
        for step in (s for s in steps if not s["arrive"] and s["before"] == STOPPED and s["switch"] == "sleep"):
            if any(s["node"] == step["node"] and s["arrive"] and s["before"] == AWAKE for s in steps):
                continue
            io.scale(step, 1)
            _put_to_sleep(io, step, deadline)
            step["now"] = ASLEEP
            event(step["name"], "started asleep")
    allowed = card_allowed(steps, slack_bytes)
    if "card" in phases:
        # The card really free: no more than the residuals of what sleeps on it.
        for node, limit in sorted(allowed.items()):
            if limit is None or io.card_used_bytes(node) is None:
                continue
            try:
                _wait(io, "the card on %s is free" % node, lambda: io.card_used_bytes(node) <= limit,
                      min(deadline, io.clock() + card_wait_s))
            except SwitchError:
                raise SwitchError("the card on %s still holds %.2f GiB after the models left; the plan allows %.2f GiB "
                                  "for the models asleep on it (a pod still Terminating? nvidia-smi shows the process)"
                                  % (node, io.card_used_bytes(node) / 2.0 ** 30, limit / 2.0 ** 30))
            event(node, "card free")
    if "back" in phases:
        # Wake or start, answer, then route.
        for step in (s for s in steps if s["arrive"]):
            if step["before"] == ASLEEP:
                try:
                    _wake(io, step, deadline)
                    event(step["name"], "awake")
                except Exception as exc:  # any failure of the wake: the cold start is the way back
                    io.say("%s: the wake failed (%s); starting it cold" % (step["name"], exc))
                    fallbacks.append(step["name"])
                    io.restart(step)
                    io.chat(step)
                    event(step["name"], "cold started")
            elif step["before"] == STOPPED:
                io.scale(step, 1)
                io.chat(step)
                event(step["name"], "started")
            if io.set_routed(step, True):
                event(step["name"], "routed")
    return {"mode": mode, "steps": steps, "events": events, "fallbacks": fallbacks, "card_allowed": allowed,
            "changed": bool(events), "seconds": round(io.clock() - t0, 3)}
