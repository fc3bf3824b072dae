# firehose-loader: every target creates .venv on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help install stack stack-down demo test test-unit lint format bench clean

help:
	@echo "make demo        set up, start the local stack, load a few Firehose hours, print a summary"
	@echo "make test        the whole test suite (starts the local stack it needs)"
	@echo "make stack       start S3 (moto) + PostgreSQL and write .local/stack.env"
	@echo "make stack-down  stop them"
	@echo "make lint        ruff check + ruff format --check"

$(STAMP): requirements.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@test -x $(BIN)/uv || $(BIN)/pip install --quiet --disable-pip-version-check uv==0.13.9
	$(BIN)/uv pip install --quiet --python $(BIN)/python -r requirements.txt
	@touch $(STAMP)

install: $(STAMP)

stack: $(STAMP)
	$(BIN)/python tools/stack.py up

stack-down:
	@if [ -x $(BIN)/python ]; then $(BIN)/python tools/stack.py down; fi

demo: stack
	. .local/stack.env && $(BIN)/python tools/demo.py

test: stack
	. .local/stack.env && $(BIN)/pytest

test-unit: $(STAMP)
	$(BIN)/pytest tests/unit

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean: stack-down
	rm -rf .local
