# The two quick-start commands: `make demo` and `make test`. Both build .venv when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# pip takes torch 2.14.1 / torchvision 0.29.1 from this machine's disk (a CUDA build that runs on CPU).
STAMP := $(VENV)/.installed

.PHONY: demo test lint install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/gtaray sweep experiments/ablations.yaml --resume
	$(BIN)/gtaray report results --experiment ablations

lint: $(STAMP)
	$(BIN)/ruff check gtaray tests
	$(BIN)/ruff format --check gtaray tests

test: lint
	$(BIN)/pytest -q

clean:
	rm -rf $(VENV) results
