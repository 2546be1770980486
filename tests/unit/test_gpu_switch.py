"""The switch path (plugins/module_utils/gpu_switch.py) against a recorded I/O:
the order the issue asks (unroute before sleep, all away before any arrival,
the card read until free, answer before route), both methods, level 2's
reload sequence, and the cold start when a wake fails."""

import pytest

from ansible_collections.homelab.gpu_stack.plugins.module_utils import gpu_switch as gs

GIB = 2 ** 30


def model(name, modes, switch="sleep", level=1, residual=GIB):
    return {"name": name, "node": "nuc", "spec": {"served_name": name + "-served", "modes": modes},
            "switch": switch, "sleep_level": level if switch == "sleep" else None,
            "plan": {"sleep_residual_bytes": residual} if switch == "sleep" else {}}


class FakeIO(gs.SwitchIO):
    """A card and two servers as the GPU showed them: a sleeping server keeps its residual."""

    def __init__(self, states, awake_bytes=9 * GIB, wake_fails=(), slow_card=0):
        self.states = dict(states)
        self.calls = []
        self.t = 0.0
        self.awake_bytes = awake_bytes
        self.wake_fails = set(wake_fails)
        self.slow_card = slow_card
        self.residual = {}
        self.routed = {}

    def log(self, *what):
        self.calls.append(what)

    def state(self, m):
        return self.states[m["name"]]

    def set_routed(self, m, on):
        self.log("route" if on else "unroute", m["name"])
        changed = self.routed.get(m["name"]) != on
        self.routed[m["name"]] = on
        return changed

    def vllm(self, m, method, path, body=None):
        self.log(method, m["name"], path + (" " + body["method"] if body else ""))
        name = m["name"]
        self.residual[name] = m["residual_bytes"]
        if path.startswith("/sleep"):
            self.states[name] = gs.ASLEEP
        elif path.startswith("/wake_up") and "weights" not in path:
            if name in self.wake_fails:
                raise OSError("connection reset")
            self.states[name] = gs.AWAKE
        elif path == "/is_sleeping":
            return {"is_sleeping": self.states[name] == gs.ASLEEP}
        return None

    def scale(self, m, replicas):
        self.log("scale", m["name"], replicas)
        self.states[m["name"]] = gs.AWAKE if replicas else gs.STOPPED

    def restart(self, m):
        self.log("restart", m["name"])
        self.states[m["name"]] = gs.AWAKE

    def chat(self, m):
        assert self.states[m["name"]] == gs.AWAKE, "a chat to a %s server is queued silently" % self.states[m["name"]]
        self.log("chat", m["name"])

    def card_used_bytes(self, node):
        self.log("card")
        if self.slow_card:
            self.slow_card -= 1
            return 20 * GIB
        return sum(self.awake_bytes if s == gs.AWAKE else self.residual.get(n, GIB) if s == gs.ASLEEP else 0
                   for n, s in self.states.items())

    def clock(self):
        return self.t

    def pause(self, seconds):
        self.t += seconds

    def say(self, msg):
        self.log("say", msg)


PAIR = [model("llama", ["ml"]), model("r1", ["r1"])]


def test_sleep_switch_order():
    io = FakeIO({"llama": gs.AWAKE, "r1": gs.ASLEEP})
    report = gs.switch(PAIR, "r1", io)
    assert io.calls == [
        ("unroute", "llama"), ("POST", "llama", "/sleep?level=1"), ("GET", "llama", "/is_sleeping"),
        ("card",), ("card",),
        ("POST", "r1", "/wake_up"), ("GET", "r1", "/is_sleeping"), ("chat", "r1"), ("route", "r1")]
    assert [e[1:] for e in report["events"]] == [("llama", "unrouted"), ("llama", "asleep"), ("nuc", "card free"),
                                                 ("r1", "awake"), ("r1", "routed")]
    assert report["fallbacks"] == []


def test_level_2_reloads_the_weights_before_the_kv_cache():
    io = FakeIO({"llama": gs.ASLEEP, "r1": gs.AWAKE})
    gs.switch([model("llama", ["ml"], level=2), model("r1", ["r1"], level=2)], "ml", io)
    wake = [c for c in io.calls if c[0] == "POST" and c[1] == "llama"]
    assert wake == [("POST", "llama", "/wake_up?tags=weights"), ("POST", "llama", "/collective_rpc reload_weights"),
                    ("POST", "llama", "/wake_up?tags=kv_cache")]
    assert ("POST", "r1", "/sleep?level=2") in io.calls


