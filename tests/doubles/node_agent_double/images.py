"""The image map: what the node "has" instead of images.

A node without a registry cannot pull; what it can do is run a real program
that stands in for an image's entrypoint. The map says, per image reference
pattern, what the image's config holds (ENTRYPOINT, CMD, WORKDIR, ENV, USER,
the users its /etc/passwd defines) and which program on the node plays each
executable the container could name. Format (see images.yaml):

    images:
      - match: "docker.io/vllm/vllm-openai:*"      # fnmatch on the full reference
        entrypoint: [vllm, serve]                   # the image's ENTRYPOINT
        cmd: []                                     # the image's CMD
        workingDir: /vllm-workspace                 # the image's WORKDIR ...
        workingDirOnNode: "${ROOT}/workdirs/vllm"   # ... and the node folder standing in for it
        user: 0                                     # the image's USER (numeric)
        users: {0: {name: root, home: /root}}       # the image's /etc/passwd, nothing more
        env: {VLLM_USAGE_SOURCE: production-docker-image}   # the image's ENV lines
        nodeEnv: {VLLM_CPU_KVCACHE_SPACE: "1"}      # NOT in the image: what the stand-in needs; announced in an event
        path: "${VLLM_VENV}/bin:/usr/bin:/bin"      # PATH the container gets
        programs:                                   # executable as the container names it -> node program
          vllm: "${VLLM_VENV}/bin/vllm"

${NAME} placeholders are filled from the agent's --set NAME=VALUE (ROOT is
--root). An entry whose placeholders are not all given cannot be used: the
container gets CreateContainerConfigError naming the missing --set.
"""

import fnmatch
import hashlib
import json
import os
import re
import shutil

import yaml

_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class MissingSetting(Exception):
    pass


def normalise_ref(ref):
    """Docker's reference normalisation: bare names live on docker.io/library, no tag means :latest."""
    name, _sep, digest = ref.partition("@")
    first = name.split("/", 1)[0]
    if "/" not in name or ("." not in first and ":" not in first and first != "localhost"):
        name = "docker.io/" + (name if "/" in name else "library/" + name)
    if ":" not in name.rsplit("/", 1)[-1] and not digest:
        name += ":latest"
    return name + ("@" + digest if digest else "")


class Image:
    def __init__(self, entry, settings):
        self.entry, self.settings = entry, settings

    def _fill(self, value):
        if isinstance(value, str):
            def sub(m):
                if m.group(1) not in self.settings:
                    raise MissingSetting("the node's image map entry %r needs ${%s}: start the agent with --set %s=..."
                                         % (self.entry["match"], m.group(1), m.group(1)))
                return self.settings[m.group(1)]
            return _PLACEHOLDER.sub(sub, value)
        if isinstance(value, list):
            return [self._fill(v) for v in value]
        if isinstance(value, dict):
            return {k: self._fill(v) for k, v in value.items()}
        return value

    def get(self, key, default=None):
        return self._fill(self.entry.get(key, default))

    @property
    def image_id(self):
        # No registry, no digest: a stable stand-in derived from the entry, so a changed map reads as a new image.
        digest = hashlib.sha256(json.dumps(self.entry, sort_keys=True).encode()).hexdigest()
        return "sha256:" + digest

    def users(self):
        return {int(k): v for k, v in (self.entry.get("users") or {0: {"name": "root", "home": "/root"}}).items()}

    def resolve(self, arg0, path):
        """The node program for the executable the container names, or None (not found in the image)."""
        programs = self.get("programs") or {}
        if arg0 in programs:
            return programs[arg0]
        if "/" in arg0:
            return arg0 if os.access(arg0, os.X_OK) else None
        return shutil.which(arg0, path=path)


class ImageMap:
    def __init__(self, path, settings):
        with open(path) as f:
            doc = yaml.safe_load(f) or {}
        self.path, self.settings = path, dict(settings)
        self.entries = doc.get("images") or []
        for e in self.entries:
            if "match" not in e:
                raise ValueError("%s: every images[] entry needs 'match'" % path)

    def lookup(self, ref):
        full = normalise_ref(ref)
        for e in self.entries:
            if fnmatch.fnmatchcase(full, normalise_ref(e["match"])) or fnmatch.fnmatchcase(ref, e["match"]):
                return Image(e, self.settings)
        return None
