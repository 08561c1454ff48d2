# One entry point for developers, CI and packaging. Every target creates what it needs.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEV_INSTANCE ?= .dev-instance
STAMP := $(VENV)/.installed

NODE_STAMP := node_modules/.installed

.PHONY: venv node run test lint typecheck bench clean deb deb-check fuzz fuzz-long soak faults-long lock
FUZZ_SECONDS ?= 600

venv: $(STAMP)

# anvil (a real Ethereum node for the ledger tests) and solc (contract build check), pinned in
# package-lock.json.
node: $(NODE_STAMP)

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

# systemd-python needs libsystemd's headers; without them the daemon falls back to its own
# sd_notify code and plain stderr logging, so the extra is installed only when it can build.
EXTRAS := test,dev,evm$(shell pkg-config --exists libsystemd 2>/dev/null && echo ,systemd)

# constraints.txt pins every package to the version the tests last passed with (CI and the
# .deb install exactly those); pyproject.toml keeps the ranges the code supports.
$(STAMP): pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --constraint constraints.txt -e '.[$(EXTRAS)]'
	touch $(STAMP)

# Re-pin constraints.txt to the newest releases pyproject.toml's ranges admit (in a scratch
# venv, every extra), then run `make test` on them before committing the new pins.
LOCK_VENV := build/lock-venv
lock:
	rm -rf $(LOCK_VENV)
	$(PY) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/pip install --quiet --upgrade pip
	$(LOCK_VENV)/bin/pip install --quiet '.[test,dev,evm,systemd]'
	{ sed -n '/^#/p' constraints.txt; \
	  $(LOCK_VENV)/bin/pip freeze --exclude-editable | grep -v '^hie-edge[ =]'; } > constraints.new
	mv constraints.new constraints.txt
	rm -rf $(LOCK_VENV)

# Starts the daemon on its embedded defaults: local storage, local ledger, generated dev keys.
run: venv
	@test -f $(DEV_INSTANCE)/edge.toml || $(BIN)/hie-edge init $(DEV_INSTANCE)
	exec $(BIN)/hie-edge run --config $(DEV_INSTANCE)/edge.toml

test: venv node
	$(BIN)/pytest -q

lint: venv
	$(BIN)/ruff check edge adapters ledger_client tests bench
	$(BIN)/mypy

# Every bench/ script, the fault tests' figures, and BENCHMARKS.md (machine, date, commit).
bench: venv node
	$(BIN)/pytest -q tests/faults
	$(BIN)/python scripts/bench_report.py

fuzz: venv
	$(BIN)/pytest -q tests/faults/test_fuzz_smoke.py tests/faults/test_properties.py

fuzz-long: venv
	@for t in fuzz/fuzz_*.py; do echo "== $$t"; $(BIN)/python $$t -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 || exit 1; done
	HIE_HYPOTHESIS_EXAMPLES=5000 $(BIN)/pytest -q --timeout=3600 tests/faults/test_properties.py

# One million messages through the whole path with the daemon's RSS sampled (hours).
soak: venv
	$(BIN)/python scripts/soak.py --messages 1000000

faults-long: venv node
	HIE_FAULT_CYCLES=100 $(BIN)/pytest -q tests/faults

# The Debian package (dh-virtualenv; venv in /opt/venvs/hie-edge), and its install check.
deb:
	bash scripts/build_deb.sh

deb-check: deb
	bash scripts/check_deb.sh

clean:
	rm -rf $(VENV) build *.egg-info node_modules
