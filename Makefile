# The two commands of the README: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test lint install clean-venv

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[test,deploy,cluster]'
	@touch $(STAMP)

install: $(STAMP)

# the lint half of `make test`: ruff and the import contracts (.importlinter)
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) scripts/import_contracts.py

run: $(STAMP)
	$(VENV)/bin/defect-studio

test: $(STAMP)
	$(VENV)/bin/ruff check .
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q

clean-venv:
	rm -rf $(VENV)
