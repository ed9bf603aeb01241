# Two commands on a fresh machine:  `make demo`  and  `make test`.
# Each creates .venv and installs what it needs first. TORCH picks the PyTorch build
# (the default pin matches the CPU wheel of our development machines).
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: demo test install clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[test]"
	touch $@

install: $(BIN)/.installed

demo: install
	$(BIN)/unblur demo -o demo-out --overwrite

test: install
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) demo-out .pytest_cache
