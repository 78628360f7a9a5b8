# The two commands: `make run` (set up, load a sample, serve on the embedded default) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The demo: a simulated county (the size of the one in shared/seeds that received 1,297 people) in its own store.
DEMO_DB ?= var/demo.sqlite3
DEMO := HANDOFF_DATABASE_URL=sqlite:///$(DEMO_DB)

.PHONY: install run test clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/.installed

run: install
	rm -f $(DEMO_DB) $(DEMO_DB)-wal $(DEMO_DB)-shm
	$(BIN)/handoff simulate --persons 1297 --counties 520222,520221 --seed 2026 \
		--out var/demo-events.jsonl --truth var/demo-truth.json
	$(DEMO) $(BIN)/handoff publish --import var/demo-events.jsonl > var/demo-publish.json
	$(DEMO) $(BIN)/handoff stats
	$(DEMO) $(BIN)/handoff gaps --limit 15
	$(DEMO) $(BIN)/handoff principal add --role oversight --region 5202 --name 演示监督 > var/demo-token.json
	@echo "Dashboard and API on http://127.0.0.1:8000/ (API docs /docs); log in with the token in var/demo-token.json"
	$(DEMO) $(BIN)/handoff serve

test: install
	$(BIN)/pytest -n 2 -q
	# The tests whose outcome depends on "now" again, at a weekend and at holidays (no date may turn CI red).
	PYTEST=$(BIN)/pytest tests/run_at_dates.sh

clean:
	rm -rf $(VENV) var build *.egg-info
