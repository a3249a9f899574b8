# CountyPool: `make run` starts the platform, `make test` runs the whole suite on real Kafka and PostgreSQL.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)

export KAFKA_PORT ?= 9092
export PG_PORT ?= 55432
export KAFKA_BOOTSTRAP_SERVERS ?= 127.0.0.1:$(KAFKA_PORT)
export COUNTYPOOL_DATA_DIR ?= $(CURDIR)/.data

.PHONY: run test test-unit install kafka postgres stop-infra bench clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@rm -f $(VENV)/.installed-*; touch $(STAMP)

install: $(STAMP)
	deploy/kafka/kafka.sh install

## run: Kafka (unless KAFKA_BOOTSTRAP_SERVERS points at a cluster you run) and the four services.
run: $(STAMP)
	$(PY) -m ops.platform run

## test: the whole suite; starts Kafka and PostgreSQL here unless endpoints are given.
test: $(STAMP)
	@if [ -z "$$COUNTYPOOL_EXTERNAL_KAFKA" ]; then deploy/kafka/kafka.sh start; fi
	@if [ -z "$$TEST_DATABASE_URL" ]; then deploy/postgres/postgres.sh start; fi
	TEST_DATABASE_URL=$${TEST_DATABASE_URL:-postgresql+psycopg://countypool:countypool@127.0.0.1:$(PG_PORT)/countypool_test} \
	  $(PY) -m pytest -q $(PYTEST_ARGS)

test-unit: $(STAMP)
	$(PY) -m pytest -q tests/unit

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
