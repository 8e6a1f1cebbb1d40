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

.DEFAULT_GOAL := help
.PHONY: help docs install demo local invoke test lint typecheck validate checkov unit test-unit test-suites bench bench-scale capacity-report build deploy clean openapi asyncapi chromium

# `make` alone, or `make help`: every target with one line (the `## ` text after it)
help: ## this list: every target and what it does
	@grep -E '^[a-z][a-z-]*:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z-]+):.*## (.*)/\1\t\2/' | \
	  awk -F'\t' '{printf "  make %-12s %s\n", $$1, $$2}'

# uv creates the virtualenvs and installs into them: it resolves and downloads in parallel and keeps a
# cache (~/.cache/uv), so a fresh clone installs in seconds where pip took minutes (issue 22). uv itself
# is installed with pip into a small virtualenv of its own.
UVVENV := .venv-uv
UV := $(UVVENV)/bin/uv
UV_VERSION := 0.13.10
export UV_LINK_MODE := copy
define install-uv
	@test -x $(UV) || { echo "installing uv $(UV_VERSION) in .venv-uv" && $(PYSAM) -m venv $(UVVENV) && \
	  $(UVVENV)/bin/pip install -q --disable-pip-version-check uv==$(UV_VERSION); }
endef

# .pyc files are written at install (PYTHONDONTWRITEBYTECODE is set here): every test process imports
# from them instead of compiling moto, boto3 and hypothesis again.
$(VENV)/.installed: requirements-dev.txt layers/core/requirements.txt
	$(install-uv)
	@test -n "$(PY313)" || { echo "Python 3.13 is needed (python3.13 on PATH or pyenv 3.13.0)"; exit 1; }
	@echo "installing the Python 3.13 virtualenv .venv (requirements-dev.txt)"
	$(UV) venv -q --allow-existing --python $(PY313) $(VENV)
	$(UV) pip install -q --python $(VENV)/bin/python --compile-bytecode -r requirements-dev.txt
	@touch $@

# aws-sam-cli pins its own boto3: it lives in a virtualenv of its own.
$(SAMVENV)/.installed:
	$(install-uv)
	@echo "installing the SAM CLI in .venv-sam"
	$(UV) venv -q --allow-existing --python $(PYSAM) $(SAMVENV)
	$(UV) pip install -q --python $(SAMVENV)/bin/python aws-sam-cli==1.170.0
	@touch $@

# checkov (template security checks) pins its own dependencies too: a virtualenv of its own.
$(CHECKOVVENV)/.installed:
	$(install-uv)
	@echo "installing checkov in .venv-checkov"
	$(UV) venv -q --allow-existing --python $(PYSAM) $(CHECKOVVENV)
	$(UV) pip install -q --python $(CHECKOVVENV)/bin/python checkov==3.3.30
	@touch $@

node_modules/.installed: package.json
	npm install --no-audit --no-fund --loglevel=error
	@touch $@

# The browser test (tests/browser) drives Debian's Chromium; Playwright never downloads a browser here.
CHROMIUM := /usr/bin/chromium
chromium: ## Debian's Chromium for the browser tests (apt-get as root; they skip without it)
	@test -x $(CHROMIUM) || { if [ "$$(id -u)" = 0 ]; then \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; \
	  else echo "$(CHROMIUM) is missing: apt-get install chromium as root (the browser test skips without it)"; fi; }

install: $(VENV)/.installed $(SAMVENV)/.installed $(CHECKOVVENV)/.installed node_modules/.installed chromium ## every virtualenv (.venv, .venv-sam, .venv-checkov), the Node packages and Chromium
lint: $(VENV)/.installed ## ruff (complexity cap 12)
	$(VENV)/bin/ruff check .

# mypy on the core layer and the handlers (configuration in pyproject.toml)
typecheck: $(VENV)/.installed ## mypy on the core layer and the handlers
	$(VENV)/bin/mypy

