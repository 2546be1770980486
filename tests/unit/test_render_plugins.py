"""The render path's own plugins: the template lookup (ansible.builtin.template's
without its deep copy of the run's variables) and the k8s_render action."""

import json
import os
import stat

import pytest
import yaml
from ansible_collections.homelab.gpu_stack.plugins.filter.k8s_objects import k8s_objects_problem
from ansible_collections.homelab.gpu_stack.plugins.plugin_utils.k8s_render import dump, file_names, plan
from playbook import run_playbook

OBJ = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "namespace": "llm"}, "data": {"k": "v"}}

TEMPLATE = """{% set out = [] %}{% for n in names %}{% set _ = out.append({'name': n, 'len': n | length}) %}{% endfor %}
items: {{ out | to_json }}
literal: "{{ '{{' }} not templated {{ '}}' }}"
names_after: {{ names | to_json }}
"""

PLAY = """
- hosts: localhost
  connection: local
  gather_facts: false
  vars:
    names: [alpha, be]
  tasks:
    - name: Both lookups
      ansible.builtin.set_fact:
        ours_text: "{{ lookup('homelab.gpu_stack.template', '%(dir)s/t.j2') }}"
        builtin_text: "{{ lookup('ansible.builtin.template', '%(dir)s/t.j2') }}"
        ours_data: "{{ lookup('homelab.gpu_stack.template', '%(dir)s/t.j2', yaml=true) }}"
    - name: A key twice
      ansible.builtin.set_fact:
        twice: "{{ lookup('homelab.gpu_stack.template', '%(dir)s/twice.j2', yaml=true) }}"
      ignore_errors: true
      register: twice
    - name: A missing file
      ansible.builtin.set_fact:
        missing: "{{ lookup('homelab.gpu_stack.template', '%(dir)s/nowhere.j2') }}"
      ignore_errors: true
      register: missing
    - name: Keep what was seen
      ansible.builtin.copy:
        dest: "%(dir)s/seen.json"
        mode: "0600"
        content: "{{ {'ours': ours_text, 'builtin': builtin_text, 'data': ours_data, 'data_type': ours_data | type_debug,
                      'twice': twice.msg | default(''), 'missing': missing.msg | default(''),
                      'names': names} | to_json }}"
"""


def test_template_lookup_renders_as_the_builtin_and_parses_strictly(tmp_path):
    (tmp_path / "t.j2").write_text(TEMPLATE)
    (tmp_path / "twice.j2").write_text("a: 1\nb: 2\na: 3\n")
    run_playbook(tmp_path, PLAY % {"dir": tmp_path}, "localhost,", [])
    seen = json.loads((tmp_path / "seen.json").read_text())
    assert seen["ours"] == seen["builtin"]
    assert seen["data"] == yaml.safe_load(seen["builtin"])
    assert seen["data"]["items"] == [{"name": "alpha", "len": 5}, {"name": "be", "len": 2}]
    # Rendered text is data, not a template to evaluate again.
    assert seen["data"]["literal"] == "{{ not templated }}"
    assert seen["data_type"] == "dict"
    assert seen["names"] == ["alpha", "be"] == seen["data"]["names_after"]
    assert "twice.j2 rendered into invalid YAML: the key 'a' appears twice in one mapping" in seen["twice"]
    assert "the template file %s/nowhere.j2 could not be found" % tmp_path in seen["missing"]


def test_file_names_refuse_incomplete_and_shared_files():
    assert file_names([OBJ, dict(OBJ, kind="Secret")]) == ["configmap-a.yaml", "secret-a.yaml"]
    with pytest.raises(ValueError, match=r"objects\[1\]: an object needs apiVersion, kind and metadata.name"):
        file_names([OBJ, {"apiVersion": "v1", "kind": "Secret", "metadata": {}}])
    with pytest.raises(ValueError, match=r"objects\[0\] and objects\[1\] would both be written to configmap-a.yaml"):
        file_names([OBJ, OBJ])
    # The k8s_objects role's check in apply mode is the same rule.
    assert k8s_objects_problem([OBJ]) == ""
    assert k8s_objects_problem([OBJ, OBJ]) == "objects[0] and objects[1] would both be written to configmap-a.yaml"


def test_plan_writes_only_what_differs_and_formats_the_header(tmp_path):
    files = {}
    read = files.get
    paths, todo = plan([OBJ], str(tmp_path), 0o644, read, header="patch {name}\n\nthen apply")
    assert paths == [str(tmp_path / "configmap-a.yaml")]
    (path, text, before), = todo
    assert text.startswith("# patch a\n#\n# then apply\napiVersion: v1\n") and before is None
    files[path] = (text, 0o644)
    assert plan([OBJ], str(tmp_path), 0o644, read, header="patch {name}\n\nthen apply")[1] == []
    # A mode change alone is a change.
    assert [p for p, _t, _b in plan([OBJ], str(tmp_path), 0o600, read, header="patch {name}\n\nthen apply")[1]] == [path]
    assert yaml.safe_load(dump(OBJ, "x")) == OBJ


RENDER = """
- hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Render
      homelab.gpu_stack.k8s_render:
        objects: "{{ objects }}"
        dest: "%(dir)s/out"
        mode: "0600"
      check_mode: "{{ check | default(false) | bool }}"
      register: rendered
    - name: Keep the result
      ansible.builtin.copy:
        dest: "%(dir)s/result-{{ tag }}.json"
        mode: "0600"
        content: "{{ rendered | to_json }}"
"""


def render(tmp_path, tag, objects, *args):
    run_playbook(tmp_path, RENDER % {"dir": tmp_path}, "localhost,",
                 [json.dumps({"objects": objects, "tag": tag})] + list(args))
    return json.loads((tmp_path / ("result-%s.json" % tag)).read_text())


def test_k8s_render_action_check_mode_then_write_then_no_change(tmp_path):
    out = tmp_path / "out" / "configmap-a.yaml"
    checked = render(tmp_path, "check", [OBJ], "check=true")
    assert checked["changed"] and checked["changed_files"] == [str(out)] and not out.exists()
    written = render(tmp_path, "write", [OBJ])
    assert written["changed"] and yaml.safe_load(out.read_text()) == OBJ
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    again = render(tmp_path, "again", [OBJ])
    assert not again["changed"] and again["changed_files"] == [] and again["files"] == [str(out)]


def test_k8s_render_action_refuses_before_writing(tmp_path):
    with pytest.raises(AssertionError) as failed:
        render(tmp_path, "bad", [OBJ, OBJ])
    assert "k8s_render: objects[0] and objects[1] would both be written to configmap-a.yaml" in str(failed.value)
    assert not (tmp_path / "out").exists()
