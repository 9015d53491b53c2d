# The two commands: `make run` and `make test`. Everything installs from the lock files.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUNTIME_LOCK := requirements/runtime.txt
TEST_LOCK := requirements/test.txt

.PHONY: run test lint typecheck security pytest lock bench audit clean-venv services fuzz

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Re-installed whenever the lock file or the project metadata changes.
$(VENV)/.runtime-installed: $(RUNTIME_LOCK) pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check --require-hashes -r $(RUNTIME_LOCK)
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

$(VENV)/.test-installed: $(TEST_LOCK) $(VENV)/.runtime-installed
	$(BIN)/pip install --quiet --disable-pip-version-check --require-hashes -r $(TEST_LOCK)
	touch $@

run: $(VENV)/.runtime-installed
	$(BIN)/vectorpanda up

services:
	bash scripts/test-services.sh

lint: $(VENV)/.test-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.test-installed
	$(BIN)/mypy

pytest: $(VENV)/.test-installed services
	bash scripts/run-pytest.sh

test: $(VENV)/.test-installed services lint typecheck security pytest

# In `make test`: bandit must be clean and no locked version may have a known
# vulnerability; versions the vulnerability data does not know are reported, not fatal.
security: $(VENV)/.test-installed
	AUDIT_ALLOW_UNAUDITED=1 bash scripts/audit.sh

# Known vulnerabilities in both lock files (pip-audit, the package index's data; needs network) and bandit.
# Not part of `make test`: it depends on the package index answering. AUDIT_ALLOW_UNAUDITED=1 downgrades
# "the package index has no record of this version" from a failure to a warning.
audit: $(VENV)/.test-installed
	bash scripts/audit.sh

# schemathesis against a throwaway stack's /openapi.json, 100 examples per operation and
# generation mode (make test runs the same test with fewer).
fuzz: $(VENV)/.test-installed services
	VP_FUZZ_EXAMPLES=$${VP_FUZZ_EXAMPLES:-100} $(BIN)/python -m pytest -q tests/integration/test_openapi_fuzz.py

bench: $(VENV)/.test-installed
	$(BIN)/python -m benchmarks.run

# Refresh the lock files from requirements/*.in (exact versions and hashes).
lock: $(VENV)/.test-installed
	$(BIN)/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras -o $(RUNTIME_LOCK) requirements/runtime.in
	$(BIN)/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras -o $(TEST_LOCK) requirements/test.in

clean-venv:
	rm -rf $(VENV)
