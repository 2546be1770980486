# Copyright: homelab.gpu_stack contributors
# Apache License 2.0 (see LICENSE)
"""playbooks/render.yml with Open WebUI on and the gateway's database on
(inventories/example): every new object passes strict OpenAPI validation,
then what the objects mean - the UI reaches the gateway with its consumer key
(never the master key), PostgreSQL keeps its data on the server node and the
gateway finds it through its Secret. Each meaning check is shown to fire on
a broken copy."""

import copy

import pytest

from serving_checks import load_objects, render, validate_all

MASTER = "sk-renderCheckMaster0123456789abcd"
DB_PASSWORD = "render-check-db-pass/with+signs"
ADMIN_PASSWORD = "render-check-admin-password"
SESSION_KEY = "render-check-session-key-0123456789abcdef"
UI = {"open_webui_enabled": True, "open_webui_admin_email": "you@example.org",
      "open_webui_admin_password": ADMIN_PASSWORD, "open_webui_secret_key": SESSION_KEY,
      "litellm_database_password": DB_PASSWORD, "litellm_master_key": MASTER,
      "gpu_stack_render_secrets": True, "gpu_stack_render_addons": False}


@pytest.fixture(scope="module")
def objects(tmp_path_factory):
    out = tmp_path_factory.mktemp("ui-keys")
    code, output = render("inventories/example", out, extra=UI)
    assert code == 0, output[-4000:]
    assert MASTER not in output and DB_PASSWORD not in output and ADMIN_PASSWORD not in output
    return load_objects(out)


def container(obj):
    return obj["spec"]["template"]["spec"]["containers"][0]


def env_of(obj):
    return dict((e["name"], e.get("value", e.get("valueFrom"))) for e in container(obj)["env"])


def meaning_errors(objects):
    """What the UI and the database objects must mean, as a list of faults."""
    errors = []
    ui = objects["deployment-open-webui.yaml"]
    env = env_of(ui)
    if env.get("OPENAI_API_KEY") != {"secretKeyRef": {"name": "gateway-key-open-webui", "key": "api_key"}}:
        errors.append("the UI's gateway key is not its consumer Secret: %r" % env.get("OPENAI_API_KEY"))
    if env.get("OPENAI_API_BASE_URL") != "http://litellm.llm.svc:4000/v1":
        errors.append("the UI does not reach the gateway's Service: %r" % env.get("OPENAI_API_BASE_URL"))
    if env.get("ENABLE_SIGNUP") != "False" or env.get("OFFLINE_MODE") != "True":
        errors.append("signup on or not offline")
    for name, obj in objects.items():
        if "open-webui" in name and MASTER in repr(obj):
            errors.append("%s holds the master key" % name)
    if ui["spec"]["template"]["spec"]["nodeSelector"] != {"kubernetes.io/hostname": "minipc"}:
        errors.append("the UI's data node is not the server")
    db = objects["statefulset-litellm-database.yaml"]
    if db["spec"]["template"]["spec"]["nodeSelector"] != {"kubernetes.io/hostname": "minipc"}:
        errors.append("PostgreSQL is not pinned to the node holding its data")
    volume = db["spec"]["template"]["spec"]["volumes"][0]
    if volume.get("hostPath", {}).get("path") != "/var/lib/gpu-stack/litellm-postgres":
        errors.append("PostgreSQL's data is not on the node's disk: %r" % volume)
    service = objects["service-litellm-database.yaml"]
    if service["spec"]["selector"] != db["spec"]["selector"]["matchLabels"]:
        errors.append("the database Service selects no database pod")
    if env_of(objects["deployment-litellm.yaml"]).get("DATABASE_URL") != {
            "secretKeyRef": {"name": "litellm-database", "key": "DATABASE_URL"}}:
        errors.append("the gateway is not given DATABASE_URL from its Secret")
    url = objects["secret-litellm-database.yaml"]["stringData"]["DATABASE_URL"]
    if url != "postgresql://litellm:render-check-db-pass%2Fwith%2Bsigns@litellm-database.llm.svc:5432/litellm":
        errors.append("DATABASE_URL does not reach the database Service with the quoted password: %s" % url)
    gateway_pods = objects["poddisruptionbudget-litellm.yaml"]["spec"]["selector"]["matchLabels"]
    if all(db["spec"]["template"]["metadata"]["labels"].get(k) == v for k, v in gateway_pods.items()):
        errors.append("the gateway's disruption budget counts the database pod")
    return errors


def test_ui_and_database_objects_pass_strict_openapi(objects):
    new = dict((n, o) for n, o in objects.items() if "open-webui" in n or "litellm-database" in n)
    assert sorted(new) == ["deployment-open-webui.yaml", "ingress-open-webui.yaml", "secret-litellm-database.yaml",
                           "secret-open-webui.yaml", "service-litellm-database.yaml", "service-open-webui.yaml",
                           "statefulset-litellm-database.yaml"]
    assert validate_all(new) == len(new)


def test_ui_and_database_objects_mean_what_they_should(objects):
    assert meaning_errors(objects) == []
    ingress = objects["ingress-open-webui.yaml"]["spec"]
    assert ingress["tls"] == [{"hosts": ["chat.gpu-stack.home.arpa"], "secretName": "open-webui-tls"}]
    assert objects["secret-open-webui.yaml"]["stringData"] == {"WEBUI_SECRET_KEY": SESSION_KEY,
                                                               "WEBUI_ADMIN_PASSWORD": ADMIN_PASSWORD}


@pytest.mark.parametrize("break_it,fault", [
    (lambda o: container(o["deployment-open-webui.yaml"])["env"].__setitem__(
        [e["name"] for e in container(o["deployment-open-webui.yaml"])["env"]].index("OPENAI_API_KEY"),
        {"name": "OPENAI_API_KEY", "value": MASTER}), "holds the master key"),
    (lambda o: o["statefulset-litellm-database.yaml"]["spec"]["template"]["spec"].__setitem__("nodeSelector", {}),
     "not pinned"),
    (lambda o: o["service-litellm-database.yaml"]["spec"].__setitem__("selector", {"app": "x"}), "selects no database"),
    (lambda o: container(o["deployment-litellm.yaml"]).__setitem__("env", []), "DATABASE_URL from its Secret"),
    (lambda o: o["statefulset-litellm-database.yaml"]["spec"]["template"]["metadata"]["labels"].update(
        o["poddisruptionbudget-litellm.yaml"]["spec"]["selector"]["matchLabels"]), "counts the database pod"),
])
def test_each_meaning_check_fires(objects, break_it, fault):
    broken = copy.deepcopy(objects)
    break_it(broken)
    assert any(fault in e for e in meaning_errors(broken)), meaning_errors(broken)


def test_the_ui_is_off_by_default_and_keys_need_the_database(tmp_path):
    code, output = render("inventories/example", tmp_path, extra={"gpu_stack_render_addons": False})
    assert code == 0, output[-3000:]
    names = list(load_objects(tmp_path))
    assert not [n for n in names if "open-webui" in n]
    assert "statefulset-litellm-database.yaml" in names
