# Two entry points: `make demo` runs the main job, `make test` runs every test that must pass.
# Both create .venv on first use and reuse it afterwards.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/loom demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python bench/functional_matmul.py
	$(BIN)/python bench/verilog_generation.py
	$(BIN)/python bench/rtl_speed.py
	$(BIN)/python bench/resnet18.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
