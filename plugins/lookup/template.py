# Copyright: homelab.gpu_stack contributors
# Apache License 2.0 (see LICENSE)
from __future__ import annotations

DOCUMENTATION = r"""
name: template
short_description: A role's template rendered with the task's variables, without copying them
version_added: "0.1.0"
description:
  - Renders each file of the terms (found as ansible.builtin.template's lookup finds it, in
    the role's or the playbook's C(templates) folder) with the task's variables and returns
    the text.
  - The same as C(ansible.builtin.template)'s lookup for the collection's templates, less
    its deep copy of every variable of the run at each call. That copy grows with the stack
    (every model's plan, the objects built so far); at 50 models it was the largest part of
    C(render.yml)'s time (benchmarks/render_scale.py, docs/benchmarks.md). The templates
    only read the variables (what they build, they build in their own C(set) variables).
  - Unlike the builtin, no C(template_vars), no C(template_*) or C(ansible_managed) variables
    and no other delimiters; the collection's templates use none of them.
  - With O(yaml=true) the text is parsed as YAML here and the data returned, as plain values
    (what C(from_yaml) returns carries each value's origin, which every later task copying the
    objects pays for); a key twice in one mapping is refused.
author:
  - homelab.gpu_stack maintainers (@homelab)
options:
  _terms:
    description: Template files, relative to a C(templates) folder in the search path.
    required: true
  yaml:
    description: Return the rendered text parsed as YAML (one document) instead of the text.
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Build the objects of every model
  ansible.builtin.set_fact:
    vllm_objects: "{{ lookup('homelab.gpu_stack.template', 'objects.yaml.j2', yaml=true) }}"
"""

RETURN = r"""
_raw:
  description: The rendered text of each file, or its data with O(yaml=true).
  type: list
  elements: raw
"""

import os

import yaml

from ansible.errors import AnsibleError
from ansible.plugins.lookup import LookupBase
from ansible.template import trust_as_template


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """Safe YAML (libyaml's parser where PyYAML has it) that refuses a key twice in
    one mapping, where a template bug would otherwise lose a value silently."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _value in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, "the key %r appears twice in one mapping" % (key,), key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


class LookupModule(LookupBase):

    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        variables = variables or {}
        rendered = []
        for term in terms:
            path = self.find_file_in_search_path(variables, "templates", term)
            if not path:
                raise AnsibleError("the template file %s could not be found for the lookup" % term)
            # {% include %} and {% import %} look beside the file, then in each
            # search path's templates folder, as the builtin lookup does.
            searchpath = [os.path.dirname(path)]
            for base in variables.get("ansible_search_path", []):
                searchpath += [os.path.join(base, "templates"), base]
            # A shallow copy: the renderer gets its own top-level mapping; the
            # values are the run's, read and never written.
            templar = self._templar.copy_with_new_env(available_variables=dict(variables), searchpath=searchpath)
            text = trust_as_template(self._loader.get_text_file_contents(path))
            text = templar.template(text, escape_backslashes=False)
            if self.get_option("yaml"):
                try:
                    text = yaml.load(str(text), Loader=_Loader)
                except yaml.YAMLError as exc:
                    raise AnsibleError("%s rendered into invalid YAML: %s" % (term, exc))
            rendered.append(text)
        return rendered
