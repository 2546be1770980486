# Copyright: homelab.gpu_stack contributors
# Apache License 2.0 (see LICENSE)
"""Fetch one model repository into a Hugging Face cache, then leave a marker.

The token comes from HF_TOKEN (never an argument). snapshot_download resumes
partial files; the marker (JSON: repo, revision, commit, files) is written
only after every file is in place, so its presence means "complete" and pods
can run with HF_HUB_OFFLINE=1. Everything written is given to --owner/--group.
"""

import argparse
import json
import os
import sys


def chown_tree(path, uid, gid):
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.lchown(os.path.join(root, name), uid, gid)
    os.lchown(path, uid, gid)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repo", required=True)
    parser.add_argument("--revision", default="main")
    parser.add_argument("--cache-dir", required=True)
    parser.add_argument("--marker", required=True)
    parser.add_argument("--allow", action="append", default=[])
    parser.add_argument("--owner", type=int, required=True)
    parser.add_argument("--group", type=int, required=True)
    args = parser.parse_args()

    from huggingface_hub import snapshot_download

    os.makedirs(args.cache_dir, exist_ok=True)
    folder = snapshot_download(repo_id=args.repo, revision=args.revision, cache_dir=args.cache_dir,
                               allow_patterns=args.allow or None, token=os.environ.get("HF_TOKEN") or None)
    files = sorted(os.path.relpath(os.path.join(r, f), folder) for r, _dirs, fs in os.walk(folder) for f in fs)
    if not any(f.endswith(".safetensors") for f in files) or "config.json" not in files:
        sys.exit("%s@%s: no config.json or safetensors weights among %s" % (args.repo, args.revision, files))
    chown_tree(args.cache_dir, args.owner, args.group)
    tmp = args.marker + ".tmp"
    with open(tmp, "w") as handle:
        json.dump({"repo": args.repo, "revision": args.revision, "commit": os.path.basename(folder),
                   "files": files}, handle, indent=1)
    os.replace(tmp, args.marker)
    os.lchown(args.marker, args.owner, args.group)
    print(json.dumps({"changed": True, "folder": folder, "files": len(files)}))


if __name__ == "__main__":
    main()
