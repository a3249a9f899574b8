# CountyPool: `make run` starts the platform, `make test` runs the whole suite on real Kafka and PostgreSQL.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | sha1sum | cut -c1-12)

export KAFKA_PORT ?= 9092
export PG_PORT ?= 55432
export KAFKA_BOOTSTRAP_SERVERS ?= 127.0.0.1:$(KAFKA_PORT)
export COUNTYPOOL_DATA_DIR ?= $(CURDIR)/.data

.PHONY: run demo test test-unit install lock kafka postgres stop-infra bench clean

# the versions in constraints.txt: what the suite passed with, not whatever is newest today
$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[test]'
	@rm -f $(VENV)/.installed-*; touch $(STAMP)

install: $(STAMP)
	deploy/kafka/kafka.sh install

## lock: constraints.txt from a fresh virtualenv's newest versions within pyproject.toml's ranges (then make test)
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install -q -e '.[test]'
	{ sed -n '/^#/p' constraints.txt; .lock-venv/bin/python -m pip freeze --exclude-editable; } > constraints.txt.new
	mv constraints.txt.new constraints.txt && rm -rf .lock-venv

## run: Kafka (unless KAFKA_BOOTSTRAP_SERVERS points at a cluster you run) and the four services.
run: $(STAMP)
	$(PY) -m ops.platform run

## demo: a generated county's year through the four services, printed; stays up until Ctrl-C.
##       Flags in DEMO_ARGS, e.g. make demo DEMO_ARGS="--size tiny --stop" (--seed N, --keep-data, --county-code C)
demo: $(STAMP)
	$(PY) -m ops.demo $(DEMO_ARGS)

## test: the whole suite; starts Kafka and PostgreSQL here unless endpoints are given. TEST_WORKERS parallel
##       pytest processes (default 2; 0 runs it in this one), each test file kept on one worker.
TEST_WORKERS ?= 2
test: $(STAMP)
	@if [ -z "$$COUNTYPOOL_EXTERNAL_KAFKA" ]; then deploy/kafka/kafka.sh start; fi
	@if [ -z "$$TEST_DATABASE_URL" ]; then deploy/postgres/postgres.sh start; fi
	TEST_DATABASE_URL=$${TEST_DATABASE_URL:-postgresql+psycopg://countypool:countypool@127.0.0.1:$(PG_PORT)/countypool_test} \
	  $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

test-unit: $(STAMP)
	$(PY) -m pytest -q tests/unit

## test-faults: the full fault run (tests/faults/run_full.py, about 6 minutes) on its own Kafka broker
## (127.0.0.1:29192) and PostgreSQL server (:55532), never the shared ones: SIGKILLs of every service, broker and
## database restarts, a stalled and a throttled ledger under a steady stream; then nothing lost or doubled.
.PHONY: test-faults
test-faults: $(STAMP)
	$(PY) -m pytest -q -s -p no:cacheprovider tests/faults/run_full.py $(PYTEST_ARGS)

kafka:
	deploy/kafka/kafka.sh start

postgres:
	deploy/postgres/postgres.sh start

stop-infra:
	-deploy/kafka/kafka.sh stop
	-deploy/postgres/postgres.sh stop

bench: $(STAMP)
	$(PY) bench/relay_throughput.py

clean:
	rm -rf .data
