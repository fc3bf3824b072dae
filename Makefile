# firehose-loader: every target creates .venv on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The stack's environment file: in .local/, or where FIREHOSE_LOCAL puts the stack.
STACK_ENV := $(or $(FIREHOSE_LOCAL),.local)/stack.env

.PHONY: help install stack stack-down up down status demo test test-unit test-browser lint format bench bench-freshness clean

help:
	@echo "make demo        set up, start the local stack, load a few Firehose hours, print a summary"
	@echo "make test        check include/streams.yml, then the whole test suite (starts the local stack it needs)"
	@echo "make stack       start S3 (moto) + PostgreSQL and write .local/stack.env"
	@echo "make stack-down  stop them"
	@echo "make up          the stack + Airflow 3 (http://localhost:8080, admin/admin) + a simulated Firehose producer, in the background"
	@echo "make down        stop everything make up started"
	@echo "make status      what make up runs, and every failed run with the task and its error"
	@echo "make test-browser  headless Chromium against the Airflow UI and the audit dashboard"
	@echo "make lint        ruff check (with the AIR rules) + ruff format --check + mypy"
	@echo "make bench       load a generated 100k and 1M-record hour, beside the parse limit, pandas and dlt; audit 24 healthy hours"
	@echo "make bench-freshness  landing -> committed with Airflow running, freshness modes poll and events"

$(STAMP): requirements.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@test -x $(BIN)/uv || $(BIN)/pip install --quiet --disable-pip-version-check uv==0.13.9
	$(BIN)/uv pip install --quiet --python $(BIN)/python -r requirements.txt
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	@touch $(STAMP)

install: $(STAMP)

stack: $(STAMP)
	$(BIN)/python -m tools.stack up

stack-down:
	@if [ -x $(BIN)/python ]; then $(BIN)/python -m tools.stack down; fi

up: $(STAMP)
	$(BIN)/python -m tools.up up

down:
	@if [ -x $(BIN)/python ]; then $(BIN)/python -m tools.up down; fi

status:
	@$(BIN)/python -m tools.up status

demo: stack
	. $(STACK_ENV) && $(BIN)/python -m tools.demo

test: stack
	$(BIN)/python -m firehose_loader.config include/streams.yml
	$(BIN)/mypy
	. $(STACK_ENV) && $(BIN)/pytest

test-unit: $(STAMP)
	$(BIN)/pytest tests/unit

test-browser: stack
	. $(STACK_ENV) && $(BIN)/pytest tests/browser

# The benchmark (bench/; `python -m bench --help` lists BENCH_SIZES, BENCH_FULL=1 and the rest); writes bench/results.md.
bench: stack
	. $(STACK_ENV) && $(BIN)/python bench/run.py

# Landing -> committed with Airflow running, freshness modes poll and events, 1 and 4 shards (bench/freshness.py).
bench-freshness: stack
	. $(STACK_ENV) && $(BIN)/python -m bench.freshness

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff check --preview --select AIR .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean: down stack-down
	rm -rf .local
