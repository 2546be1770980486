"""plugins/module_utils/open_webui_gate.py: sign in, the gateway's models, one chat, retried to a deadline."""

from ansible_collections.homelab.gpu_stack.plugins.module_utils.open_webui_gate import run_gate

PASSWORD = "admin-pass-" + "5c1d9e"


class FakeUI:
    """Open WebUI's three endpoints as the gate calls them; ``script`` sets what each answers per attempt."""

    def __init__(self, models=("tiny-chat",), answer="hi", down_for=0, signin_status=200):
        self.models, self.answer, self.down_for, self.signin_status = list(models), answer, down_for, signin_status
        self.calls = []

    def __call__(self, method, path, body=None, token=None):
        self.calls.append((method, path, token))
        if path == "/api/v1/auths/signin":
            if self.down_for > 0:
                self.down_for -= 1
                raise ConnectionError("connection refused")
            if self.signin_status != 200 or body["password"] != PASSWORD:
                return self.signin_status if self.signin_status != 200 else 400, {"detail": "wrong"}
            return 200, {"token": "tok", "role": "admin"}
        assert token == "tok", "a call without the admin's session"
        if path == "/api/models":
            return 200, {"data": [{"id": m} for m in self.models]}
        if path == "/api/chat/completions":
            assert body["model"] == "tiny-chat" and body["stream"] is False
            return 200, {"choices": [{"message": {"content": self.answer}}]}
        return 404, None


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def gate(ui, names=("tiny-chat",), deadline=30):
    clock = Clock()
    return run_gate(ui, "admin@example.org", PASSWORD, list(names), deadline, clock, clock.sleep)


def test_passes_with_a_chat_answered_through_the_session():
    ui = FakeUI()
    result = gate(ui)
    assert result["passed"] and result["answer"] == "hi" and result["model"] == "tiny-chat"
    assert [c[1] for c in ui.calls] == ["/api/v1/auths/signin", "/api/models", "/api/chat/completions"]


def test_waits_for_the_pod_then_passes():
    result = gate(FakeUI(down_for=3))
    assert result["passed"] and result["attempts"] == 4


def test_a_wrong_password_fails_at_once_naming_the_variable():
    ui = FakeUI(signin_status=401)
    result = gate(ui)
    assert not result["passed"] and result["attempts"] == 1
    assert "open_webui_admin_password" in result["msg"] and PASSWORD not in result["msg"]


def test_a_model_the_gateway_does_not_list_fails_at_the_deadline_naming_it():
    result = gate(FakeUI(models=["other"]), deadline=10)
    assert not result["passed"] and result["attempts"] > 1
    assert "tiny-chat not listed (listed: other)" in result["msg"]


def test_an_empty_answer_is_no_answer():
    result = gate(FakeUI(answer=""), deadline=5)
    assert not result["passed"] and "no answer" in result["msg"]
