# The two commands: `make run` (set up, load a sample, serve on the embedded default) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SAMPLE ?= samples/sample.jsonl

.PHONY: install run test clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/.installed

run: install
	$(BIN)/handoff publish $(SAMPLE)
	$(BIN)/handoff serve

test: install
	$(BIN)/pytest -n 2 -q

clean:
	rm -rf $(VENV) var build *.egg-info
