# One entry point for developers, CI and packaging. Every target creates what it needs.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEV_INSTANCE ?= .dev-instance
STAMP := $(VENV)/.installed

.PHONY: venv run test lint typecheck bench clean

venv: $(STAMP)

# systemd-python needs libsystemd's headers; without them the daemon falls back to its own
# sd_notify code and plain stderr logging, so the extra is installed only when it can build.
EXTRAS := test,dev,evm$(shell pkg-config --exists libsystemd 2>/dev/null && echo ,systemd)

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[$(EXTRAS)]'
	touch $(STAMP)

# Starts the daemon on its embedded defaults: local storage, local ledger, generated dev keys.
run: venv
	@test -f $(DEV_INSTANCE)/edge.toml || $(BIN)/hie-edge init $(DEV_INSTANCE)
	exec $(BIN)/hie-edge run --config $(DEV_INSTANCE)/edge.toml

test: venv
	$(BIN)/pytest -q

lint: venv
	$(BIN)/ruff check edge adapters ledger_client tests bench
	$(BIN)/mypy

bench: venv
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info
