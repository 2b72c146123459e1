PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
DATA ?= ./data
HOST ?= 127.0.0.1
PORT ?= 8443

.PHONY: serve test test-long test-backends lint bench clean

$(BIN)/.installed: pyproject.toml Makefile
	@command -v $(PY) >/dev/null 2>&1 || { echo "need $(PY) on PATH (or: make PY=python3 ...)"; exit 1; }
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	@# The editable install as a plain path in a .pth (setuptools' "compat" mode), as a wheel would be found:
	@# the default mode's import finder loads pathlib, re and importlib.util into every Python start (~10 ms
	@# of each `mvault` command here, a third of the watched no-op sync's). If a setuptools drops the mode,
	@# the default install is made instead.
	$(BIN)/pip install -q -e '.[dev]' --config-settings editable_mode=compat 2>/dev/null \
		|| $(BIN)/pip install -q -e '.[dev]'
	@# An editable install leaves our own modules uncompiled; with PYTHONDONTWRITEBYTECODE set they
	@# would be compiled again at every command's start (~0.25 s here). A wheel install compiles them.
	$(BIN)/python -m compileall -q vault server client security >/dev/null
	@touch $@

serve: $(BIN)/.installed
	$(BIN)/mvault-server run --data $(DATA) --host $(HOST) --port $(PORT)

# Two workers (this machine has two cores); a file's tests stay in one worker (the authorization
# matrix and the API walk check, after their file, that every cell ran).
test: $(BIN)/.installed
	$(BIN)/ruff check vault server client security tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache
	$(BIN)/pytest -q -n 2 --dist loadfile --durations=30 --ignore=tests/test_api_fuzz.py $(PYTEST_ARGS)
	@# Under pytest-xdist schemathesis runs only the first operation of each parametrized fuzz test (its
	@# completeness check fails there), so the fuzzer runs in one process of its own.
	$(BIN)/pytest -q -p no:xdist tests/test_api_fuzz.py

# Tests marked `long` (the authority state machine) with many examples, EXAMPLES=2000 make test-long; then the
# coalition share model (SHARE_EXAMPLES, 500: about 10 minutes here). Both draw new examples at each run.
test-long: $(BIN)/.installed
	MVAULT_HYPOTHESIS=explore MVAULT_LONG=$(or $(EXAMPLES),5000) $(BIN)/pytest -q -m long $(PYTEST_ARGS)
	MVAULT_HYPOTHESIS=explore MVAULT_LONG=$(or $(SHARE_EXAMPLES),500) $(BIN)/pytest -q tests/test_coalition_share_model.py $(PYTEST_ARGS)

# The end-to-end CLI suites that `make test` runs on SQLite only, on PostgreSQL (tests/conftest.py "Backends").
test-backends: $(BIN)/.installed
	MVAULT_ALL_BACKENDS=1 $(BIN)/pytest -q -n 2 --dist loadfile -k postgresql tests/test_membership.py \
		tests/test_doc_ops.py tests/test_threads.py tests/test_authz_matrix.py $(PYTEST_ARGS)

bench: $(BIN)/.installed
	$(BIN)/python bench/run.py $(if $(QUICK),--quick,)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache
