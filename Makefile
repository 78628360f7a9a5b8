# The two commands: `make run` (set up, load a sample, serve on the embedded default) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The demo: a simulated county (the size of the county in the seed reports that received 1,297 people) in a store of
# its own, with its files in DEMO_DIR.
DEMO_DIR ?= var
DEMO_DB := $(DEMO_DIR)/demo.sqlite3
DEMO := HANDOFF_DATABASE_URL=sqlite:///$(abspath $(DEMO_DB)) HANDOFF_AGENCIES_FILE=$(abspath docs/agencies.example.toml)

.PHONY: install run test clean

# pip's and setuptools' chatter goes to var/install.log, shown only if the installation fails.
$(BIN)/.installed: pyproject.toml
	@mkdir -p var
	@echo "Installing into $(VENV) (log: var/install.log) ..."
	@( $(PYTHON) -m venv $(VENV) && $(BIN)/pip install --upgrade pip && $(BIN)/pip install -e '.[dev]' ) \
		> var/install.log 2>&1 || { tail -50 var/install.log; exit 1; }
	@touch $@

install: $(BIN)/.installed

run: install
	@mkdir -p $(DEMO_DIR)
	@rm -f $(DEMO_DB) $(DEMO_DB)-wal $(DEMO_DB)-shm
	@echo "Simulating a county of 1,297 people ($(DEMO_DIR)/demo-events.jsonl; injected failures: $(DEMO_DIR)/demo-truth.json) ..."
	@$(BIN)/handoff simulate --persons 1297 --counties 632801,632802 --seed 2026 \
		--withhold decision=0.005 --withhold enrolment=0.005 --withhold detention=0.01 --rosters $(DEMO_DIR)/rosters \
		--out $(DEMO_DIR)/demo-events.jsonl --truth $(DEMO_DIR)/demo-truth.json 2> $(DEMO_DIR)/demo-simulate.log
	@echo "Loading it into $(DEMO_DB) ..."
	@$(DEMO) $(BIN)/handoff publish --import $(DEMO_DIR)/demo-events.jsonl > $(DEMO_DIR)/demo-publish.json
	@$(DEMO) $(BIN)/handoff stats --format table
	@$(DEMO) $(BIN)/handoff gaps --limit 15 --format table
	@echo "名单碰撞: the court's own list of judgments ($(DEMO_DIR)/rosters/) against the record ..."
	@$(DEMO) $(BIN)/handoff reconcile --source court:FY-632801 $(DEMO_DIR)/rosters/court_FY-632801.csv \
		--as-of $$(TZ=Asia/Shanghai date +%F) 2> /dev/null
	@$(DEMO) $(BIN)/handoff principal add --role oversight --region 6328 --name 演示监督 > $(DEMO_DIR)/demo-token.json
	@$(BIN)/python -m tools.demo_banner $(DEMO_DIR)/demo-token.json
	@$(DEMO) $(BIN)/handoff serve

test: install
	$(BIN)/pytest -n 2 -q
	# The tests whose outcome depends on "now" again, at a weekend and at holidays (no date may turn CI red).
	PYTEST=$(BIN)/pytest tests/run_at_dates.sh

clean:
	rm -rf $(VENV) var build *.egg-info
