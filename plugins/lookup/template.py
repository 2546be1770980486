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
author:
  - homelab.gpu_stack maintainers (@homelab)
options:
  _terms:
    description: Template files, relative to a C(templates) folder in the search path.
    required: true
"""

EXAMPLES = r"""
- name: Build the objects of every model
  ansible.builtin.set_fact:
    vllm_objects: "{{ lookup('homelab.gpu_stack.template', 'objects.yaml.j2') | from_yaml }}"
"""

RETURN = r"""
_raw:
  description: The rendered text of each file.
  type: list
  elements: str
"""

import os

from ansible.errors import AnsibleError
from ansible.plugins.lookup import LookupBase
from ansible.template import trust_as_template


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
            rendered.append(templar.template(text, escape_backslashes=False))
        return rendered
