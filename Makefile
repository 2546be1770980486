# The two commands a newcomer needs: `make demo` and `make test` (README.md).
# Everything installed is pinned and cached under ~/.cache/homelab-gpu-stack.
SHELL := /bin/bash
.DEFAULT_GOAL := help
.PHONY: help bootstrap demo test lint sanity unit molecule image sandbox-down clean clean-cache

help:
	@echo "make demo      playbooks/site.yml end to end on three sandbox nodes (GPU_STACK_DEMO_KEEP=1 keeps them)"
	@echo "make test      the whole suite CI runs (scripts/test.sh; parts: scripts/test.sh --list)"
	@echo "make lint | sanity | unit | molecule   one group of parts"
	@echo "make bootstrap install what the others need (idempotent, cached)"
	@echo "make clean     remove the sandbox and build outputs; clean-cache also the caches"

bootstrap:
	scripts/bootstrap.sh

demo: bootstrap
	scripts/demo.sh

test: bootstrap
	scripts/test.sh

lint: bootstrap
	scripts/test.sh ansible-lint yamllint ruff

sanity: bootstrap
	scripts/test.sh sanity

unit: bootstrap
	scripts/test.sh pytest-unit

molecule: bootstrap
	scripts/test.sh 'molecule*'

image:
	images/build.sh

sandbox-down:
	scripts/demo.sh down

clean: sandbox-down
	rm -rf build tests/output .pytest_cache .ruff_cache

# Also the venvs, the node image, its rootfs tarball and the main Podman
# store. The stores of test runs in progress (podman/mol-*) are theirs: each
# run removes its own, so they are left alone here (and no `podman system
# reset`: it would also delete the networks of those runs, which all stores
# share so that their subnets never overlap).
clean-cache: clean
	. scripts/podman-env.sh && podman rm -fa -t 5 >/dev/null && podman rmi -af >/dev/null
	. scripts/lib.sh && rm -rf "$$GPU_STACK_CACHE"/{images,venvs,sanity} .venv
