# Mailstead: `make run` installs and starts the server on embedded defaults; `make test` runs
# the whole test suite (installing what it needs first).
PYTHON ?= python3
VENV ?= .venv
DATA ?= ./var
DOMAIN ?= example.test
BIN = $(VENV)/bin

.PHONY: install run test check deps clean

$(BIN)/mailstead: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

install: $(BIN)/mailstead

run: install
	test -f $(DATA)/mailstead.toml || $(BIN)/mailstead init --dev --data $(DATA) --domain $(DOMAIN)
	$(BIN)/mailstead serve --config $(DATA)/mailstead.toml

deps:
	scripts/install-test-deps

test: install deps
	$(BIN)/pytest -q

check: install
	scripts/check

clean:
	rm -rf $(VENV) build *.egg-info
