# Two entry points (see README): `make demo` and `make test`. Both create .venv and install into it first.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python

.PHONY: install demo test
install: $(VENV)/.installed

# torch is installed first and pinned: a bare `torch` requirement on a machine without torch pulls a
# multi-GB CUDA build; torch==2.13.0 is the CPU wheel this project is developed and tested with.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[dev,describe,tables,bench,finetune]"
	touch $@

demo: install
	$(VENV)/bin/crysfuse demo --out demo_runs

test: install
	$(PY) -m pytest
