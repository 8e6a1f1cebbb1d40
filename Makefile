# Front door. Every target installs what it needs first.
SHELL := /bin/bash
# The first interpreter that really is 3.13 (a pyenv shim for an inactive version is not).
PY313 ?= $(firstword $(foreach p,$(HOME)/.pyenv/versions/3.13.0/bin/python python3.13,\
  $(shell $(p) -c 'import sys; assert sys.version_info[:2] == (3, 13)' >/dev/null 2>&1 && echo $(p))))
PYSAM ?= $(firstword $(foreach p,python3.11 python3.12 python3 $(PY313),\
  $(shell $(p) -c 'import sys; assert sys.version_info[:2] >= (3, 9)' >/dev/null 2>&1 && echo $(p))))
VENV := .venv
SAMVENV := .venv-sam
CHECKOVVENV := .venv-checkov
PY := $(VENV)/bin/python
SAM := $(SAMVENV)/bin/sam
STAGE ?= dev
export SAM_CLI_TELEMETRY := 0
export PYTHONDONTWRITEBYTECODE := 1
# The core layer is a package on the path in Lambda (/opt/python); locally it is this folder.
export PYTHONPATH := $(CURDIR)/layers/core:$(CURDIR)

.PHONY: install demo test lint typecheck validate checkov unit test-unit test-suites bench bench-scale capacity-report build deploy clean openapi asyncapi chromium

$(VENV)/.installed: requirements-dev.txt layers/core/requirements.txt
	@test -n "$(PY313)" || { echo "Python 3.13 is needed (python3.13 on PATH or pyenv 3.13.0)"; exit 1; }
	$(PY313) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r requirements-dev.txt
	@touch $@

# aws-sam-cli pins its own boto3: it lives in a virtualenv of its own.
$(SAMVENV)/.installed:
	$(PYSAM) -m venv $(SAMVENV)
	$(SAMVENV)/bin/pip install -q --disable-pip-version-check aws-sam-cli==1.170.0
	@touch $@

# checkov (template security checks) pins its own dependencies too: a virtualenv of its own.
$(CHECKOVVENV)/.installed:
	$(PYSAM) -m venv $(CHECKOVVENV)
	$(CHECKOVVENV)/bin/pip install -q --disable-pip-version-check checkov==3.3.30
	@touch $@

node_modules/.installed: package.json
	npm install --no-audit --no-fund --loglevel=error
	@touch $@

# The browser test (tests/browser) drives Debian's Chromium; Playwright never downloads a browser here.
CHROMIUM := /usr/bin/chromium
chromium:
	@test -x $(CHROMIUM) || { if [ "$$(id -u)" = 0 ]; then \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; \
	  else echo "$(CHROMIUM) is missing: apt-get install chromium as root (the browser test skips without it)"; fi; }

install: $(VENV)/.installed $(SAMVENV)/.installed $(CHECKOVVENV)/.installed node_modules/.installed chromium

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

# mypy on the core layer and the handlers (configuration in pyproject.toml)
typecheck: $(VENV)/.installed
	$(VENV)/bin/mypy

validate: $(SAMVENV)/.installed node_modules/.installed
	$(SAM) validate --lint
	for f in statemachines/*.asl.json; do node_modules/.bin/asl-validator --json-path $$f || exit 1; done
	node asyncapi/validate.mjs asyncapi/asyncapi.json

# Every failed check is fixed or skipped inline in template.yaml with a written reason (Metadata: checkov).
checkov: $(CHECKOVVENV)/.installed
	$(CHECKOVVENV)/bin/checkov -f template.yaml --framework cloudformation --compact --quiet --skip-download

# Every pytest suite, the unit tests (the rules on fakes: no moto, no emulator; seconds) first.
unit: test-unit test-suites

test-unit: $(VENV)/.installed
	$(PY) -m pytest tests/unit -n auto

# integration (moto + the emulator), chaos, e2e, browser, security, conformance, bench
test-suites: $(VENV)/.installed
	$(PY) -m pytest tests -n auto --ignore=tests/unit

# Cheapest checks first, so a mistake fails in seconds rather than after the slow suites: ruff, mypy, the
# unit tests, the template (sam validate, state machines, AsyncAPI document, checkov), sam build (python3.13,
# arm64: a template or layer that does not build fails CI), then the other suites.
test: install lint typecheck test-unit validate checkov build unit

# openapi/openapi.json from the route declarations (tests/unit/test_openapi.py fails when it is stale).
openapi: $(VENV)/.installed
	$(PY) -m localdev.openapi

# asyncapi/asyncapi.json from the message models and template.yaml's queues (tests/unit/test_asyncapi.py
# fails when it is stale).
asyncapi: $(VENV)/.installed
	$(PY) -m localdev.asyncapi

demo: $(VENV)/.installed
	$(PY) -m localdev.demo

bench: $(VENV)/.installed
	$(PY) bench/cold_imports.py
	$(PY) bench/milestones.py
	$(PY) bench/webhook_intake.py
	$(PY) bench/busy_route.py
	$(PY) bench/availability.py
	$(PY) bench/enterprise_connect.py
	BENCH_REUSE=1 $(PY) bench/week.py

# Capacity benchmark (issue 11): 1,000 users x 7 simulated days in virtual time, every function counted
# (under 20 minutes). SCALE_ARGS="--small" for a quick run, "--quiet-day" for the self-healing day.
bench-scale: $(VENV)/.installed
	$(PY) bench/scale.py $(SCALE_ARGS)

# Issue 21: the capacity tables (markdown) and charts (docs/capacity-*.png) from bench/results' direct runs
capacity-report: $(VENV)/.installed
	$(PY) bench/capacity_report.py --charts docs --fill docs/capacity.md > /dev/null

build: $(SAMVENV)/.installed
	PATH="$(dir $(PY313)):$$PATH" $(SAM) build

deploy: build
	$(SAM) deploy --config-env $(STAGE)

# After a fix: put a DLQ's messages back on their queue. QUEUE=UserEvents|Cleanup|MilestoneEvents|Notifications|CalendarChanges
replay-dlq: $(VENV)/.installed
	$(PY) scripts/replay_dlq.py --stack calendar-sync-$(STAGE) --queue $(QUEUE)

# 20,000 milestone changes across 200 users against the emulator's 50/s and 500/min (about 15 minutes)
burst: $(VENV)/.installed
	$(PY) bench/burst.py

# The chaos suite at full length (a short run is part of make test)
chaos: $(VENV)/.installed
	CHAOS_SEEDS=$${CHAOS_SEEDS:-1,2,3} CHAOS_USERS=$${CHAOS_USERS:-12} CHAOS_CHANGES=$${CHAOS_CHANGES:-600} \
	  $(PY) -m pytest tests/chaos -s

clean:
	rm -rf $(VENV) $(SAMVENV) $(CHECKOVVENV) .aws-sam node_modules