validate: $(SAMVENV)/.installed node_modules/.installed ## sam validate --lint, the state machine (asl-validator), the AsyncAPI document
	$(SAM) validate --lint
	for f in statemachines/*.asl.json; do node_modules/.bin/asl-validator --json-path $$f || exit 1; done
	node asyncapi/validate.mjs asyncapi/asyncapi.json

# Every failed check is fixed or skipped inline in template.yaml with a written reason (Metadata: checkov).
checkov: $(CHECKOVVENV)/.installed ## checkov on template.yaml
	$(CHECKOVVENV)/bin/checkov -f template.yaml --framework cloudformation --compact --quiet --skip-download

# Every pytest suite, the unit tests (the rules on fakes: no moto, no emulator; seconds) first.
unit: test-unit test-suites ## every pytest suite, tests/unit first
test-unit: $(VENV)/.installed ## tests/unit: the rules on fakes, no moto, no emulator (~15 s)
	$(PY) -m pytest tests/unit -n auto

# integration (moto + the emulator), chaos, e2e, browser, security, conformance, bench
test-suites: $(VENV)/.installed ## every suite but tests/unit (moto + the emulator; minutes, pytest shows progress)
	$(PY) -m pytest tests -n auto --ignore=tests/unit

# Cheapest checks first, so a mistake fails in seconds rather than after the slow suites: ruff, mypy, the
# unit tests, the template (sam validate, state machines, AsyncAPI document, checkov), sam build (python3.13,
# arm64: a template or layer that does not build fails CI), then the other suites.
test: install lint typecheck test-unit validate checkov build unit ## everything, cheapest first: install, lint, typecheck, unit tests, validate, checkov, build, suites (< 10 min)
# openapi/openapi.json from the route declarations (tests/unit/test_openapi.py fails when it is stale).
openapi: $(VENV)/.installed ## regenerate openapi/openapi.json from the route declarations
	$(PY) -m localdev.openapi

# asyncapi/asyncapi.json from the message models and template.yaml's queues (tests/unit/test_asyncapi.py
# fails when it is stale).
asyncapi: $(VENV)/.installed ## regenerate asyncapi/asyncapi.json from the message models and the queues
	$(PY) -m localdev.asyncapi

demo: $(VENV)/.installed ## the whole system locally, narrated and checked (~1 min)
	$(PY) -m localdev.demo

# The whole local stack, seeded, until Ctrl-C: URLs and session tokens printed (docs/local-development.md).
# LOCAL_ARGS="--port 0 --emulator-port 0" for free ports, "--log-level WARNING" for quiet.
local: $(VENV)/.installed node_modules/.installed ## the local stack, seeded, until Ctrl-C: prints URLs and tokens (LOCAL_ARGS=...)
	$(PY) -m localdev.local $(LOCAL_ARGS)

# One function, one sample event, on a local stack prepared for it: make invoke FN=webhook-intake EVENT=events/webhook-change.json
invoke: $(VENV)/.installed ## one function with one sample event on a prepared local stack: FN=... EVENT=events/....json
	@test -n "$(FN)" -a -n "$(EVENT)" || { echo "usage: make invoke FN=<function> EVENT=events/<file>.json"; exit 2; }
	@$(PY) -m localdev.invoke "$(FN)" "$(EVENT)"

bench: $(VENV)/.installed ## cold imports, backfill, intake, busy route, availability, Enterprise Connect, the week (~10-15 min, progress); stamped bench/results/*.json, then `make docs`
	@echo "bench 1/7: cold imports"; $(PY) bench/cold_imports.py
	@echo "bench 2/7: backfill and milestone batches"; $(PY) bench/milestones.py
	@echo "bench 3/7: webhook intake"; $(PY) bench/webhook_intake.py
	@echo "bench 4/7: busy route"; $(PY) bench/busy_route.py
	@echo "bench 5/7: crew availability"; $(PY) bench/availability.py
	@echo "bench 6/7: Enterprise Connect, 200 members (~3-4 min)"; $(PY) bench/enterprise_connect.py
	@echo "bench 7/7: a week at a 50-person installer"; BENCH_REUSE=1 $(PY) bench/week.py
	@echo "bench: done; bench/results/*.json written (stamped): \`make docs\` renders the docs from them"

# Capacity benchmark (issue 11): 1,000 users x 7 simulated days in virtual time, every function counted
# (under 20 minutes). SCALE_ARGS="--small" for a quick run, "--quiet-day" for the self-healing day.
bench-scale: $(VENV)/.installed ## the capacity benchmark, 1,000 users x 7 days (5-8 min; SCALE_ARGS=...), then `make docs`
	$(PY) bench/scale.py $(SCALE_ARGS)

# The figure tables of docs/benchmarks.md and docs/capacity.md and docs/capacity-chart.png, from
# bench/results/*.json (bench/docgen.py; tests/unit/test_docgen.py fails when they disagree).
docs: $(VENV)/.installed ## regenerate the docs' figure tables and charts from bench/results/
	$(PY) bench/docgen.py

# Issue 21: only the direct runs' tables (docs/capacity.md) and charts (docs/capacity-*.png); `make docs` does these too
capacity-report: $(VENV)/.installed ## the direct capacity runs' tables and charts from bench/results/
	$(PY) bench/capacity_report.py --charts docs --fill docs/capacity.md > /dev/null

build: $(SAMVENV)/.installed ## sam build (python3.13, arm64)
	PATH="$(dir $(PY313)):$$PATH" $(SAM) build

deploy: build ## sam deploy STAGE=dev|staging|prod
	$(SAM) deploy --config-env $(STAGE)

# After a fix: put a DLQ's messages back on their queue. QUEUE=UserEvents|Cleanup|MilestoneEvents|Notifications|CalendarChanges
# Optional: REGION=us-east-1 PROFILE=ops PEEK=5 (show 5 messages, move nothing) DRY_RUN=1 (count only)
replay-dlq: $(VENV)/.installed ## put a DLQ's messages back on their queue: STAGE=... QUEUE=... [REGION PROFILE PEEK DRY_RUN]
	$(PY) scripts/replay_dlq.py --stack calendar-sync-$(STAGE) --queue $(QUEUE)$(if $(REGION), --region $(REGION))$(if $(PROFILE), --profile $(PROFILE))$(if $(PEEK), --peek $(PEEK))$(if $(DRY_RUN), --dry-run)

# 20,000 milestone changes across 200 users against the emulator's 50/s and 500/min (about 15 minutes)
burst: $(VENV)/.installed ## 20,000 milestone changes against Cronofy's limit (~15 min, progress every 30 s)
	$(PY) bench/burst.py

# The chaos suite (its heavy calendar at 2,000 appointments) and the reconciler's fairness test at full length (short runs of both are part of make test)
chaos: $(VENV)/.installed ## the chaos suite and the reconciler's crew of 40 at full length
	CHAOS_SEEDS=$${CHAOS_SEEDS:-1,2,3} CHAOS_USERS=$${CHAOS_USERS:-12} CHAOS_CHANGES=$${CHAOS_CHANGES:-600} \
	  CHAOS_HEAVY_EVENTS=$${CHAOS_HEAVY_EVENTS:-2000} RECONCILE_CREW=$${RECONCILE_CREW:-40} $(PY) -m pytest -s tests/chaos \
	  "tests/integration/test_reconciler.py::test_a_crew_with_room_for_two_a_run_is_all_visited_within_half_as_many_runs"

clean: ## remove the virtualenvs, .aws-sam and node_modules
	rm -rf $(VENV) $(SAMVENV) $(CHECKOVVENV) $(UVVENV) .aws-sam node_modules
