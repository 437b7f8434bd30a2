# Two entry points on a fresh machine: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# pip older than 24 backtracks for minutes over the boto3/botocore/aiobotocore
	# pins and then gives up; a current resolver finds the set at once.
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade 'pip>=25'
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/streammix run pipelines/demo.toml

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check streammix tests
	$(VENV)/bin/ruff format --check streammix tests
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(PY) tests/benchmarks/bench_em.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
