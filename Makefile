# ctools — build, test, demo.  `make` builds .venv with the console scripts.
PY ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
DEBS := conntrack conntrackd nftables iproute2 iptables keepalived iputils-ping tcpdump logrotate

.PHONY: all venv deps test demo bench fuzz lint clean sweep swarm

all: venv

$(VENV)/.stamp: pyproject.toml
	$(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -e '.[test,lab,metrics]'
	touch $@

venv: $(VENV)/.stamp
	@# bytecode for the editable sources (written even under PYTHONDONTWRITEBYTECODE): every
	@# conntrackd client and daemon start would otherwise compile them again (~20 ms each)
	@$(VPY) -m compileall -q ctools netns_lab sim > /dev/null

# Debian packages the suite and the lab need; installed only when missing.
deps:
	@missing=""; for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi

test: deps venv
	$(VENV)/bin/ruff check ctools sim netns_lab tests bench fuzz
	$(VPY) -m pytest -q -ra tests

demo: deps venv
	$(VPY) -m netns_lab.demo

bench: deps venv
	$(VPY) bench/cli.py
	$(VPY) bench/sync.py

fuzz: venv
	$(VPY) -m pip install -q atheris
	$(VPY) fuzz/run.py

# Long runs that do not belong in make test: loss sweeps (CSV + PNG into docs/) and a
# simulator census over many seeds.
sweep: deps venv
	$(VENV)/bin/ctsim sweep --seeds 3 --entries 200 --hardening on,off
	$(VENV)/bin/ctlab sweep --sets ours,c,mixed --runs 2 --flows 20

swarm: venv
	$(VENV)/bin/ctsim swarm --first 1000

lint: venv
	$(VENV)/bin/ruff check ctools sim netns_lab tests bench fuzz

clean:
	rm -rf $(VENV) build dist *.egg-info