def test_gaming_puts_everything_to_sleep_and_reads_the_card():
    io = FakeIO({"llama": gs.AWAKE, "r1": gs.ASLEEP})
    report = gs.switch(PAIR, "gaming", io)
    assert io.states == {"llama": gs.ASLEEP, "r1": gs.ASLEEP}
    assert ("nuc", "card free") == report["events"][-1][1:]
    assert not [c for c in io.calls if c[0] == "route"]


def test_a_card_that_stays_full_is_an_error_naming_it():
    io = FakeIO({"llama": gs.AWAKE, "r1": gs.ASLEEP}, slow_card=10 ** 6)
    with pytest.raises(gs.SwitchError) as info:
        gs.switch(PAIR, "gaming", io, card_wait_s=5)
    assert "the card on nuc still holds 20.00 GiB" in str(info.value)
    assert io.t <= 6


def test_a_card_freed_late_is_waited_for():
    io = FakeIO({"llama": gs.AWAKE, "r1": gs.ASLEEP}, slow_card=3)
    gs.switch(PAIR, "r1", io)
    assert io.calls.count(("card",)) == 4 and io.states["r1"] == gs.AWAKE


def test_a_failed_wake_falls_back_to_a_cold_start():
    io = FakeIO({"llama": gs.AWAKE, "r1": gs.ASLEEP}, wake_fails={"r1"})
    report = gs.switch(PAIR, "r1", io)
    assert report["fallbacks"] == ["r1"]
    assert io.calls[-3:] == [("restart", "r1"), ("chat", "r1"), ("route", "r1")]
    assert any(c[0] == "say" and "the wake failed" in c[1] for c in io.calls)


def test_scale_models_stop_and_start_and_the_card_must_be_empty():
    pair = [model("llama", ["ml"], switch="scale"), model("r1", ["r1"], switch="scale")]
    io = FakeIO({"llama": gs.AWAKE, "r1": gs.STOPPED})
    gs.switch(pair, "r1", io)
    assert io.calls == [("unroute", "llama"), ("scale", "llama", 0), ("card",), ("card",),
                        ("scale", "r1", 1), ("chat", "r1"), ("route", "r1")]


def test_an_unchanged_mode_changes_nothing():
    io = FakeIO({"llama": gs.AWAKE, "r1": gs.ASLEEP})
    io.routed = {"llama": True}
    report = gs.switch(PAIR, "ml", io)
    assert io.calls == [("route", "llama")] and not report["changed"] and report["events"] == []


def test_a_sleep_model_never_started_starts_alone_and_sleeps():
    """site.yml's first run: both Deployments at 0; r1's model starts and sleeps before ml's starts."""
    io = FakeIO({"llama": gs.STOPPED, "r1": gs.STOPPED})
    report = gs.switch(PAIR, "ml", io)
    assert io.calls.index(("scale", "r1", 1)) < io.calls.index(("POST", "r1", "/sleep?level=1")) \
        < io.calls.index(("scale", "llama", 1))
    assert io.states == {"llama": gs.AWAKE, "r1": gs.ASLEEP}
    assert [e[1:] for e in report["events"]] == [("r1", "started asleep"), ("nuc", "card free"),
                                                 ("llama", "started"), ("llama", "routed")]


def test_a_stopped_sleep_model_is_not_started_beside_an_awake_one():
    io = FakeIO({"llama": gs.AWAKE, "r1": gs.STOPPED})
    io.routed = {"llama": True}
    report = gs.switch(PAIR, "ml", io)
    assert io.states["r1"] == gs.STOPPED and not report["changed"]


def test_the_phases_split_around_a_card_read_elsewhere():
    io = FakeIO({"llama": gs.AWAKE, "r1": gs.ASLEEP})
    away = gs.switch(PAIR, "r1", io, phases=("away",))
    assert io.states == {"llama": gs.ASLEEP, "r1": gs.ASLEEP} and ("card",) not in io.calls
    assert away["card_allowed"] == {"nuc": 2 * GIB + gs.CARD_SLACK_BYTES}
    back = gs.switch(PAIR, "r1", io, phases=("back",))
    assert io.states["r1"] == gs.AWAKE and [e[1:] for e in back["events"]] == [("r1", "awake"), ("r1", "routed")]
