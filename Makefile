# The two commands: `make run` (the whole system on embedded defaults) and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
UV_VERSION := 0.13.9

.PHONY: run test venv lock tools openapi openapi-intake openapi-tracker openapi-metrics openapi-notifier \
        prometheus-rule policy-lock clean configuration-doc mutation mutation-changed

$(BIN)/.synced: pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	test -x $(BIN)/uv || $(BIN)/pip install --quiet uv==$(UV_VERSION)
	$(BIN)/uv pip sync --quiet --python $(BIN)/python requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	touch $@

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --silent --no-audit --no-fund

venv: $(BIN)/.synced

# `make run RUN_ARGS=--real-time`: the demo on the wall clock (README).
run: venv
	$(BIN)/duban run $(RUN_ARGS)

# Binaries the tests run that no pinned Python package ships: promtool and prometheus, amtool and
# prometheus-alertmanager, and the chromium (with CJK fonts for the board's Chinese pages) Playwright
# drives; all Debian's packages, never a browser Playwright downloads.
tools:
	@command -v promtool >/dev/null && command -v prometheus >/dev/null && command -v amtool >/dev/null && \
	  command -v prometheus-alertmanager >/dev/null && test -x /usr/bin/chromium && \
	  test -d /usr/share/fonts/opentype/noto || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    prometheus prometheus-alertmanager chromium fonts-noto-cjk >/dev/null; }

test: venv node_modules/.package-lock.json tools .venv-policy/.synced
	$(BIN)/pytest $(PYTEST_ARGS)

# Re-resolve the pinned dependencies after editing pyproject.toml.
lock: venv
	$(BIN)/uv pip compile --quiet pyproject.toml --extra dev -o requirements.lock

# Every service's OpenAPI document, generated from its app; tests fail when a committed one drifts.
openapi: openapi-intake openapi-tracker openapi-metrics openapi-notifier

openapi-intake: venv
	$(BIN)/python -m services.intake.app > contracts/openapi/intake.json

# The tracker's OpenAPI document (tests/tracker/test_api.py fails when it drifts from the routes).
openapi-tracker: venv
	$(BIN)/python -m services.tracker.openapi > contracts/openapi/tracker.json

# The PrometheusRule of the Kubernetes monitoring component, from deploy/prometheus/rules/*.yml
# (tests/deploy/test_crds.py fails while they differ).
prometheus-rule: venv
	$(BIN)/python deploy/k8s/components/monitoring/prometheus_rule.py

# checkov, the policy scanner the deploy tests run over the production manifests, lives in a venv of its
# own (.venv-policy, from deploy/k8s/policy/checkov.lock): its dependencies would pull the project's pins down.
CHECKOV_VERSION := 3.3.30
policy-lock: venv
	echo "checkov==$(CHECKOV_VERSION)" | $(BIN)/uv pip compile --quiet --python-version 3.11 --no-header - -o deploy/k8s/policy/checkov.lock

.venv-policy/.synced: deploy/k8s/policy/checkov.lock $(BIN)/.synced
	test -x .venv-policy/bin/python || $(PYTHON) -m venv .venv-policy
	$(BIN)/uv pip sync --quiet --python .venv-policy/bin/python deploy/k8s/policy/checkov.lock
	touch $@

# The read APIs of metrics and notifier (tests/metrics/test_api.py, tests/notifier/test_api.py check drift).
openapi-metrics: venv
	$(BIN)/python -m services.metrics.openapi > contracts/openapi/metrics.json

openapi-notifier: venv
	$(BIN)/python -m services.notifier.openapi > contracts/openapi/notifier.json

# The settings table of docs/runbooks/configuration.md, from the settings classes (tests/docs fails while it differs).
configuration-doc: venv
	$(BIN)/python -m tests.docs.settings_page

# Mutation testing of the modules the published numbers rest on ([tool.mutmut] in pyproject.toml), against
# their fast pure tests; prints each module's kill rate, equivalents apart (decision 018). 2–4 min on 2 cores.
mutation: venv
	rm -rf mutants  # mutmut reuses a mutant's result while its function is unchanged, even when the tests changed
	$(BIN)/mutmut run --max-children 2 >/dev/null
	$(BIN)/python tests/mutation/rates.py

# The same for the mutated modules changed since MUTATION_BASE only (CI runs this; decision 018).
MUTATION_BASE ?= HEAD~1
mutation-changed: venv
	@modules=$$(git diff --name-only $(MUTATION_BASE) -- '*.py' | sed 's/\.py$$//; s|/|.|g' \
	  | grep -Fx "$$($(BIN)/python tests/mutation/rates.py --list)" || true); \
	if [ -z "$$modules" ]; then echo "no mutated module changed since $(MUTATION_BASE)"; exit 0; fi; \
	rm -rf mutants; \
	$(BIN)/mutmut run --max-children 2 $$(for m in $$modules; do printf '%s.* ' "$$m"; done) >/dev/null; \
	$(BIN)/python tests/mutation/rates.py $$modules

clean:
	rm -rf $(VENV) .venv-policy node_modules .run mutants
