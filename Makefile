# make demo  - set everything up and run the main job on the bundled example
# make test  - set everything up and run the whole test suite (ruff, lint-imports, mypy --strict, pytest)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck pytest deps system-deps clean

# Debian packages: exportfs and rpc.mountd (nfs-kernel-server); unshare/setpriv (util-linux);
# for the data-path lab: NFS-Ganesha with its VFS backend, libnfs clients (nfs-ls, nfs-cat and
# libnfs for the held-open client), a private dbus-daemon, rpcbind, ip and iptables; promtool
# (Debian's prometheus package) for the alert rules' unit tests (contrib/prometheus); for the
# notification tests and the demo a RabbitMQ broker (rabbitmq-server, with erlang's epmd).
# Installed only when missing, and only when we are root (otherwise we say what is missing).
system-deps:
	@missing=""; \
	[ -x /usr/sbin/exportfs ] || missing="$$missing nfs-kernel-server"; \
	command -v unshare >/dev/null || missing="$$missing util-linux"; \
	[ -x /usr/bin/ganesha.nfsd ] || missing="$$missing nfs-ganesha"; \
	ls /usr/lib/x86_64-linux-gnu/ganesha/libfsalvfs.so >/dev/null 2>&1 || ls /usr/lib/*/ganesha/libfsalvfs.so >/dev/null 2>&1 || missing="$$missing nfs-ganesha-vfs"; \
	command -v nfs-cat >/dev/null || missing="$$missing libnfs-utils"; \
	command -v dbus-daemon >/dev/null || missing="$$missing dbus"; \
	[ -x /usr/sbin/rpcbind ] || missing="$$missing rpcbind"; \
	command -v ip >/dev/null || missing="$$missing iproute2"; \
	command -v iptables >/dev/null || missing="$$missing iptables"; \
	command -v promtool >/dev/null || missing="$$missing prometheus"; \
	[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || missing="$$missing rabbitmq-server"; \
	$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || missing="$$missing python3-venv"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else \
	    echo "missing Debian packages:$$missing (run as root, or: sudo apt-get install$$missing)"; \
	  fi; \
	fi

# nfs-exportd with its dev extra, and the test-only nfs-exportd-sim (simulator, demo,
# exportfs sandbox), a distribution of its own so that the production wheel never has it
$(STAMP): pyproject.toml sim/pyproject.toml constraints.txt
	@[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev]' -e ./sim
	@touch $(STAMP)

deps: system-deps $(STAMP)

lint: deps
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	PYTHONPATH=src $(BIN)/lint-imports --no-cache

typecheck: deps
	$(BIN)/mypy --strict src

# The property machines draw a fresh hypothesis seed on every run, `make test` and CI
# included (printed; NFS_EXPORTD_HYPOTHESIS_SEED=N make test replays one); the seeds that
# once found a bug are pinned in tests/test_properties.py and run every time.

pytest: deps
	$(BIN)/pytest -q

test: lint typecheck pytest

demo: deps
	$(BIN)/python -m nfs_exportd_sim.demo

clean:
	rm -rf $(VENV) demo-run sim/build .pytest_cache .mypy_cache .ruff_cache
