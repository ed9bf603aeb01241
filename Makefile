# Two commands on a fresh machine:  `make demo`  and  `make test`.
# Each creates .venv and installs what it needs first. TORCH picks the PyTorch build
# (the default pin matches the CPU wheel of our development machines).
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: demo test install browser clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[test]"
	touch $@

install: $(BIN)/.installed

demo: install
	$(BIN)/unblur demo -o demo-out --overwrite

# The web page's end-to-end test drives Debian's chromium; without it that one test is skipped
# (CI sets UNBLUR_REQUIRE_BROWSER=1, which turns the skip into a failure).
browser:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } \
	  || echo "note: Debian's chromium is not installed (apt-get install chromium); the browser test will be skipped"

test: install browser
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) demo-out .pytest_cache
