# easybackup — two commands for a new machine: `make demo` (the main job on a built-in default)
# and `make test` (every test). Both install what they need.
SHELL := /bin/bash
VENV := .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.installed
RUFF := $(VENV)/bin/ruff check --isolated --line-length 120 --target-version py311 --select E,F,W,B,UP --ignore UP017

# command:debian-package — every system tool the tests and the demo use.
SYSTEM_TOOLS := pg_dump:postgresql-client pg_ctlcluster:postgresql sshd:openssh-server microsocks:microsocks \
	tinyproxy:tinyproxy pigz:pigz zstd:zstd faketime:faketime promtool:prometheus ip:iproute2 \
	systemd-analyze:systemd tini:tini chromium:chromium age:age mariadbd:mariadb-server \
	mariadb-dump:mariadb-client

.PHONY: test demo lint venv system-tools perf clean

test: venv system-tools lint
	$(PYTHON) -m pytest tests --ignore=tests/perf -p no:cacheprovider -ra --timeout=900

lint: venv
	$(RUFF) easybackup tests bin/easybackup bin/easybackup-once setup.py

venv: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt setup.py Makefile
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install -q --upgrade pip setuptools wheel
	$(PYTHON) -m pip install -q -r requirements.txt -r requirements-dev.txt
	# compat: a plain .pth path entry; the default finder costs every Python process (each worker too) ~11 ms.
	# setuptools calls compat transitional: where a release has dropped it, the default mode is installed.
	$(PYTHON) -m pip install -q --no-deps --no-build-isolation -e . --config-settings editable_mode=compat \
		|| $(PYTHON) -m pip install -q --no-deps --no-build-isolation -e .
	touch $@

# Installs missing tools with apt-get when root; otherwise names them and fails.
system-tools:
	@missing=""; \
	for pair in $(SYSTEM_TOOLS); do \
		cmd=$${pair%%:*}; pkg=$${pair#*:}; \
		command -v $$cmd >/dev/null 2>&1 || [ -x /usr/sbin/$$cmd ] || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			echo "installing:$$missing"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
		else \
			echo "missing system packages:$$missing (run as root or: sudo apt-get install$$missing)" >&2; exit 1; \
		fi; \
	fi

demo: venv system-tools
	$(PYTHON) examples/demo.py

perf: venv system-tools
	$(PYTHON) -m pytest tests/perf -p no:cacheprovider -s -ra

clean:
	rm -rf $(VENV) build dist *.egg-info
